"""Copies on object stores through delta-rs: S3 and S3-compatible stores, Azure Blob Storage and ADLS Gen2,
Google Cloud Storage. Which store a url names and which variables reach it; the probe a sync runs before it
reads anything; the deletion of a copy's objects (`reset`).

Two writers of one copy are safe when the store refuses a second commit of the same version. delta-rs 1.x
writes every commit with a conditional put (`If-None-Match: *` on S3 and Azure, generation 0 on GCS) and, when
it loses, re-reads the log and retries on its conflict check. It has no DynamoDB lock any more: it ignores
`AWS_S3_LOCKING_PROVIDER` (logging an error), and `AWS_S3_ALLOW_UNSAFE_RENAME` no longer changes how it
commits. AWS S3 honours conditional puts; an S3-compatible store that ignores them lets one writer's commit
overwrite another's, and only a probe can tell. delta-rs lists the log just before each commit, so a commit
from a stale view of the table never reaches the store; the probe instead has a rival process commit a probe
table's first version while delta-rs writes it (after its check, before its put), and refuses the store
when both commits succeed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

from zenskar_pipeline.destinations.base import DestinationNotWritableError

# The probe is bounded so that bad input fails in seconds: delta-rs's own defaults (10 retries within 180 s,
# 30 s a request) took 3 minutes to give up on an endpoint that did not answer. A request that fails fast (a
# 503) is retried once; one that timed out is not (more than `retry_timeout` has gone). Only the probe is
# bounded: the sync's reads and writes keep delta-rs's retries for a store that is slow for a moment.
PROBE_BOUNDS = {"timeout": "4s", "connect_timeout": "3s", "max_retries": "1", "retry_timeout": "3s"}
PROBE_FOLDER = "_zenskar_probe"  # under the copy's location; `_` hides it from Delta readers
_COMMIT = re.compile(r"(^|/)\d{20}\.json$")  # a Delta log commit, not a checkpoint
_PROBE_SCHEMA = pa.schema([pa.field("probe", pa.int32())])
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ObjectStore:
    """One kind of store: its url schemes and the variables a user checks when it cannot be reached."""

    name: str
    schemes: tuple[str, ...]
    container: str  # what the url's first part names: bucket or container
    credentials: tuple[tuple[str, ...], ...]  # alternative sets of variables, the first set in use named
    endpoint: str  # the variable that points at another endpoint than the cloud's own
    default_endpoint: str  # the variable that picks the cloud's own endpoint


S3 = ObjectStore(
    "S3",
    ("s3", "s3a"),
    "bucket",
    (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),),
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
)
AZURE = ObjectStore(
    "Azure",
    ("az", "adl", "azure", "abfs", "abfss"),
    "container",
    (
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_SAS_KEY"),
        ("AZURE_STORAGE_CLIENT_ID", "AZURE_STORAGE_CLIENT_SECRET", "AZURE_STORAGE_TENANT_ID"),
    ),
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_STORAGE_ACCOUNT_NAME",
)
GCS = ObjectStore(
    "GCS",
    ("gs",),
    "bucket",
    (("GOOGLE_SERVICE_ACCOUNT",), ("GOOGLE_SERVICE_ACCOUNT_KEY",)),
    "GOOGLE_BASE_URL",
    "GOOGLE_SERVICE_ACCOUNT",
)
STORES = (S3, AZURE, GCS)


def store_of(uri: str) -> ObjectStore | None:
    """The object store a url names; None for a local folder (or `file://`)."""
    scheme = urlsplit(uri).scheme.lower()
    return next((store for store in STORES if scheme in store.schemes), None)


def check_writable(uri: str, options: Mapping[str, str], environ: Mapping[str, str] | None = None) -> None:
    """Raise `DestinationNotWritableError` (one line: the copy, the problem, the variable to check) when
    the copy at `uri` cannot be written safely: a setting that gives up the protection of concurrent
    commits, or a store that cannot be reached, refuses the credentials, lacks the bucket or container,
    or does not refuse a second commit of one version. Leaves nothing behind."""
    store = store_of(uri)
    if store is None:
        raise ValueError(f"{uri} is not an object-store url")
    unsafe = unsafe_setting(store, options, os.environ if environ is None else environ)
    if unsafe is not None:
        raise DestinationNotWritableError(f"cannot write the copy at {uri}: {unsafe}")
    problem = _probe(uri, {**options, **PROBE_BOUNDS})
    if problem is not None:
        raise DestinationNotWritableError(f"cannot write the copy at {uri}: {_redacted(problem, options)}")


def unsafe_setting(store: ObjectStore, options: Mapping[str, str], environ: Mapping[str, str]) -> str | None:
    """Why the settings (the storage options, then the environment, which delta-rs also reads) would let
    two writers of one copy overwrite each other's commits or keep every commit from landing; None when
    they would not."""
    if store is not S3:
        return None
    settings = {name.upper(): value for name, value in environ.items()}
    settings.update({name.upper(): value for name, value in options.items()})
    if settings.get("AWS_S3_LOCKING_PROVIDER"):
        return (
            "AWS_S3_LOCKING_PROVIDER is set, but delta-rs no longer has a DynamoDB lock (it commits with "
            "conditional puts and ignores the setting); unset AWS_S3_LOCKING_PROVIDER"
        )
    if settings.get("AWS_S3_ALLOW_UNSAFE_RENAME", "").lower() in _TRUTHY:
        return (
            "AWS_S3_ALLOW_UNSAFE_RENAME declares that one writer alone writes each copy, which two runs of "
            "a stream do not promise; unset AWS_S3_ALLOW_UNSAFE_RENAME"
        )
    for name in ("AWS_CONDITIONAL_PUT", "CONDITIONAL_PUT"):
        if settings.get(name, "").lower() == "disabled":
            return (
                f"{name}=disabled turns off the conditional puts every Delta commit needs; unset {name} "
                "(or set it to etag)"
            )
    return None


def _probe(uri: str, options: dict[str, str]) -> str | None:
    """What keeps the copy at `uri` from being written safely, found by a probe table under it, deleted
    after: its version 0 is committed by a rival process between delta-rs's check that no table is there
    and delta-rs's own commit, which the store must refuse. None when nothing does."""
    store = store_of(uri)
    assert store is not None
    where = f"{uri}/{PROBE_FOLDER}-{uuid.uuid4().hex}"
    rival: list[str] = []  # what the rival's commit failed with, if it did
    reached = False  # whether delta-rs got as far as reading the rows: only then may it have written

    def rows_after_the_rival() -> Iterator[pa.RecordBatch]:
        # delta-rs reads the rows after its check and before its commit: the rival commits now. A process
        # of its own: a thread would wait on the runtime whose worker this generator holds.
        nonlocal reached
        reached = True
        done = subprocess.run(
            [sys.executable, "-c", _RIVAL],
            input=json.dumps({"uri": where, "options": options}),
            capture_output=True,
            text=True,
            timeout=_RIVAL_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            rival.append(done.stderr or f"the rival commit exited with {done.returncode}")
        yield from ()

    rows = pa.RecordBatchReader.from_batches(_PROBE_SCHEMA, rows_after_the_rival())
    try:
        write_deltalake(
            where,
            rows,
            mode="error",
            storage_options=options,
            commit_properties=CommitProperties(max_commit_retries=0),
        )
        refused = False
    except CommitFailedError:
        refused = True
    except Exception as error:  # delta-rs raises OSError and DeltaError with the store's answer
        if reached:  # else nothing was written, and a store that does not answer would cost seconds more
            _delete_quietly(where, options)
        return _explain(rival[0] if rival else error, store, uri, options)
    if rival:
        _delete_quietly(where, options)
        return _explain(rival[0], store, uri, options)
    deleted = _delete(where, options)
    if deleted is not None:
        return deleted
    if not refused:
        return (
            "the store accepted two writes of one Delta commit (it ignores conditional puts, If-None-Match), "
            "so two runs could overwrite each other's commits and lose rows; use a store that supports "
            "conditional writes (AWS S3 does; for an S3-compatible store, check its version)"
        )
    return None


# The rival commit: the probe table's version 0, from the storage options on stdin.
_RIVAL = """
import json, sys
import pyarrow as pa
from deltalake import DeltaTable
given = json.load(sys.stdin)
DeltaTable.create(given["uri"], pa.schema([pa.field("probe", pa.int32())]), storage_options=given["options"])
"""
_RIVAL_TIMEOUT_S = 30


def _delete(where: str, options: dict[str, str]) -> str | None:
    try:
        DeltaStorageHandler(where, options).delete_dir("")
    except Exception as error:
        store = store_of(where)
        assert store is not None
        return (
            f"the store let the probe write under the copy's location but not delete "
            f"({_detail(str(error))}); allow deletes there: a reset and the probe of every sync need them"
        )
    return None


def _delete_quietly(where: str, options: dict[str, str]) -> None:
    """Remove what a failed probe wrote; its own failure is the one worth reporting."""
    with contextlib.suppress(Exception):
        DeltaStorageHandler(where, options).delete_dir("")


def delete_copy(uri: str, options: Mapping[str, str]) -> bool:
    """Delete every object under the copy's location; returns whether there was any.

    The order keeps a reset that stops midway from leaving an older version of the copy readable: the log's
    checkpoints go first, then its first commit (the copy no longer loads), then the data and the probes'
    leftovers, then the rest of the log. A reset that stopped is finished by running it again."""
    handler = DeltaStorageHandler(uri, dict(options))
    files = pafs.PyFileSystem(handler)
    top = files.get_file_info(pafs.FileSelector("", allow_not_found=True))
    if not top:
        return False
    log = [
        info.path
        for info in files.get_file_info(pafs.FileSelector("_delta_log", allow_not_found=True, recursive=True))
        if info.type == pafs.FileType.File
    ]
    commits = sorted(path for path in log if _COMMIT.search(path))
    checkpoints = sorted(path for path in log if path not in commits)
    # Without its first commit (and its checkpoints) a copy of several versions no longer loads; a copy of
    # one keeps it to the end, so that a reset that stopped still finds a copy to finish.
    for path in [*checkpoints, *(commits[:1] if len(commits) > 1 else [])]:
        handler.delete_file(path)
    for info in top:
        if info.path == "_delta_log":
            continue
        if info.type == pafs.FileType.Directory:
            handler.delete_dir(info.path)
        else:
            handler.delete_file(info.path)
    handler.delete_dir("_delta_log")
    return True


# --- one line out of delta-rs's error ---------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_STATUS = re.compile(r"\b([1-5]\d\d) ([A-Z][A-Za-z ]*[a-z])")
_CODE = re.compile(r"<Code>(\w+)</Code>")
_UNREACHABLE = (
    ("dns error", "its host name does not resolve"),
    ("connection refused", "the connection was refused"),
    ("timed out", "it did not answer in time"),
    ("tcp connect error", "it could not be connected to"),
    ("error sending request", "it could not be connected to"),
)
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationFailure",
    "AuthenticationFailed",
    "AuthorizationPermissionMismatch",
    "InvalidAuthenticationInfo",
}
_MISSING_CODES = {"NoSuchBucket", "ContainerNotFound", "FilesystemNotFound"}


