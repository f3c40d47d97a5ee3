"""Composition root: the streams file and the discovery cache become Dagster definitions.

Nothing here contacts Databricks: discovered tables come from the cache `zenskar-pipeline discover` writes.
Without that cache the code location fails to load with the message saying what to run.
"""

from __future__ import annotations

from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.state import load_state
from zenskar_pipeline.streams import load_config

config = load_config()
defs = build_definitions(config, load_state(config.state_path))
