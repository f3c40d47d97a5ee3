"""`zenskar_delivery_sensor` evaluated as the daemon does, on a real instance: after a copy's partition is
materialized its delivery is asked for once the window has settled, not before, and not again until the
copy changes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest

from zenskar_pipeline import runner
from zenskar_pipeline.defs.delivery_sensor import SENSOR_NAME
from zenskar_pipeline.streams import validate_streams
from zenskar_pipeline_tests.test_delivery.conftest import DAY, Delivery


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as real:
        yield real


def _tick(
    delivery: Delivery, instance: dg.DagsterInstance, defs: dg.Definitions | None = None
) -> list[dg.RunRequest]:
    defs = defs or delivery.definitions()
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    return list(result.run_requests or [])


def _sync(delivery: Delivery, instance: dg.DagsterInstance) -> None:
    stream = validate_streams(delivery.config, delivery.state)[0]
    plan = runner.plan_stream(stream, runner.Selection(partition=DAY))
    assert runner.run_plan(delivery.definitions(), plan, instance).ok


def test_a_synced_window_is_delivered_once_and_again_only_after_the_copy_changes(
    delivery: Delivery, instance: dg.DagsterInstance
) -> None:
    assert _tick(delivery, instance) == []  # nothing materialized on this instance yet
    _sync(delivery, instance)
    [request] = _tick(delivery, instance)
    assert request.partition_key == DAY
    assert request.asset_selection == [dg.AssetKey(["zenskar", *delivery.table.split("."), "delivered"])]
    assert request.tags["zenskar/deliver"] == validate_streams(delivery.config, delivery.state)[0].name
    assert delivery.deliver(instance=instance).success
    assert _tick(delivery, instance) == []  # delivered since the copy's last materialization
    _sync(delivery, instance)
    assert [r.partition_key for r in _tick(delivery, instance)] == [DAY]


def test_a_window_not_settled_is_not_asked_for(delivery: Delivery, instance: dg.DagsterInstance) -> None:
    _sync(delivery, instance)
    stream = delivery.config.streams[0]
    assert stream.settings.deliver is not None
    # settle: a window closes, then waits this long; March 2026 plus 100 years has not come.
    settle = dataclasses.replace(stream.settings.deliver, settle=dt.timedelta(days=36_500))
    settled_later = dataclasses.replace(stream, settings=dataclasses.replace(stream.settings, deliver=settle))
    config = dataclasses.replace(delivery.config, streams=(settled_later,))
    later = dataclasses.replace(delivery, config=config)
    assert _tick(later, instance) == []
    assert [r.partition_key for r in _tick(delivery, instance)] == [DAY]  # settle 0s: it is due
