"""Exactly once whatever dies when: a delivery killed between Zenskar taking a batch and the ledger recording
the answer, two deliveries of one window racing, a batch left unanswered past Zenskar's key lifetime, and a
batch Zenskar never answers within its retries. Each against the real ledger and the local API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.defs.delivery import CopyKeptChangingError, deliver_until_still
from zenskar_pipeline.delivery.deliver import DeliveryRun, IdentityChangedError, UndeliveredError, deliver
from zenskar_pipeline.delivery.events import EventSource, identity_description, identity_of
from zenskar_pipeline.delivery.ledger import DeliveryLedger
from zenskar_pipeline.delivery.settings import events_of
from zenskar_pipeline.destinations import DeltaDestinationResource
from zenskar_pipeline.streams import validate_streams
from zenskar_pipeline_tests.test_delivery.conftest import DAY, ROW_SCHEMA, Delivery, checks, figures, row
from zenskar_pipeline_tests.test_end_to_end.project import new_dagster_home, secrets_left, user_env

COMMAND = str(Path(sys.executable).with_name("zenskar-pipeline"))


def _stream(delivery: Delivery) -> ResolvedStream:
    return validate_streams(delivery.config, delivery.state)[0]


def _run(delivery: Delivery, run_id: str, **settings: object) -> DeliveryRun:
    """The engine itself on the delivery's copy (what the asset's step runs), with its own run id."""
    stream = _stream(delivery)
    table = delivery.state.get(stream.name)
    assert table is not None
    rows = events_of(stream, table)
    assert rows is not None
    copy = DeltaDestinationResource().for_stream(stream)
    resource = delivery.zenskar(**{key: value for key, value in settings.items() if key != "now"})
    now = settings.get("now")
    return DeliveryRun(
        stream.name,
        copy,
        DeliveryLedger.beside(copy),
        resource.client(),
        EventSource.of(stream, rows),
        [DAY],
        run_id,
        identity_of(copy, rows),
        **({"now": now} if now is not None else {}),  # type: ignore[arg-type]
    )


def _ledger_entries(delivery: Delivery) -> list[dict[str, object]]:
    return DeltaTable(delivery.copy_uri() + "__zenskar_ledger").to_pyarrow_table().to_pylist()


def test_killed_between_the_send_and_the_ledger_commit_the_next_run_sends_nothing_twice(
    delivery: Delivery, tmp_path: Path
) -> None:
    # Zenskar takes the batch and then answers 500 (again and again): the delivery keeps retrying, the
    # answer never reaches the ledger; the process is killed while it waits.
    delivery.api.set_faults(fail_5xx_after_processing=1000)
    env = user_env({}, new_dagster_home(tmp_path / "home"))
    env.update(delivery.api.environment())
    process = subprocess.Popen(
        [COMMAND, "deliver", "--config", str(delivery.config_file), "--partition", DAY],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(delivery.received()) < 5 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert len(delivery.received()) == 5, "Zenskar never took the batch"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    entries = _ledger_entries(delivery)
    assert {entry["entry"] for entry in entries} == {"planned"}  # sent, never answered in the ledger
    delivery.api.clear_faults()
    result = delivery.deliver()
    assert result.success
    assert len(delivery.received()) == 5  # the batch went again under its key, and was answered from memory
    keys = {entry["idempotency_key"] for entry in _ledger_entries(delivery)}
    assert len(keys) == 1 and delivery.api.stats()["replayed"] >= 1


def test_two_deliveries_of_one_window_racing_send_each_event_once(delivery: Delivery) -> None:
    delivery.api.set_faults(delay_seconds=0.5, delay_requests=4)
    errors: list[BaseException] = []

    def one(run_id: str) -> None:
        try:
            deliver(_run(delivery, run_id, batch_size=2))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(f"race-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    received = delivery.received()
    assert len(received) == 5
    assert len({(e["customer_id"], e["timestamp"]) for e in received}) == 5
    report = deliver(_run(delivery, "after"))
    assert report.sent == 0 and report.windows[DAY].delivered_before == 5


def test_a_batch_left_open_past_the_key_lifetime_is_dead_lettered_not_sent_again(delivery: Delivery) -> None:
    delivery.api.set_faults(fail_5xx=100)
    with pytest.raises(UndeliveredError):
        deliver(_run(delivery, "first", max_attempts=2))
    assert delivery.received() == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)
    report = deliver(_run(delivery, "next-day", now=lambda: later))
    assert delivery.received() == []  # it may have reached Zenskar: never sent under a forgotten key
    assert report.windows[DAY].dead_lettered == 5 and len(report.dead_letters) == 5
    letters = DeltaTable(delivery.copy_uri() + "__zenskar_dead_letters").to_pyarrow_table().to_pylist()
    assert all("23 hours" in (letter["answer"] or "") for letter in letters)
    # Releasing dead letters lets go only those Zenskar refused: these may be at Zenskar, so they stay.
    ledger = DeliveryLedger.beside(DeltaDestinationResource().for_stream(_stream(delivery)))
    assert ledger.release([DAY], "release", later) == (0, 5)
    report = deliver(_run(delivery, "after-release", now=lambda: later))
    assert delivery.received() == [] and report.sent == 0


def test_a_batch_zenskar_never_answers_stays_open_and_goes_again_under_its_key(delivery: Delivery) -> None:
    delivery.api.set_faults(fail_5xx=3)
    with pytest.raises(UndeliveredError, match="same key"):
        deliver(_run(delivery, "first", max_attempts=2))
    report = deliver(_run(delivery, "second"))
    assert report.sent == 5 and len(delivery.received()) == 5
    planned = [entry for entry in _ledger_entries(delivery) if entry["entry"] == "planned"]
    assert len({entry["batch_id"] for entry in planned}) == 1  # one batch, planned once, sent twice


def test_the_api_key_is_nowhere_in_output_logs_files_or_errors(delivery: Delivery, tmp_path: Path) -> None:
    home = new_dagster_home(tmp_path / "home")
    env = user_env({}, home)
    env.update(delivery.api.environment())
    command = [COMMAND, "deliver", "--config", str(delivery.config_file), "--partition", DAY]
    wrong = dict(env, ZENSKAR_API_KEY="wrong-" + delivery.api.api_key)
    refused = subprocess.run(command, env=wrong, capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 1
    assert "ZENSKAR_API_KEY" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "5 sent" in done.stdout
    secrets = [delivery.api.api_key, wrong["ZENSKAR_API_KEY"]]
    outputs = [done.stdout, done.stderr, refused.stdout, refused.stderr]
    assert secrets_left(secrets, outputs=outputs, folders=[home, tmp_path / "destination"]) == []


def test_a_refused_row_fixed_and_released_from_the_command_line_goes_out_once(
    delivery: Delivery, tmp_path: Path
) -> None:
    delivery.api.set_faults(reject_customer_ids=["cust-2"])
    assert delivery.deliver().success
    assert [e["customer_id"] for e in delivery.received()].count("cust-2") == 0
    delivery.api.clear_faults()  # the event's schema is fixed at Zenskar
    env = user_env({}, new_dagster_home(tmp_path / "home"))
    env.update(delivery.api.environment())
    command = [COMMAND, "deliver", "--config", str(delivery.config_file), "--partition", DAY]
    command.append("--release-dead-letters")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 dead letter(s) released, 0 kept" in done.stdout and "1 sent" in done.stdout
    received = delivery.received()
    assert len(received) == 5 and [e["customer_id"] for e in received].count("cust-2") == 1
    again = delivery.deliver()
    assert figures(again)[DAY]["events_sent"] == 0
    assert checks(again)["no_dead_letters"].passed
    ledger = DeliveryLedger.beside(DeltaDestinationResource().for_stream(_stream(delivery)))
    assert ledger.release([DAY], "again", dt.datetime.now(dt.UTC)) == (0, 0)


# What identity_description writes for an ordinary three-column primary key: more than Delta's file
# statistics keep of a string (they cut it at 64 characters).
COMPOSITE = identity_description(
    pa.schema([("tenant_id", pa.string()), ("customer_id", pa.string()), ("usage_event_id", pa.string())]),
    ["tenant_id", "customer_id", "usage_event_id"],
)


def test_a_stream_whose_key_is_described_at_length_is_delivered_again_without_an_identity_error(
    delivery: Delivery,
) -> None:
    assert len(COMPOSITE) > 64
    first = dataclasses.replace(_run(delivery, "first"), identity=COMPOSITE)
    assert deliver(first).sent == 5
    second = dataclasses.replace(_run(delivery, "second"), identity=COMPOSITE)
    assert deliver(second).sent == 0
    third = dataclasses.replace(_run(delivery, "third"), identity=COMPOSITE + ", extra (string)")
    with pytest.raises(IdentityChangedError, match="usage_event_id \\(string\\);"):
        deliver(third)  # the message names the whole identity the ledger holds, not a cut statistic


def test_halves_of_a_batch_sent_again_are_checked_against_the_copy(delivery: Delivery) -> None:
    # The first run plans one batch of e1..e5 (e1 with quantity 3); Zenskar never answers: it stays open.
    delivery.api.set_faults(fail_5xx=100)
    with pytest.raises(UndeliveredError):
        deliver(_run(delivery, "first", max_attempts=2))
    delivery.api.clear_faults()
    changed = row("e1", 6, quantity=30, updated_at=dt.datetime(2026, 3, 9, tzinfo=dt.UTC))
    tables.upsert(
        delivery.warehouse.root, delivery.table, pa.Table.from_pylist([changed], ROW_SCHEMA), ["event_id"]
    )
    delivery.sync()
    # The next run sends the open batch again byte for byte (quantity 3, its key); Zenskar refuses cust-2's
    # event, so the batch is cut and e1 goes out in a half, as planned: with quantity 3.
    delivery.api.set_faults(reject_customer_ids=["cust-2"])
    report = deliver(_run(delivery, "second"))
    sent = [e for e in delivery.received() if e["timestamp"].startswith("2026-03-08T06")]
    assert [e["data"]["quantity"] for e in sent] == [3]
    assert report.changed_after_delivery == ['["e1"]']  # the copy says 30: reported in this run


def test_a_delivery_between_a_reset_and_the_next_sync_sends_nothing_and_fails_nothing(
    delivery: Delivery,
) -> None:
    assert deliver(_run(delivery, "first")).sent == 5
    shutil.rmtree(delivery.copy_uri())  # what `zenskar-pipeline reset` does to a local copy; the ledger stays
    report = deliver(_run(delivery, "after-reset"))
    assert report.sent == 0 and len(delivery.received()) == 5


def test_a_copy_that_syncs_keep_changing_through_every_pass_fails_the_run_after_sending_once(
    delivery: Delivery,
) -> None:
    copy = DeltaTable(delivery.copy_uri())
    stop = threading.Event()

    def keep_syncing() -> None:  # a commit to the copy after another, as syncs landing rows would make
        bump = 0
        while not stop.is_set():
            bump += 1
            copy.alter.set_table_properties({"zenskar.test.bump": str(bump)}, raise_if_not_exists=False)

    delivery.api.set_faults(delay_seconds=0.2, delay_requests=3)
    syncing = threading.Thread(target=keep_syncing)
    syncing.start()
    try:
        with pytest.raises(CopyKeptChangingError, match="during each of 3 delivery passes"):
            deliver_until_still(_run(delivery, "busy"), logging.getLogger("test"))
    finally:
        stop.set()
        syncing.join(timeout=60)
    assert len(delivery.received()) == 5  # what went out went out once, and is in the ledger
    report = deliver_until_still(_run(delivery, "quiet"), logging.getLogger("test"))
    assert report.sent == 0 and report.windows[DAY].delivered_before == 5
