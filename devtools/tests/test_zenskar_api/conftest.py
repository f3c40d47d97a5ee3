"""The `usage` fixture: a client of the test's own local Zenskar API, its usage event defined."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zenskar_devtools.zenskar_api import LocalZenskarApi

from .usage_client import FIELDS, SLUG, UsageClient


@pytest.fixture
def usage(zenskar_api: LocalZenskarApi) -> Iterator[UsageClient]:
    """A client of the test's local API, which has the usage event `api_calls` with every type."""
    zenskar_api.define(SLUG, FIELDS)
    client = UsageClient(zenskar_api)
    yield client
    client.pool.clear()
