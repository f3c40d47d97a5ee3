"""The SQL conditions of the Delta writes, with every identifier quoted and every value escaped.

delta-rs parses these with DataFusion's SQL parser, which reads a backtick-quoted name with a backtick
inside doubled, so any column name Unity Catalog allows can be named here.
"""

from __future__ import annotations

from collections.abc import Sequence

from zenskar_pipeline.destinations.landing import CONTENT_HASH, SOURCE_VERSION


def same_key(columns: Sequence[str]) -> str:
    """Target `t` and source `s` agree on every column, NULL equal to NULL. Parenthesised: DataFusion
    binds `IS NOT DISTINCT FROM` looser than `AND`. Never mix in a plain `=`: with deltalake 1.6.6 a join
    on `IS NOT DISTINCT FROM` and `=` together is no longer a hash join (400k rows: minutes, not 1 s)."""
    return " AND ".join(f"(t.{quote(n)} IS NOT DISTINCT FROM s.{quote(n)})" for n in columns)


def newer_and_different(cursor_field: str | None) -> str:
    """The merge's update condition: incoming (cursor, version, content) greater, and content changed.
    NULL cursors rank lowest; a copy row without a content hash (written before) always loses."""
    c, v, h = (quote(n) for n in (cursor_field or "", SOURCE_VERSION, CONTENT_HASH))
    later = f"(s.{v} > t.{v} OR (s.{v} = t.{v} AND (t.{h} IS NULL OR s.{h} > t.{h})))"
    if cursor_field is not None:
        later = (
            f"(s.{c} > t.{c} OR (t.{c} IS NULL AND s.{c} IS NOT NULL) "
            f"OR ((s.{c} IS NOT DISTINCT FROM t.{c}) AND {later}))"
        )
    return f"(s.{h} IS DISTINCT FROM t.{h}) AND {later}"


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def every_column(names: Sequence[str]) -> dict[str, str]:
    """Each target column `t.name` set from `s.name`: what `when_matched_update_all` and
    `when_not_matched_insert_all` do, spelled out because delta-rs 1.6.6 builds their expressions without
    doubling a backtick inside a name (a column such as ``we`ird`` fails to parse)."""
    return {quote(name): f"s.{quote(name)}" for name in names}


def in_list(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"{quote(column)} IN ({quoted})"
