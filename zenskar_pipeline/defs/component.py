"""The code location as a Dagster component: a `defs.yaml` names the streams file, and the component's state
is the discovery cache. `dg utils refresh-defs-state` discovers the tables (it connects to Databricks);
building the definitions reads only the state, as `definitions.py` does, through the same
`build_definitions`.

```yaml
# zenskar_pipeline/components/streams/defs.yaml
type: zenskar_pipeline.defs.component.StreamsComponent
attributes:
  streams_file: streams.yaml        # relative to the project root
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components import DefsStateConfig, DefsStateConfigArgs, ResolvedDefsStateConfig
from dagster.components.component_scaffolding import scaffold_component
from dagster_shared.serdes.objects.models.defs_state_info import DefsStateManagementType
from pydantic import PrivateAttr

from zenskar_pipeline.config import CONFIG_ENV, PipelineConfig, config_path
from zenskar_pipeline.defs.build import build_definitions
from zenskar_pipeline.state import StateMissingError, load_newest_state
from zenskar_pipeline.streams import load_config

REFRESH = "`dg utils refresh-defs-state` (or `zenskar-pipeline discover`)"


class StreamsScaffolder(dg.Scaffolder[Any]):
    """`dg scaffold defs zenskar_pipeline.defs.component.StreamsComponent <name>`: a defs.yaml naming the
    project's streams file."""

    def scaffold(self, request: dg.ScaffoldRequest[Any]) -> None:
        scaffold_component(request, {"streams_file": "streams.yaml"})


@dg.scaffold_with(StreamsScaffolder)
class StreamsComponent(dg.StateBackedComponent, dg.Model, dg.Resolvable):
    """Every stream of a streams file: per stream the source table as an external asset and its Delta copy
    as a partitioned asset with its checks, the per-partitions-definition jobs, the sensor on new Delta
    versions and the schedules (see `build_definitions`).

    The state is the discovery (`zenskar_pipeline.state`): `dg utils refresh-defs-state` writes it both to
    the component's state file and to the streams file's discovery cache, so that `definitions.py`
    (`workspace.yaml`, the image, `zenskar-pipeline sync`) loads the same definitions. Building reads
    whichever of the two is newer and never connects; with neither, loading fails naming what to run.

    The state is not refreshed when `dg dev` or `dg check defs` starts (`refresh_if_dev: false`), so that
    loading never needs the warehouse; set `defs_state: {refresh_if_dev: true}` to discover at each start.
    """

    streams_file: str = "streams.yaml"
    defs_state: ResolvedDefsStateConfig = DefsStateConfigArgs(
        management_type=DefsStateManagementType.LOCAL_FILESYSTEM, refresh_if_dev=False
    )
    # write_state_to_path gets no load context: the project root is kept from `load` for relative paths.
    _project_root: Path | None = PrivateAttr(default=None)

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> StreamsComponent:
        component = super().load(attributes, context)
        component._project_root = context.project_root
        return component

    @property
    def defs_state_config(self) -> DefsStateConfig:
        return DefsStateConfig.from_args(
            self.defs_state, default_key=f"StreamsComponent[{self.streams_file}]"
        )

    @property
    def streams_path(self) -> Path:
        """The streams file: `ZENSKAR_PIPELINE_CONFIG` when set, as for every command (so that `dg dev` loads
        the file `discover` refreshed), else `streams_file`; a relative `streams_file` is relative to the
        project root (else the working directory, for a component built in Python)."""
        if os.environ.get(CONFIG_ENV):
            return config_path()
        return (self._project_root or Path.cwd()) / Path(self.streams_file).expanduser()

    def load_config(self) -> PipelineConfig:
        return load_config(self.streams_path)

    def write_state_to_path(self, state_path: Path) -> None:
        """Discover the streams file's tables; `DiscoveryError` (one line, no secret) when it cannot."""
        from zenskar_pipeline.databricks.refresh import refresh_discovery  # the connector, only here

        refresh_discovery(self.load_config(), state_path)

    def build_defs_from_state(
        self, context: dg.ComponentLoadContext, state_path: Path | None
    ) -> dg.Definitions:
        config = self.load_config()
        try:
            state = load_newest_state(config.state_path, state_path)
        except StateMissingError as missing:
            message = f"no discovered tables for {self.streams_path}; run {REFRESH}"
            raise StateMissingError(missing.path, message) from None
        return build_definitions(config, state)
