"""How the streams file reports bad input: every problem at once, each naming where, which key and the fix.

Later checks against the source (unknown tables or columns) build `Problem`s too, so all errors read alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the streams file: `<where>: <key>: <problem>; <fix>`."""

    where: str  # "stream main.billing.usage_events", "streams[2]", "defaults", "destination", "top level"
    key: str  # the setting, dotted for nested ones: "partitions.start"
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.key}: {self.problem}; {self.fix}"


class ConfigError(ValueError):
    """The streams file cannot be used as written; the message lists every problem found."""

    def __init__(self, problems: Sequence[Problem], path: Path | None = None) -> None:
        self.problems = tuple(problems)
        self.path = path
        super().__init__(_format(self.problems, path))


def _format(problems: Sequence[Problem], path: Path | None) -> str:
    where = f"streams file {path}" if path is not None else "the streams file"
    if len(problems) == 1:
        return f"{where}: {problems[0]}" if path is not None else str(problems[0])
    lines = [f"{where} has {len(problems)} problems:"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def suggest(value: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to a misspelt `value`, if one is close enough (case differences always are)."""
    options = list(choices)
    by_fold = {option.casefold(): option for option in options}
    if value.casefold() in by_fold:
        return by_fold[value.casefold()]
    close = difflib.get_close_matches(value.casefold(), list(by_fold), n=1, cutoff=0.6)
    return by_fold[close[0]] if close else None


def choose_from(value: str, choices: Sequence[str]) -> str:
    """The fix for a value outside `choices`: the nearest one if any, then every valid one."""
    listed = " | ".join(choices)
    nearest = suggest(value, choices)
    if nearest is not None:
        return f"did you mean {nearest!r}? ({listed})"
    return f"use one of {listed}"
