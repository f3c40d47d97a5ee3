"""The copy behind an interface: everything the sync, the checks, the sensor and the command line need of one
stream's copy, and the Dagster resource that hands copies out. `DeltaDestination` implements both.

Partition keys are Dagster's (`2026-01-01`); `None` stands for the whole copy of an unpartitioned stream.
Rows handed to a write carry the stream's selected source columns and, when the stream is partitioned,
`_zenskar_partition`; the writer adds the other system columns (`landing.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds

from zenskar_pipeline.config.models import ResolvedStream

Rows: TypeAlias = pa.RecordBatchReader | pa.Table  # a reader streams; a table is read as is


class DestinationNotWritableError(OSError):
    """The copy's location cannot be written; raised before the sync reads anything."""


@dataclass(frozen=True)
class AppTransaction:
    """A per-application version committed with the data (e.g. the change feed's synced-through version)."""

    app_id: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    """What one write did. `version` None: nothing was committed."""

    rows_written: int  # rows inserted or rewritten with new content
    rows_deleted: int  # rows a replace removed from its scope (a deduped row that moved is not deleted)
    version: int | None
    rows_by_partition: Mapping[str | None, int] | None = None  # rows written per partition, when known


@dataclass(frozen=True)
class AppendNew:
    """A copy's rows land as `Destination.append_new` lands them: once per `landing_key` within a
    partition (the greatest by source version, then content), or key-less (None) every row, numbered
    among identical rows (`_zenskar_row_id`)."""

    landing_key: tuple[str, ...] | None


@dataclass(frozen=True)
class MergeDeduped:
    """A copy's rows land as `Destination.merge_deduped` lands them: one per `primary_key`, the greatest by
    (`cursor_field`, source version, content), with `_zenskar_content_hash`."""

    primary_key: tuple[str, ...]
    cursor_field: str | None


Landing: TypeAlias = AppendNew | MergeDeduped  # how the rows of a copy's first version are told apart


class ChangeAction(StrEnum):
    """What one change of a change feed does to a keyed copy."""

    UPSERT = "upsert"  # an insert or update inside the windows: the key's row becomes this one
    DELETE = "delete"  # the source deleted the key: remove the row (or mark it deleted)
    REMOVE = "remove"  # the key's row moved outside every window: the copy must not keep it anywhere


