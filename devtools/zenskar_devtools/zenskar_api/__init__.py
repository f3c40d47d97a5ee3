"""A local stand-in for Zenskar's usage-event API (`POST /usage/<api_slug>`): a development and test tool.

It checks events against their usage event's schema as Zenskar does, honours Idempotency-Key, injects
faults on request, and keeps what it accepted in SQLite for tests to read back (`/_local/...`). Like the
local warehouse, it imports nothing of the product.
"""

from zenskar_devtools.zenskar_api.client import LocalZenskarApi, LocalZenskarApiError
from zenskar_devtools.zenskar_api.schemas import EVENT_TYPES

__all__ = ["EVENT_TYPES", "LocalZenskarApi", "LocalZenskarApiError"]
