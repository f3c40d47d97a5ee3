"""Refreshing discovery: connect with the settings in the environment, discover the tables a streams file
selects, and save the result where the code location reads it. What `zenskar-pipeline discover` and `sync`
run, and what the Dagster component runs for `dg utils refresh-defs-state`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from zenskar_pipeline.config import PipelineConfig
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, discover_tables
from zenskar_pipeline.databricks.resource import DatabricksConnectionError, DatabricksResource
from zenskar_pipeline.state import save_state

REQUIRED_CONNECTION = ("DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH")


class DiscoveryError(Exception):
    """Discovery could not run or was refused; the message is one line naming what to check, no secret."""


def refresh_discovery(config: PipelineConfig, *also: Path) -> DiscoveredCatalog:
    """Discover the tables `config` selects and save them to `config.state_path` and to each path in `also`
    (the component's own state file), so that every reader of the cache sees the same discovery.

    `DiscoveryError` when the connection variables are missing, the warehouse cannot be reached or refuses
    a statement; nothing is saved then, and the previous cache stays in place.
    """
    missing = [name for name in REQUIRED_CONNECTION if not os.environ.get(name)]
    if missing:
        raise DiscoveryError(
            f"set {', '.join(missing)} (and DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID with "
            "DATABRICKS_CLIENT_SECRET); for the local warehouse, source <state-dir>/connection.env"
        )
    # The connector logs each failed request at ERROR level, which Python prints to stderr when nothing is
    # configured; the error below already says what failed and which setting to check, so those lines
    # would only break the one-line message. A logging configuration of the user's still receives them.
    logging.getLogger("databricks.sql").addHandler(logging.NullHandler())
    try:
        with DatabricksResource.resolved_from_env().session() as session:
            found = discover_tables(session, config)
    except DatabricksConnectionError as error:
        raise DiscoveryError(f"cannot discover tables: {error}") from None
    except Exception as error:  # the warehouse refused a statement: permissions, a stopped warehouse
        raise DiscoveryError(f"cannot discover tables: {type(error).__name__}: {error}") from None
    for path in (config.state_path, *also):
        save_state(found, path)
    return found
