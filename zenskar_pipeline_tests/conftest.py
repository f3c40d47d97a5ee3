"""Helpers of the product's tests. The session's local warehouse (the `warehouse` and `cursor` fixtures)
and `connect` come from the zenskar_devtools.testing pytest plugin, which the warehouse's tests share."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
