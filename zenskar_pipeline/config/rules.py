"""How the streams file's checks ask each sync mode what it requires. Config knows no mode: the modes
(`sync/modes/`) answer through this protocol, and the caller passes them in (`zenskar_pipeline.streams`)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Protocol

from zenskar_pipeline.config.errors import Problem
from zenskar_pipeline.config.models import StreamConfig, StreamSettings


class ModeRules(Protocol):
    def settings_problems(self, where: str, stream: StreamConfig, written: AbstractSet[str]) -> list[Problem]:
        """What is wrong with a stream's settings for its mode, from the streams file alone (`written`: the
        keys the stream's own entry sets)."""
        ...

    def cursor_problems(self, where: str, settings: StreamSettings) -> list[Problem]:
        """A cursor the mode reads by but the stream does not name (checked when streams resolve)."""
        ...
