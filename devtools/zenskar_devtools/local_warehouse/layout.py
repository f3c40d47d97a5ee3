"""Where the warehouse finds its tables: `<root>/<catalog>/<schema>/<table>/` is a Delta table.

Delta tables written by delta-rs carry no Unity Catalog constraints, so a primary key is declared with the
table property `PRIMARY_KEY_PROPERTY`: the column names in key order, comma-separated (spaces around a name
trimmed), or a JSON list when a name could not be read back that way (column names may hold any character).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PRIMARY_KEY_PROPERTY = "local_warehouse.primary_key"
CHANGE_DATA_FEED_PROPERTY = "delta.enableChangeDataFeed"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def encode_primary_key(columns: Sequence[str]) -> str:
    """The `PRIMARY_KEY_PROPERTY` value for `columns`: `a,b`, or `["a,b", " c"]` when a name holds a comma or
    starts or ends with a space (which the comma-separated form trims), or starts with `[`."""
    plain = all("," not in c and c == c.strip() for c in columns) and not (columns and columns[0][:1] == "[")
    return ",".join(columns) if plain else json.dumps(list(columns), ensure_ascii=False)


def decode_primary_key(value: str | None) -> list[str]:
    """The key columns a `PRIMARY_KEY_PROPERTY` value names, in key order (`[]`: none)."""
    if not value:
        return []
    if value.lstrip().startswith("["):
        return [str(column) for column in json.loads(value)]
    return [column.strip() for column in value.split(",") if column.strip()]


@dataclass(frozen=True, order=True)
class TableName:
    """A three-part Unity Catalog name, lower-cased as Unity Catalog stores it."""

    catalog: str
    schema: str
    table: str

    @classmethod
    def parse(cls, full_name: str) -> TableName:
        parts = full_name.split(".")
        if len(parts) != 3 or not all(_IDENTIFIER.match(p) for p in parts):
            raise ValueError(
                f"expected catalog.schema.table made of letters, digits and _, got {full_name!r}"
            )
        return cls(*(p.lower() for p in parts))

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    def path(self, root: Path) -> Path:
        return Path(root) / self.catalog / self.schema / self.table
