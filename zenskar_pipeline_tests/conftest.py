"""Helpers of the product's tests. The session's local warehouse (the `warehouse` and `cursor` fixtures)
and `connect` come from the zenskar_devtools.testing pytest plugin, which the warehouse's tests share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from zenskar_pipeline.databricks import DatabricksResource

if TYPE_CHECKING:
    from zenskar_devtools.local_warehouse.server import LocalWarehouse


def databricks_resource(warehouse: LocalWarehouse) -> DatabricksResource:
    """The product's connection resource, pointed at the session's warehouse with its token."""
    info = warehouse.info
    return DatabricksResource(
        server_hostname=info.server_hostname,
        port=info.port,
        http_path=info.http_path,
        access_token=info.access_token,
        tls_ca_file=info.tls_ca_file,
    )


# The files that take minutes (a production stack, an image build, object-store servers), run first: with
# `--dist loadfile` a long file scheduled last keeps one core busy alone at the end of the suite. (`make
# pytest` passes `--no-loadscope-reorder`: xdist would otherwise put files with many tests first.)
LONGEST_FIRST = (
    "test_production/test_under_load.py",
    "test_production/test_dead_runs.py",
    "test_image.py",
    "test_ui/test_dagster_ui.py",
    "test_end_to_end/test_object_store_copies.py",
    "test_production/test_bad_instance.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: every other test keeps its order
