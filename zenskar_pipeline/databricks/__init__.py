"""The source side: the Databricks connection resource and the SQL it sends (quoted names, bound values)."""

from zenskar_pipeline.databricks.resource import (
    DatabricksConnectionError,
    DatabricksResource,
    DatabricksSession,
)
from zenskar_pipeline.databricks.sql_text import (
    InvalidIdentifierError,
    ParameterValue,
    native_parameters,
    quote_identifier,
    quote_table,
)

__all__ = [
    "DatabricksConnectionError",
    "DatabricksResource",
    "DatabricksSession",
    "InvalidIdentifierError",
    "ParameterValue",
    "native_parameters",
    "quote_identifier",
    "quote_table",
]