def _explain(error: BaseException | str, store: ObjectStore, uri: str, options: Mapping[str, str]) -> str:
    """The problem and its fix in one line, from delta-rs's error: its HTTP status and the store's error code,
    or the connection's failure; never its urls (an Azure SAS key travels in the query)."""
    text = _ANSI.sub("", str(error))
    lowered = text.lower()
    status = _STATUS.search(text)
    code = _CODE.search(text)
    answer = " ".join(
        part
        for part in (
            f"HTTP {status.group(1)} {status.group(2)}" if status else "",
            code.group(1) if code else "",
        )
        if part
    )
    container = _container(uri)
    if "conditional put is disabled" in lowered:
        return (
            "the store is set not to make conditional puts, which every Delta commit needs; unset "
            "AWS_CONDITIONAL_PUT (or set it to etag)"
        )
    if (code and code.group(1) in _MISSING_CODES) or (status and status.group(1) == "404" and not code):
        missing = f"the {store.container} {container!r} does not exist"
        return f"{missing} ({answer}); create it, or fix destination.uri"
    if (code and code.group(1) in _DENIED_CODES) or (status and status.group(1) in ("401", "403")):
        return f"the store refused the credentials ({answer}); check {_credentials(store, options)}"
    if "invalid symbol" in lowered or "base64" in lowered:
        return f"a key is not valid base64 ({_detail(text)}); check {_credentials(store, options)}"
    if "credential" in lowered:
        return f"no usable credentials ({_detail(text)}); check {_credentials(store, options)}"
    for needle, reason in _UNREACHABLE:
        if needle in lowered:
            where = _endpoint(store, uri, options)
            return f"cannot reach the store at {where}: {reason}; check {_endpoint_variable(store, options)}"
    return (
        f"the store answered {answer or _detail(text)}; check {_credentials(store, options)} and "
        f"{_endpoint_variable(store, options)}"
    )


