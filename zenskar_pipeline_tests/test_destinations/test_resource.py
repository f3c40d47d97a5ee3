"""The `destination` resource: every object-store variable reaches delta-rs as the storage option of its name,
and no secret field ever shows its value, in the resource's repr, in the Dagster definitions a UI loads, or in
a copy's repr. New secret fields are covered as they are added to `SECRET_FIELDS`."""

from __future__ import annotations

import secrets

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from zenskar_pipeline.destinations import DeltaDestinationResource
from zenskar_pipeline.destinations.delta import DeltaDestination
from zenskar_pipeline.destinations.resource import SECRET_FIELDS, STORAGE_VARIABLES


@dg.asset
def _nothing() -> None:
    return None


def _values() -> dict[str, str]:
    """A distinct value per field, a secret-looking one for each secret field."""
    return {
        name: f"secret-{secrets.token_hex(12)}" if name in SECRET_FIELDS else f"value-of-{name}"
        for name in STORAGE_VARIABLES
    }


def test_the_secret_fields_are_the_credentials() -> None:
    """A field is a secret unless it only names or points: adding a credential without listing it fails."""
    public = {name for name in STORAGE_VARIABLES if name not in SECRET_FIELDS}
    assert not {name for name in public if any(word in name for word in ("secret", "key", "token"))} - {
        "aws_access_key_id",
        "google_service_account",
    }
    assert set(STORAGE_VARIABLES) >= SECRET_FIELDS


def test_every_field_set_from_the_environment_reaches_delta_rs_under_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = _values()
    for name, value in values.items():
        monkeypatch.setenv(STORAGE_VARIABLES[name], value)
    options = DeltaDestinationResource.from_env().storage_options()
    assert options == {STORAGE_VARIABLES[name]: value for name, value in values.items()}


def test_no_secret_field_shows_in_repr_dagster_definitions_or_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    values = _values()
    hidden = [values[name] for name in SECRET_FIELDS]
    literal = DeltaDestinationResource(**values)
    assert not any(secret in text for secret in hidden for text in (repr(literal), str(literal)))
    assert values["aws_region"] in repr(literal)  # the check reads a repr that shows fields
    for name, value in values.items():
        monkeypatch.setenv(STORAGE_VARIABLES[name], value)
    from_env = DeltaDestinationResource.from_env()
    defs = dg.Definitions(assets=[_nothing], resources={"destination": from_env})
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "AWS_SECRET_ACCESS_KEY" in snapshot
    assert not any(secret in snapshot for secret in hidden)
    copy = DeltaDestination("s3://lake/copies/events", literal.storage_options(), partitioned=False)
    assert not any(secret in repr(copy) for secret in hidden)
