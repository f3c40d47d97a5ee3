"""Streams files for the config tests: written to a temporary folder, loaded with an empty environment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from zenskar_pipeline.config import ConfigError, PipelineConfig
from zenskar_pipeline.streams import load_config

REPO = Path(__file__).resolve().parents[2]
DISCOVERED = [
    "main.billing.usage_events",
    "main.billing.customers",
    "main.billing.invoices",
    "main.metering.compute_hours",
    "main.metering.events",
    "dev.billing.usage_events",
]


def write(tmp_path: Path, text: str, name: str = "streams.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> PipelineConfig:
    return load_config(write(tmp_path, text), env=env or {})


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def one_stream(settings: str, table: str = "main.billing.usage_events") -> str:
    """A streams file with one stream; `settings` are its keys, one per line."""
    indented = textwrap.indent(textwrap.dedent(settings).strip(), " " * 4)
    return f"destination: {{uri: out}}\nstreams:\n  - table: {table}\n{indented}\n"


def with_destination(destination: str) -> str:
    """A streams file with one full-refresh stream and the given `destination:` mapping, in flow style."""
    stream = "{table: main.billing.usage_events, sync_mode: full_refresh}"
    return f"destination: {destination}\nstreams:\n  - {stream}\n"
