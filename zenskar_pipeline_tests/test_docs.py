"""The docs say what the code does, where a test can tell: every key the streams file accepts, every sync mode
and every system column is in the streams-file reference, every relative link in the docs leads to a file
(and heading) that exists, and the reference's annotated example is a valid streams file that uses every key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from zenskar_pipeline.config import SyncMode
from zenskar_pipeline.config.parse import COLUMN_KEYS, DESTINATION_KEYS, PARTITION_KEYS, STREAM_KEYS
from zenskar_pipeline.destinations import landing
from zenskar_pipeline.streams import parse_config, resolve_streams
from zenskar_pipeline.sync.modes import history

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "streams-file.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLE_MARK = "<!-- streams-file example -->"

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _mentioned(name: str, text: str) -> bool:
    """Whether `name` appears as code in `text`: `name`, or dotted under its parent, `partitions.name`."""
    return re.search(rf"`(?:[a-z_]+\.)?{re.escape(name)}`", text) is not None


# --- (a) every key and every sync mode ------------------------------------------------------------------


SECTIONS = {
    "stream": STREAM_KEYS,
    "destination": DESTINATION_KEYS,
    "partitions": PARTITION_KEYS,
    "columns": COLUMN_KEYS,
}
KEYS = sorted({(section, key) for section, keys in SECTIONS.items() for key in keys})


@pytest.mark.parametrize(("section", "key"), KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
def test_every_key_the_streams_file_accepts_is_in_the_reference(section: str, key: str) -> None:
    assert _mentioned(key, REFERENCE.read_text()), f"{section} key {key!r} is not in {REFERENCE.name}"


@pytest.mark.parametrize("mode", [mode.value for mode in SyncMode])
def test_every_sync_mode_is_in_the_reference(mode: str) -> None:
    assert _mentioned(mode, REFERENCE.read_text()), f"sync_mode {mode!r} is not in {REFERENCE.name}"


# --- (b) every system column ------------------------------------------------------------------------------


def _system_columns() -> list[str]:
    """Every `_zenskar_*` column name the writer (`landing`) and the history mode define."""
    names = {
        value
        for module in (landing, history)
        for value in vars(module).values()
        if isinstance(value, str) and value.startswith("_zenskar_")
    }
    return sorted(names)


def test_the_system_columns_are_found() -> None:
    assert {"_zenskar_partition", "_zenskar_valid_from", "_zenskar_is_current"} <= set(_system_columns())


@pytest.mark.parametrize("column", _system_columns())
def test_every_system_column_has_a_row_in_the_reference(column: str) -> None:
    rows = [line for line in _prose(REFERENCE.read_text()) if line.startswith(f"| `{column}` |")]
    assert rows, f"{column} has no row in the system columns table of {REFERENCE.name}"


# --- (c) every relative link ------------------------------------------------------------------------------


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a Markdown file (a repeated heading's get `-1`, `-2`, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(path.read_text()):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = github_slug(heading.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    targets = [m.group(1) for line in _prose(path.read_text()) for m in LINK.finditer(line)]
    return [t for t in targets if "://" not in t and not t.startswith("mailto:")]


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in relative_links(path):
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{link}: no heading #{anchor} in {resolved.name}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(REPO)) for doc in DOCS])
def test_every_relative_link_leads_somewhere(doc: Path) -> None:
    assert broken_links(doc) == []


def test_the_docs_link_to_each_other() -> None:
    readme = relative_links(REPO / "README.md")
    assert {"docs/streams-file.md", "docs/sync-modes.md", "devtools/README.md"} <= {
        link.partition("#")[0] for link in readme
    }
    assert any(link.startswith("sync-modes.md") for link in relative_links(REFERENCE))
    assert any(link.startswith("streams-file.md") for link in relative_links(REPO / "docs" / "sync-modes.md"))


def test_a_broken_link_is_seen(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("# A heading\n")
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](here.md#a-heading) [gone](gone.md) [bad](here.md#nope) [web](https://x.org/a.md)\n")
    assert broken_links(doc) == ["gone.md: no file gone.md", "here.md#nope: no heading #nope in here.md"]


# --- (d) the annotated example ----------------------------------------------------------------------------


def example() -> str:
    """The ```yaml block that follows the example mark in the reference."""
    text = REFERENCE.read_text()
    assert EXAMPLE_MARK in text, f"{REFERENCE.name} has no {EXAMPLE_MARK}"
    block = re.search(r"```yaml\n(.*?)\n```", text[text.index(EXAMPLE_MARK) :], re.DOTALL)
    assert block is not None, f"no ```yaml block after {EXAMPLE_MARK}"
    return block.group(1)


def test_the_annotated_example_is_a_valid_streams_file() -> None:
    data = yaml.safe_load(example())
    config = parse_config(data, env={})  # the example's own destination.uri, nothing from the environment
    # Every entry resolves too (cursors, partition fields, destinations), a pattern's tables discovered.
    tables = [entry.table.replace("*", "example") for entry in config.streams]
    assert [stream.name for stream in resolve_streams(config, tables)] == tables


def test_the_annotated_example_uses_every_key() -> None:
    data = yaml.safe_load(example())
    entries: list[Mapping[str, Any]] = [data.get("defaults") or {}, *data["streams"]]
    used = {
        "stream": {key for entry in entries for key in entry},
        "destination": set(data["destination"]),
        "partitions": {k for e in entries if isinstance(e.get("partitions"), dict) for k in e["partitions"]},
        "columns": {k for e in entries if isinstance(e.get("columns"), dict) for k in e["columns"]},
    }
    for section, keys in SECTIONS.items():
        assert set(keys) - used[section] == set(), f"the example leaves out {section} keys"