class Destination(ABC):
    """One stream's copy: where it is, what it holds, and the writes of the sync modes.

    Every write is one commit (or none when there is nothing to land); a write that fails commits nothing.
    A commit that loses a race with another writer is retried, and never lands a row twice.
    """

    partitioned: bool  # physically partitioned by `_zenskar_partition`
    storage_options: dict[str, str] | None  # what opens it (and tables beside it) on an object store

    @property
    @abstractmethod
    def uri(self) -> str:
        """Where the copy is: a local folder or an object-store url; shown to users."""

    # --- where it is ---------------------------------------------------------------------------------------

    @abstractmethod
    def check_writable(self) -> None:
        """Raise `DestinationNotWritableError` naming the location and the setting to fix when the copy
        cannot be written; called before anything is read from the source."""

    @abstractmethod
    def reset(self) -> bool:
        """Delete the copy and everything it records (marks, synced-through versions). Returns whether
        there was a copy to delete."""

    # --- what it holds -------------------------------------------------------------------------------------

    @abstractmethod
    def exists(self) -> bool:
        """Whether the copy has been written at least once."""

    @abstractmethod
    def version(self) -> int | None:
        """The copy's latest commit version; None when it does not exist."""

    @abstractmethod
    def schema(self) -> pa.Schema | None:
        """The copy's columns, system columns included; None when it does not exist."""

    @abstractmethod
    def transaction_version(self, app_id: str) -> int | None:
        """The version last committed under `app_id` (see `AppTransaction`); None when never."""

    @abstractmethod
    def high_water_marks(
        self, cursor_field: str, partitions: Sequence[str] | None = None
    ) -> dict[str | None, Any]:
        """The greatest non-NULL `cursor_field` landed per partition: `{None: mark}` when unpartitioned,
        else every asked-for partition (None: every partition holding rows), None where nothing landed."""

    @abstractmethod
    def row_counts(self, partitions: Sequence[str] | None = None) -> dict[str | None, int]:
        """Rows per partition (`{None: n}` when unpartitioned): every asked-for partition, 0 when empty
        (None: every partition holding rows)."""

    @abstractmethod
    def live_row_count(self) -> int:
        """Rows not marked `_zenskar_deleted` (all rows when the copy keeps no tombstones)."""

    @abstractmethod
    def duplicate_keys(self, key: Sequence[str], *, only_where: str | None = None) -> int:
        """How many values of `key` more than one row holds (NULL equal to NULL); with `only_where`, among
        the rows whose boolean column of that name is true."""

    @abstractmethod
    def key_values(self, key: Sequence[str], *, only_where: str | None = None) -> pa.Table:
        """The `key` columns of every row (with `only_where`, of the rows whose boolean column of that name
        is true); empty when the copy does not exist."""

    @abstractmethod
    def holds_version(self, partitions: Sequence[str] | None, version: int) -> bool:
        """Whether every partition asked for (None: the whole copy) holds rows, all of them read at source
        `version`: a full refresh of that scope at that version would write what is there."""

    @abstractmethod
    def dataset(self, version: int | None = None) -> ds.Dataset:
        """The copy's rows at `version` (None: the latest) as an Arrow dataset, read lazily; the caller
        checks `exists` first."""

    @abstractmethod
    def rows_with_keys(self, key: Sequence[str], keys: pa.Table, columns: Sequence[str]) -> pa.Table:
        """`columns` of the rows whose `key` (NULL equal to NULL) is one of the rows of `keys`."""

    # --- writes --------------------------------------------------------------------------------------------

    @abstractmethod
    def replace(
        self,
        batches: Rows,
        partitions: Sequence[str] | None,
        *,
        source_version: int,
        app_transaction: AppTransaction | None = None,
        keep_tombstones: bool = False,
    ) -> WriteResult:
        """The scope (these partitions, or the whole copy when None) becomes exactly the batches' rows.
        Batches stream through; if the reader fails, nothing is committed and its error is raised. A row
        outside the scope is an error. `keep_tombstones`: rows marked `_zenskar_deleted` stay."""

    @abstractmethod
    def append_new(
        self,
        batches: Rows,
        landing_key: Sequence[str] | None,
        *,
        source_version: int | None = None,
        app_transaction: AppTransaction | None = None,
        per_source_version: bool = False,
    ) -> WriteResult:
        """Land the rows not landed yet, matched on `landing_key` within their partition, or without a key
        on whole-row content counted as a multiset; rows sharing a key within the batch land once.
        `per_source_version`: rows carry `_zenskar_source_version` and are told apart per version."""

    @abstractmethod
    def create_copy(
        self, batches: pa.RecordBatchReader, landing: Landing, *, source_version: int
    ) -> WriteResult:
        """Write the copy's first version from the batches, in one commit, landing what `append_new` or
        `merge_deduped` (as `landing` says) would land into a copy that does not exist, however many rows
        are read: memory does not grow with them (they are staged on local disk).

        Args:
            batches: the rows, as `append_new` takes them (source columns, `_zenskar_partition` when
                partitioned); read once, to the end, before anything is written.
            landing: which rows land and which system columns they carry (`AppendNew`, `MergeDeduped`).
            source_version: the source version every row was read at (`_zenskar_source_version`).

        Returns:
            What was written: `rows_by_partition` always, `version` None when no row landed (no commit).
            When another writer created the copy meanwhile, the rows are merged into that copy as
            `landing` says (a commit per million rows), so that nothing lands twice; the result then adds
            up those commits and names the last.

        Raises:
            ValueError: the batches carry system columns the writer sets, or `_zenskar_partition` does not
                match `partitioned`; or, after a race, the merge's own errors (`append_new`).
            SchemaDriftError: after a race, the other writer's copy cannot take the rows' columns.
            Any error of the reader, as itself; nothing is committed then.
        """

    @abstractmethod
    def merge_deduped(
        self,
        batches: Rows,
        primary_key: Sequence[str],
        cursor_field: str | None,
        *,
        source_version: int | None = None,
        app_transaction: AppTransaction | None = None,
    ) -> WriteResult:
        """One row per `primary_key` across the whole copy, the greatest by (cursor, source version,
        content); an unchanged row is not rewritten; a row whose partition changed moves."""

    @abstractmethod
    def apply_changes(
        self,
        rows: pa.Table,
        actions: pa.Array,
        primary_key: Sequence[str],
        *,
        soft_deletes: bool,
        app_transaction: AppTransaction,
        partitions: Sequence[str] | None = None,
    ) -> WriteResult:
        """Apply a change feed to a keyed copy: `rows` (source columns, `_zenskar_partition` when
        partitioned, `_zenskar_source_version` per row) with one `ChangeAction` each; per key the last change
        wins (greatest source version, then an upsert over a delete). Nothing happens when the copy already
        records `app_transaction`'s version or a later one. `partitions`: the only ones that can hold rows
        of the changed keys (None: all)."""

    @abstractmethod
    def upsert(
        self,
        rows: pa.Table,
        on: Sequence[str],
        *,
        compare: Sequence[str],
        source_version: int | None = None,
        partitions: Sequence[str] | None = None,
        app_transaction: AppTransaction | None = None,
    ) -> WriteResult:
        """Rows matched on `on` (NULL equal to NULL) are rewritten when any `compare` column differs, the
        others inserted; `rows` are landed as given (system columns included), stamped with
        `_zenskar_synced_at` (and `source_version` when given). `partitions`: the only ones that can hold
        matching rows (None: all)."""

    @abstractmethod
    def advance(self, app_transaction: AppTransaction) -> int:
        """Commit `app_transaction` without data, so that a synced-through version moves on when the
        changes touched no row; the copy must exist. Returns the new commit version."""


class DestinationResource(dg.ConfigurableResource, ABC):
    """Where copies live, as a Dagster resource: hands out each stream's `Destination`. Storage settings
    (object-store credentials) are fields set from `EnvVar`s, never written in the streams file."""

    @abstractmethod
    def for_stream(self, stream: ResolvedStream) -> Destination:
        """The copy of `stream`, at its `destination_uri`."""
