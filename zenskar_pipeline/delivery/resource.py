"""The connection to Zenskar's usage-event API as the Dagster resource `zenskar`: its settings from
`ZENSKAR_API_URL`, `ZENSKAR_ORGANISATION` and `ZENSKAR_API_KEY` as `EnvVar`s, so that Dagster shows the
variables' names and never the key; and how hard a delivery may push (concurrency, rate, retries)."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from zenskar_pipeline.delivery.client import UsageApiClient

DEFAULT_API_URL = "https://api.zenskar.com"
VARIABLES = {
    "api_url": "ZENSKAR_API_URL",
    "organisation": "ZENSKAR_ORGANISATION",
    "api_key": "ZENSKAR_API_KEY",
}
BATCH_LIMIT = 500  # events per request, as Zenskar's own client sends them


class ZenskarSettingsError(ValueError):
    """A setting the delivery needs is missing or wrong; the message names the variable."""


class ZenskarResource(dg.ConfigurableResource):
    """Where usage events go, and how: batches of `batch_size` events, `max_concurrent_requests` at a time,
    at most `requests_per_second` (Zenskar publishes no rate limit: stay polite, and raise it with them)."""

    api_url: str = Field(default=DEFAULT_API_URL, description="ZENSKAR_API_URL.")
    organisation: str | None = Field(default=None, description="ZENSKAR_ORGANISATION: the organisation id.")
    api_key: str | None = Field(default=None, repr=False, description="ZENSKAR_API_KEY.")
    batch_size: int = Field(default=BATCH_LIMIT, description="Events per request (at most 500).")
    max_concurrent_requests: int = Field(default=4, description="Requests in flight at once.")
    requests_per_second: float | None = Field(
        default=20.0, description="At most this many requests a second."
    )
    timeout_seconds: float = Field(default=30.0, description="How long to wait for one answer.")
    max_attempts: int = Field(default=8, description="Attempts per batch before a run gives up on it.")
    max_backoff_seconds: float = Field(default=30.0, description="The longest wait between two attempts.")

    @classmethod
    def from_env(cls, **overrides: Any) -> ZenskarResource:
        """The variables set in this environment, as `EnvVar`s (unset ones stay absent: a code location
        without delivery needs none of them)."""
        fields: dict[str, Any] = {
            name: dg.EnvVar(variable) for name, variable in VARIABLES.items() if os.environ.get(variable)
        }
        return cls(**{**fields, **overrides})

    def client(self) -> UsageApiClient:
        """A client with these settings; `ZenskarSettingsError` naming what is missing."""
        values = {name: _value(getattr(self, name)) for name in VARIABLES}
        missing = [VARIABLES[name] for name in ("organisation", "api_key") if not values[name]]
        if missing:
            raise ZenskarSettingsError(
                f"{' and '.join(missing)} not set: set the organisation id and API key Zenskar gave you "
                "(the local API prints them: `zenskar-pipeline zenskar-api serve`)"
            )
        key = str(values["api_key"]).strip()
        if not key.isprintable() or " " in key:
            raise ZenskarSettingsError(
                "ZENSKAR_API_KEY holds a space or a control character: set the key alone, as Zenskar shows it"
            )
        url = str(values["api_url"] or DEFAULT_API_URL)
        if not url.startswith(("http://", "https://")):
            raise ZenskarSettingsError(
                f"ZENSKAR_API_URL {url!r} is not an http(s) url; such as {DEFAULT_API_URL}"
            )
        if not 1 <= self.batch_size <= BATCH_LIMIT:
            raise ZenskarSettingsError(f"batch_size {self.batch_size} is not between 1 and {BATCH_LIMIT}")
        return UsageApiClient(
            url,
            str(values["organisation"]),
            key,
            max_concurrent_requests=self.max_concurrent_requests,
            requests_per_second=self.requests_per_second,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
        )


def _value(value: Any) -> Any:
    """An `EnvVar` read now (the resource used outside a run, by the command line); a value as it is."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value