def _detail(text: str) -> str:
    """The innermost line of delta-rs's error chain that is not the store's XML, without urls."""
    lines = [
        _URL.sub("<url>", line.strip(" ↳\t"))
        for line in _ANSI.sub("", text).splitlines()
        if line.strip(" ↳\t")
    ]
    lines = [line for line in lines if not line.startswith("<")]
    return lines[-1] if lines else "no reason given"


def _container(uri: str) -> str:
    """The bucket or container a url names (`abfss://container@account.dfs...` too)."""
    return urlsplit(uri).netloc.split("@")[0]


def _credentials(store: ObjectStore, options: Mapping[str, str]) -> str:
    names = {name.upper() for name in options}
    chosen = next(
        (group for group in store.credentials if any(name in names for name in group if "NAME" not in name)),
        store.credentials[0],
    )
    shown = [name for name in chosen if name in names or name != "AWS_SESSION_TOKEN"]
    return " and ".join(shown) if len(shown) <= 2 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _endpoint_variable(store: ObjectStore, options: Mapping[str, str]) -> str:
    return store.endpoint if store.endpoint in {name.upper() for name in options} else store.default_endpoint


def _endpoint(store: ObjectStore, uri: str, options: Mapping[str, str]) -> str:
    """Where the store was looked for, without user info or query."""
    given = {name.upper(): value for name, value in options.items()}.get(store.endpoint)
    parts = urlsplit(given or uri)
    host = parts.netloc.rsplit("@", 1)[-1] if given else parts.netloc
    return f"{parts.scheme}://{host}{parts.path if given else ''}".rstrip("/")


def _redacted(text: str, options: Mapping[str, str]) -> str:
    """`text` without any storage option's value long enough to be a secret (a last guard: the lines above
    are built from statuses, codes and names)."""
    for name, value in options.items():
        if len(value) >= 8 and not name.upper().endswith(("_URL", "_ENDPOINT", "_NAME", "_ID", "_REGION")):
            text = text.replace(value, "***")
    return text
