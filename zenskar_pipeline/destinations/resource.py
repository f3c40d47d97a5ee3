"""Where copies live, as the Dagster resource `destination`: the Delta destination with its object-store
credentials as `EnvVar` fields, so that Dagster shows the variables' names and never their values.

delta-rs (object_store) takes its storage settings under the same names as these environment variables;
each field set here reaches every read and write of every copy as a storage option.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from zenskar_pipeline.config.models import ResolvedStream
from zenskar_pipeline.destinations.base import DestinationResource
from zenskar_pipeline.destinations.delta import DeltaDestination

# field name -> environment variable and delta-rs storage option of the same name
STORAGE_VARIABLES = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "aws_region": "AWS_REGION",
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
    "aws_allow_http": "AWS_ALLOW_HTTP",
    "azure_storage_account_name": "AZURE_STORAGE_ACCOUNT_NAME",
    "azure_storage_account_key": "AZURE_STORAGE_ACCOUNT_KEY",
    "azure_storage_sas_key": "AZURE_STORAGE_SAS_KEY",
    "azure_storage_client_id": "AZURE_STORAGE_CLIENT_ID",
    "azure_storage_client_secret": "AZURE_STORAGE_CLIENT_SECRET",
    "azure_storage_tenant_id": "AZURE_STORAGE_TENANT_ID",
    "azure_storage_use_emulator": "AZURE_STORAGE_USE_EMULATOR",
    "azure_storage_endpoint": "AZURE_STORAGE_ENDPOINT",
    "azure_allow_http": "AZURE_ALLOW_HTTP",
    "google_service_account": "GOOGLE_SERVICE_ACCOUNT",
    "google_service_account_key": "GOOGLE_SERVICE_ACCOUNT_KEY",
    "google_base_url": "GOOGLE_BASE_URL",
}
SECRET_FIELDS = frozenset(
    {
        "aws_secret_access_key",
        "aws_session_token",
        "azure_storage_account_key",
        "azure_storage_sas_key",
        "azure_storage_client_secret",
        "google_service_account_key",
    }
)


def _field(name: str) -> Any:
    variable = STORAGE_VARIABLES[name]
    return Field(default=None, repr=name not in SECRET_FIELDS, description=f"delta-rs `{variable}`.")


class DeltaDestinationResource(DestinationResource):
    """Copies as Delta tables at each stream's `destination_uri`, local or on an object store."""

    aws_access_key_id: str | None = _field("aws_access_key_id")
    aws_secret_access_key: str | None = _field("aws_secret_access_key")
    aws_session_token: str | None = _field("aws_session_token")
    aws_region: str | None = _field("aws_region")
    aws_endpoint_url: str | None = _field("aws_endpoint_url")
    aws_allow_http: str | None = _field("aws_allow_http")
    azure_storage_account_name: str | None = _field("azure_storage_account_name")
    azure_storage_account_key: str | None = _field("azure_storage_account_key")
    azure_storage_sas_key: str | None = _field("azure_storage_sas_key")
    azure_storage_client_id: str | None = _field("azure_storage_client_id")
    azure_storage_client_secret: str | None = _field("azure_storage_client_secret")
    azure_storage_tenant_id: str | None = _field("azure_storage_tenant_id")
    azure_storage_use_emulator: str | None = _field("azure_storage_use_emulator")
    azure_storage_endpoint: str | None = _field("azure_storage_endpoint")
    azure_allow_http: str | None = _field("azure_allow_http")
    google_service_account: str | None = _field("google_service_account")
    google_service_account_key: str | None = _field("google_service_account_key")
    google_base_url: str | None = _field("google_base_url")

    @classmethod
    def from_env(cls, **overrides: Any) -> DeltaDestinationResource:
        """Every storage variable set in this environment, as an `EnvVar`; the unset ones stay absent."""
        fields: dict[str, Any] = {
            name: dg.EnvVar(variable)
            for name, variable in STORAGE_VARIABLES.items()
            if os.environ.get(variable)
        }
        return cls(**{**fields, **overrides})

    def storage_options(self) -> dict[str, str]:
        """The delta-rs storage options of the fields that are set. An `EnvVar` is read here when the resource
        is used outside a Dagster run (`zenskar-pipeline reset`); inside one, Dagster has resolved it."""
        options = {}
        for name, variable in STORAGE_VARIABLES.items():
            value = getattr(self, name)
            if isinstance(value, dg.EnvVar):
                value = value.get_value()
            if value is not None:
                options[variable] = str(value)
        return options

    def for_stream(self, stream: ResolvedStream) -> DeltaDestination:
        return DeltaDestination.for_stream(stream, self.storage_options() or None)
