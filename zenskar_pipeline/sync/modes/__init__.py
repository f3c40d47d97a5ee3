"""The sync modes, one strategy each, keyed by (sync_mode, change_feed): the one place that lists them.

| sync_mode | change_feed | strategy |
|---|---|---|
| full_refresh | false | `full_refresh.FullRefresh` |
| incremental_append | false | `incremental_append.IncrementalAppend` |
| incremental_append_deduped | false | `incremental_deduped.IncrementalDeduped` |
| incremental_append | true | `change_feed_append.ChangeFeedAppend` |
| incremental_append_deduped | true | `change_feed_deduped.ChangeFeedDeduped` |
| history | false | `history.HistoryByCursor` |
| history | true | `history.HistoryByChangeFeed` |
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from zenskar_pipeline.config import Problem, StreamConfig, StreamSettings, SyncMode
from zenskar_pipeline.sync.modes.base import SyncRun, SyncStrategy
from zenskar_pipeline.sync.modes.change_feed_append import ChangeFeedAppend
from zenskar_pipeline.sync.modes.change_feed_deduped import ChangeFeedDeduped
from zenskar_pipeline.sync.modes.full_refresh import FullRefresh
from zenskar_pipeline.sync.modes.history import HistoryByChangeFeed, HistoryByCursor
from zenskar_pipeline.sync.modes.incremental_append import IncrementalAppend
from zenskar_pipeline.sync.modes.incremental_deduped import IncrementalDeduped

STRATEGIES: dict[tuple[SyncMode, bool], SyncStrategy] = {
    (strategy.mode, strategy.change_feed): strategy
    for strategy in (
        FullRefresh(),
        IncrementalAppend(),
        IncrementalDeduped(),
        ChangeFeedAppend(),
        ChangeFeedDeduped(),
        HistoryByCursor(),
        HistoryByChangeFeed(),
    )
}


def strategy_for(settings: StreamSettings) -> SyncStrategy:
    """The strategy of a stream's (sync_mode, change_feed); `ValueError` for a combination that has none
    (the streams file's checks report it first, see `settings_problems`)."""
    strategy = STRATEGIES.get((settings.sync_mode, settings.change_feed))
    if strategy is None:
        raise ValueError(f"sync_mode {settings.sync_mode.value} has no change_feed variant")
    return strategy


class ModeRules:
    """The modes' settings rules, as the streams file's checks ask for them (`config.ModeRules`)."""

    def settings_problems(self, where: str, stream: StreamConfig, written: AbstractSet[str]) -> list[Problem]:
        settings = stream.settings
        strategy = STRATEGIES.get((settings.sync_mode, settings.change_feed))
        if strategy is not None:
            return strategy.settings_problems(where, stream, written)
        refusal = STRATEGIES[(settings.sync_mode, not settings.change_feed)].refuses_change_feed
        problem, fix = refusal or (
            f"{settings.sync_mode.value} has no change_feed variant",
            "set change_feed: false",
        )
        origin = " (change_feed comes from defaults)" if "change_feed" in stream.from_defaults else ""
        return [Problem(where, "change_feed", problem + origin, fix)]

    def cursor_problems(self, where: str, settings: StreamSettings) -> list[Problem]:
        strategy = STRATEGIES.get((settings.sync_mode, settings.change_feed))
        return [] if strategy is None else strategy.cursor_problems(where, settings)


MODE_RULES = ModeRules()

__all__ = ["MODE_RULES", "STRATEGIES", "SyncRun", "SyncStrategy", "strategy_for"]
