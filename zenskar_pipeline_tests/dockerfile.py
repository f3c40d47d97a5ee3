"""The repository's Dockerfile and .dockerignore as the tests read them: stages of instructions, and which
paths of the repository reach the build context.

Only the subset of Dockerfile syntax the project's file uses: line continuations, comments, `AS` stage names,
`$VAR`/`${VAR}` from ARG and ENV. A .dockerignore pattern matches a path or any folder above it, `*` within
one path element and `**` across them; the last pattern that matches decides, `!` letting a path back in.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # the rest of the instruction, continuation lines joined
    line: int  # where it starts, for messages


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]


def read_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """The stages of the Dockerfile at `path`, in order."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        pending = []
        instruction = Instruction(keyword.upper(), arguments.strip(), start)
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            named = len(words) == 3 and words[1].upper() == "AS"
            stages.append(Stage(base=words[0], name=words[2] if named else None))
        elif not stages:
            raise ValueError(f"{path.name}:{start}: {instruction.keyword} before any FROM")
        else:
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of a CMD or ENTRYPOINT."""
    words = json.loads(instruction.arguments)
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise ValueError(f"line {instruction.line}: {instruction.keyword} is not a JSON array of strings")
    return words


def assignments(instruction: Instruction, variables: Mapping[str, str]) -> dict[str, str]:
    """The `KEY=value` pairs of an ENV, ARG or LABEL, values expanded against `variables` (as Docker does, one
    instruction's pairs do not see each other)."""
    found: dict[str, str] = {}
    for word in shlex.split(instruction.arguments):
        key, equals, value = word.partition("=")
        if not equals and instruction.keyword != "ARG":
            raise ValueError(f"line {instruction.line}: {word!r} is not KEY=value")
        found[key] = expand(value, variables) if equals else variables.get(key, "")
    return found


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """`$VAR` and `${VAR}` in `text` replaced from `variables` (unknown ones by nothing, as Docker does)."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), text)


# -- .dockerignore -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    exception: bool  # a `!` pattern: lets matching paths back in


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[IgnorePattern]:
    patterns = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        text = line.removeprefix("!").strip().strip("/")
        patterns.append(IgnorePattern(re.compile(_glob_regex(text)), exception))
    return patterns


def _glob_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def in_context(relative: str, patterns: Iterable[IgnorePattern]) -> bool:
    """Whether the file at `relative` (a path inside the repository, with `/`) reaches the build context."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        if any(pattern.regex.fullmatch(prefix) for prefix in prefixes):
            included = pattern.exception
    return included
