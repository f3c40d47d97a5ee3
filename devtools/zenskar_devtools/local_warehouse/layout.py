"""Where the warehouse finds its tables: `<root>/<catalog>/<schema>/<table>/` is a Delta table.

Delta tables written by delta-rs carry no Unity Catalog constraints, so a primary key is declared with the
table property `PRIMARY_KEY_PROPERTY` (comma-separated column names, in key order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PRIMARY_KEY_PROPERTY = "local_warehouse.primary_key"
CHANGE_DATA_FEED_PROPERTY = "delta.enableChangeDataFeed"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
