"""A write's rows on local disk while they are ranked, so that a copy's first version needs the same memory
for 10M rows as for 1M: rows go to an Arrow file as they come, their ranking columns to a DuckDB database
that spills; one query finds the rows that lose (or the numbers of identical rows), and the rows come back
in the order they arrived, each with its content hash (`landing.content_hashes`) and, key-less, its row id.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from zenskar_pipeline.destinations import landing
from zenskar_pipeline.destinations.landing import CONTENT_HASH, ROW_ID

# DuckDB's own memory; it spills to the stage's folder beyond. Its buffers fill up to this as rows are
# staged, so it is most of what a stage of 10M rows holds more than one of 1M (64 MB: 20 MB more; 128 MB:
# about 100 MB more), and ranking 10M mostly unique keys takes 2 s either way.
MEMORY_LIMIT = "64MB"
# Rows handed back per batch. delta-rs holds more the larger its batches are, and more the more rows it
# writes: 10M rows in batches of 500k peaked at 880 MB, in batches of 64k at 510 MB (1M rows: 430, 460).
BATCH_ROWS = 64 * 1024
# Positions handed back per fetch while the rows are read again; 8 bytes each.
POSITION_BATCH_ROWS = 256 * 1024
_POSITION = "pos"
_HASH = "h"


@dataclass(frozen=True)
class Ranking:
    """Which staged rows land. With a `key`: one row per key value (NULL equal to NULL), the greatest by the
    `descending` columns (NULLs lowest), then by content hash. Without (None): every row, with a row id."""

    key: tuple[str, ...] | None
    descending: tuple[str, ...] = ()


class Stage:
    """The rows of one write, staged in a temporary folder (`tempfile`'s: `TMPDIR` moves it); it needs about
    the rows' Arrow size on disk. Use as a context manager: the folder goes when the block ends."""

    def __init__(self, schema: pa.Schema, ranking: Ranking) -> None:
        self.schema = schema
        self.ranking = ranking
        self.rows = 0
        self._exit = ExitStack()
        self._folder = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="zenskar-stage-")))
        self._rows_path = self._folder / "rows.arrow"
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._db: duckdb.DuckDBPyConnection | None = None
        self._ranked: Path | None = None

    def __enter__(self) -> Stage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._close_writer()
        if self._db is not None:
            self._db.close()
        self._exit.close()

    # --- staging ----------------------------------------------------------------------------------------

    def add(self, batch: pa.RecordBatch) -> None:
        """Stage `batch` (in `schema`): its rows with their content hashes, its ranking columns."""
        if self._ranked is not None:
            raise RuntimeError("the stage was ranked already; nothing can be added")
        table = pa.Table.from_batches([batch], self.schema)
        # A slice at a time: hashing holds every column spelled out as bytes, several times the slice.
        hashes = pa.chunked_array(
            [
                landing.content_hashes(table.slice(start, BATCH_ROWS))
                for start in range(0, len(table), BATCH_ROWS)
            ],
            pa.string(),
        )
        staged = table.append_column(CONTENT_HASH, hashes)
        if self._writer is None:
            self._writer = ipc.new_file(str(self._rows_path), staged.schema)
        self._writer.write_table(staged)
        ranked = {_POSITION: pa.array(np.arange(self.rows, self.rows + table.num_rows, dtype=np.int64))}
        ranked[_HASH] = hashes
        for name, column in self._ranking_columns():
            ranked[column] = table.column(name)
        self._insert(pa.table(ranked))
        self.rows += table.num_rows

    def _ranking_columns(self) -> list[tuple[str, str]]:
        """(staged column, DuckDB column): named by place, so any column name is safe in the SQL."""
        key = self.ranking.key or ()
        return [(name, f"k{i}") for i, name in enumerate(key)] + [
            (name, f"o{i}") for i, name in enumerate(self.ranking.descending)
        ]

    def _insert(self, ranked: pa.Table) -> None:
        if self._db is None:
            self._db = duckdb.connect(
                str(self._folder / "ranking.duckdb"),
                config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(self._folder / "spill")},
            )
            self._db.register("incoming", ranked)
            self._db.execute("CREATE TABLE ranked AS SELECT * FROM incoming")
        else:
            self._db.register("incoming", ranked)
            self._db.execute("INSERT INTO ranked SELECT * FROM incoming")
        self._db.unregister("incoming")

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- ranking and reading back -----------------------------------------------------------------------

    def landing(self) -> Iterator[pa.RecordBatch]:
        """The rows that land, in the order they were staged, in `schema` plus `_zenskar_content_hash` and,
        key-less, `_zenskar_row_id`. May be read more than once."""
        if self.rows == 0:
            return
        self._rank()
        assert self._ranked is not None
        positions = _Sorted(pq.ParquetFile(self._ranked).iter_batches(batch_size=POSITION_BATCH_ROWS))
        start = 0
        with pa.OSFile(str(self._rows_path)) as source:
            reader = ipc.open_file(source)
            for index in range(reader.num_record_batches):
                staged = reader.get_batch(index)
                for offset in range(0, staged.num_rows, BATCH_ROWS):
                    batch = staged.slice(offset, BATCH_ROWS)
                    end = start + batch.num_rows
                    at, values = positions.below(end)
                    if self.ranking.key is None:
                        yield self._with_row_ids(batch, at - start, values)
                    else:
                        keep = np.ones(batch.num_rows, dtype=bool)
                        keep[at - start] = False
                        yield batch if keep.all() else batch.filter(pa.array(keep))
                    start = end
        positions.check_exhausted()

    def _rank(self) -> None:
        """One query over the ranking columns, its answer ordered by position into a Parquet file: with a
        key, the positions of the rows that lose; key-less, (position, n) of the rows with n > 0 identical
        rows before them. Only values held by more than one row are ranked: in a first sync nearly every
        key is unique, and ranking those too took 11 s for 10M rows instead of 2 s."""
        if self._ranked is not None:
            return
        self._close_writer()
        assert self._db is not None
        path = self._folder / "ranked.parquet"
        if self.ranking.key is None:
            query = (
                f"WITH shared AS (SELECT {_HASH} FROM ranked GROUP BY {_HASH} HAVING count(*) > 1) "
                f"SELECT {_POSITION}, n FROM (SELECT {_POSITION}, "
                f"row_number() OVER (PARTITION BY {_HASH} ORDER BY {_POSITION}) - 1 AS n "
                f"FROM ranked SEMI JOIN shared USING ({_HASH})) WHERE n > 0 ORDER BY {_POSITION}"
            )
        else:
            keys = [column for name, column in self._ranking_columns() if column.startswith("k")]
            order = [f"{c} DESC NULLS LAST" for name, c in self._ranking_columns() if c.startswith("o")]
            same = " AND ".join(f"ranked.{k} IS NOT DISTINCT FROM shared.{k}" for k in keys)
            query = (
                f"WITH shared AS (SELECT {', '.join(keys)} FROM ranked GROUP BY ALL HAVING count(*) > 1) "
                f"SELECT {_POSITION}, 0 AS n FROM ranked SEMI JOIN shared ON ({same}) "
                f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} "
                f"ORDER BY {', '.join([*order, f'{_HASH} DESC'])}) > 1 ORDER BY {_POSITION}"
            )
        quoted = str(path).replace("'", "''")  # TMPDIR may hold a quote
        self._db.execute(f"COPY ({query}) TO '{quoted}' (FORMAT parquet)")
        self._db.close()  # its memory is not needed while the rows are written
        self._db = None
        self._ranked = path

    def _with_row_ids(self, batch: pa.RecordBatch, at: np.ndarray, numbers: np.ndarray) -> pa.RecordBatch:
        """`<hash>#<n>`, as `landing.row_ids` spells it: n counts the identical rows staged before."""
        occurrence = np.zeros(batch.num_rows, dtype=np.int64)
        occurrence[at] = numbers
        hashes = batch.column(CONTENT_HASH)
        ids = pc.binary_join_element_wise(hashes, pc.cast(pa.array(occurrence), pa.string()), "#")
        return pa.RecordBatch.from_arrays([*batch.columns, ids], names=[*batch.schema.names, ROW_ID])


class _Sorted:
    """(position, n) pairs read in ascending position order, taken a range at a time."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self._at = np.empty(0, dtype=np.int64)
        self._values = np.empty(0, dtype=np.int64)
        self._last = -1
        self._done = False

    def below(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The pairs with position < `end` not taken yet."""
        while not self._done and (self._at.size == 0 or self._at[-1] < end):
            batch = next(self._batches, None)
            if batch is None:
                self._done = True
                break
            at = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
            values = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
            if at.size and (at[0] <= self._last or np.any(np.diff(at) <= 0)):
                raise RuntimeError("the stage's ranking came back out of order; nothing was written")
            self._last = int(at[-1]) if at.size else self._last
            self._at = np.concatenate([self._at, at])
            self._values = np.concatenate([self._values, values])
        cut = int(np.searchsorted(self._at, end))
        taken = self._at[:cut], self._values[:cut]
        self._at, self._values = self._at[cut:], self._values[cut:]
        return taken

    def check_exhausted(self) -> None:
        if self._at.size or next(self._batches, None) is not None:
            raise RuntimeError("the stage's ranking names rows it does not hold; nothing was written")
