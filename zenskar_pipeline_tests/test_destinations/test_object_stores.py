"""Copies on object stores, against stores the tests start on loopback (moto's S3, Azurite): the probe a sync
runs before it reads anything passes and leaves nothing behind, refuses a store or a setting that would let
two writers overwrite each other's commits, and turns bad input into one line naming the variable to check,
in seconds; a reset deletes every object of the copy and nothing beside it. GCS has no server here: its
settings and unreachable endpoints are checked without one."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.object_stores import AzuriteServer, S3Server
from zenskar_pipeline.destinations import DeltaDestinationResource, DestinationNotWritableError
from zenskar_pipeline.destinations.delta import DeltaDestination
from zenskar_pipeline.destinations.resource import SECRET_FIELDS, STORAGE_VARIABLES

# Bad input must fail in seconds; the probe gives a silent endpoint 5 s, delta-rs alone took minutes.
FAILS_WITHIN_S = 12


@dataclass(frozen=True)
class Store:
    """A store as a test sees it: the url of a folder in a bucket of its own, the variables that reach it,
    and the objects under that folder."""

    url: str
    env: dict[str, str]
    objects: Callable[[], dict[str, bytes]]
    credential: str  # the variable holding its secret
    endpoint: str  # the variable pointing at it


def _s3(server: S3Server) -> Store:
    bucket = server.create_bucket(f"lake-{uuid.uuid4().hex[:12]}")
    return Store(
        f"s3://{bucket}/copies",
        server.env(),
        lambda: server.objects(bucket),
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    )


def _azure(server: AzuriteServer, abfss: bool = False) -> Store:
    container = server.create_container(f"lake-{uuid.uuid4().hex[:12]}")
    url = (
        f"abfss://{container}@{server.account}.dfs.core.windows.net/copies"
        if abfss
        else f"az://{container}/copies"
    )
    return Store(
        url,
        server.env(),
        lambda: server.objects(container),
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ENDPOINT",
    )


@pytest.fixture(params=["s3", "az", "abfss"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "s3":
        return _s3(request.getfixturevalue("s3_store"))
    return _azure(request.getfixturevalue("azurite"), abfss=request.param == "abfss")


def _copy(store: Store, table: str = "events", **env: str) -> DeltaDestination:
    """The copy at `<store>/<table>` as the `destination` resource hands it out, the store's variables set."""
    fields = {name: {**store.env, **env}.get(variable) for name, variable in STORAGE_VARIABLES.items()}
    resource = DeltaDestinationResource(**{name: value for name, value in fields.items() if value})
    return DeltaDestination(f"{store.url}/{table}", resource.storage_options(), partitioned=False)


def _refusal(copy: DeltaDestination) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(DestinationNotWritableError) as raised:
        copy.check_writable()
    return str(raised.value), time.monotonic() - started


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_the_probe_passes_and_leaves_nothing_behind(store: Store) -> None:
    _copy(store).check_writable()
    assert store.objects() == {}


def test_a_store_that_ignores_conditional_writes_is_refused(unconditional_s3_store: S3Server) -> None:
    """Two writers could overwrite each other's commits there, losing rows: refused before any read."""
    store = _s3(unconditional_s3_store)
    copy = _copy(store)
    line, _ = _refusal(copy)
    assert line.startswith(f"cannot write the copy at {copy.uri}: the store accepted two writes of one Delta")
    assert "\n" not in line
    assert store.objects() == {}


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("AWS_S3_LOCKING_PROVIDER", "dynamodb"),
        ("AWS_S3_ALLOW_UNSAFE_RENAME", "true"),
        ("AWS_CONDITIONAL_PUT", "disabled"),
    ],
)
@pytest.mark.parametrize("where", ["option", "environment"])
def test_a_setting_that_gives_up_safe_commits_is_refused(
    s3_store: S3Server, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, where: str
) -> None:
    """delta-rs reads these from the environment as well as from its options."""
    store = _s3(s3_store)
    copy = _copy(store)
    if where == "option":
        copy = DeltaDestination(copy.uri, {**(copy.storage_options or {}), setting: value}, partitioned=False)
    else:
        monkeypatch.setenv(setting, value)
    line, _ = _refusal(copy)
    assert line.startswith(f"cannot write the copy at {copy.uri}: {setting}"), line
    assert f"unset {setting}" in line
    assert store.objects() == {}


