"""The streams file as typed, validated models; every error names the stream, the key and the fix.

`load_config` reads and checks the file; `resolve_streams` expands it into one `ResolvedStream` per source
table, with the destination table each one lands in. Both ask the sync modes' `ModeRules` what each mode
requires; `zenskar_pipeline.streams` passes the modes in.
"""

from zenskar_pipeline.config.errors import ConfigError, Problem, suggest
from zenskar_pipeline.config.load import CONFIG_ENV, config_path, load_config
from zenskar_pipeline.config.models import (
    ColumnSelection,
    Deletes,
    DeliverSpec,
    DestinationConfig,
    Granularity,
    Namespace,
    NamespaceKind,
    OnMissingHistory,
    PartitionSpec,
    PipelineConfig,
    ResolvedStream,
    StreamConfig,
    StreamSettings,
    SyncMode,
    TableName,
)
from zenskar_pipeline.config.parse import DESTINATION_ENV, STATE_ENV, parse_config
from zenskar_pipeline.config.resolve import resolve_streams, source_problems
from zenskar_pipeline.config.rules import ModeRules
from zenskar_pipeline.config.values import duration as parse_duration

__all__ = [
    "CONFIG_ENV",
    "DESTINATION_ENV",
    "STATE_ENV",
    "ColumnSelection",
    "ConfigError",
    "Deletes",
    "DeliverSpec",
    "DestinationConfig",
    "Granularity",
    "ModeRules",
    "Namespace",
    "NamespaceKind",
    "OnMissingHistory",
    "PartitionSpec",
    "PipelineConfig",
    "Problem",
    "ResolvedStream",
    "StreamConfig",
    "StreamSettings",
    "SyncMode",
    "TableName",
    "config_path",
    "load_config",
    "parse_config",
    "parse_duration",
    "resolve_streams",
    "source_problems",
    "suggest",
]
