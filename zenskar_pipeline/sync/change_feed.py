"""Change-feed syncs: the copy follows the source's Delta change data feed, version by version."""

from __future__ import annotations

APP_ID_PREFIX = "zenskar-pipeline:"


def app_id(stream_name: str) -> str:
    """The Delta application id under which a stream's copy records its synced-through source version."""
    return f"{APP_ID_PREFIX}{stream_name}"