def _bad_input(
    store: Store, case: str, closed_port: int, silent_port: int
) -> tuple[DeltaDestination, str, str]:
    """(copy, the variable the line must name, what it must say) for one kind of bad input."""
    host = store.env[store.endpoint].split("://")[1].split("/")[0]
    if case == "wrong-key":
        secret = store.env[store.credential]
        wrong = secret[:-8] + ("AAAAAAA=" if secret.endswith("=") else "wrongkey")
        return (
            _copy(store, **{store.credential: wrong}),
            store.credential,
            "refused the credentials (HTTP 403",
        )
    if case == "missing-bucket":
        scheme, rest = store.url.split("://")
        container = rest.split("/")[0].split("@")[0]
        missing = DeltaDestination(
            _copy(store).uri.replace(f"{scheme}://{container}", f"{scheme}://no-such-{container}"),
            _copy(store).storage_options,
            partitioned=False,
        )
        return missing, "destination.uri", "does not exist (HTTP 404"
    port = closed_port if case == "refused-endpoint" else silent_port
    moved = store.env[store.endpoint].replace(host, f"127.0.0.1:{port}")
    reason = "the connection was refused" if case == "refused-endpoint" else "it did not answer in time"
    return _copy(store, **{store.endpoint: moved}), store.endpoint, reason


@pytest.mark.parametrize("case", ["wrong-key", "missing-bucket", "refused-endpoint", "silent-endpoint"])
def test_bad_input_fails_in_seconds_with_one_line_naming_the_variable(
    store: Store, case: str, closed_port: int, silent_port: int
) -> None:
    copy, variable, reason = _bad_input(store, case, closed_port, silent_port)
    line, seconds = _refusal(copy)
    assert line.startswith(f"cannot write the copy at {copy.uri}: "), line
    assert reason in line and variable in line, line
    assert "\n" not in line
    assert seconds < FAILS_WITHIN_S
    secrets = [value for name, value in (copy.storage_options or {}).items() if name.lower() in SECRET_FIELDS]
    assert secrets and not any(secret in line for secret in secrets)
    assert store.objects() == {}


@pytest.mark.parametrize(
    ("settings", "variable", "reason"),
    [
        ({"GOOGLE_SERVICE_ACCOUNT": "/no/such/key.json"}, "GOOGLE_SERVICE_ACCOUNT", "no usable credentials"),
        (
            {"GOOGLE_SERVICE_ACCOUNT_KEY": '{"type": "serv'},
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "no usable credentials",
        ),
    ],
    ids=["missing-key-file", "unreadable-key"],
)
def test_gcs_credentials_that_cannot_be_read_fail_at_once(
    settings: dict[str, str], variable: str, reason: str
) -> None:
    """No GCS server here: what needs none is checked."""
    copy = DeltaDestination("gs://lake/copies/events", settings, partitioned=False)
    line, seconds = _refusal(copy)
    assert line.startswith("cannot write the copy at gs://lake/copies/events: " + reason), line
    assert f"check {variable}" in line
    assert seconds < FAILS_WITHIN_S


@pytest.mark.parametrize("case", ["refused-endpoint", "silent-endpoint"])
def test_an_unreachable_gcs_endpoint_fails_in_seconds(case: str, closed_port: int, silent_port: int) -> None:
    port = closed_port if case == "refused-endpoint" else silent_port
    settings = {"GOOGLE_BASE_URL": f"http://127.0.0.1:{port}", "google_skip_signature": "true"}
    line, seconds = _refusal(DeltaDestination("gs://lake/copies/events", settings, partitioned=False))
    assert "cannot reach the store at http://127.0.0.1:" in line and "check GOOGLE_BASE_URL" in line, line
    assert seconds < FAILS_WITHIN_S


def test_reset_deletes_every_object_of_the_copy_and_nothing_beside_it(store: Store) -> None:
    copy = _copy(store, table="events")
    options = copy.storage_options
    for day in range(3):  # three versions, two partitions
        rows = pa.table({"day": [f"2026-01-0{1 + day % 2}"], "n": [day]})
        write_deltalake(copy.uri, rows, mode="append", partition_by=["day"], storage_options=options)
    beside = [f"{store.url}/events_v2", f"{store.url}/events2/nested"]  # names that start alike
    for uri in beside:
        write_deltalake(uri, pa.table({"n": [1]}), storage_options=options)
    before = store.objects()
    prefix = copy.uri.split("/", 3)[3] + "/"
    assert any(key.startswith(prefix) for key in before)

    assert copy.reset() is True
    after = store.objects()
    assert after == {key: data for key, data in before.items() if not key.startswith(prefix)}
    assert not copy.exists()
    assert all(DeltaTable(uri, storage_options=options).to_pyarrow_table().num_rows == 1 for uri in beside)
    assert copy.reset() is False


def test_an_azure_key_that_is_not_base64_is_named(azurite: AzuriteServer) -> None:
    store = _azure(azurite)
    copy = _copy(store, AZURE_STORAGE_ACCOUNT_KEY="not=base64=at=all")
    line, seconds = _refusal(copy)
    assert "a key is not valid base64" in line and "AZURE_STORAGE_ACCOUNT_KEY" in line, line
    assert "not=base64=at=all" not in line
    assert seconds < FAILS_WITHIN_S
