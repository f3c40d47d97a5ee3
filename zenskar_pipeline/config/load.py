"""Reading the streams file: which file (`ZENSKAR_PIPELINE_CONFIG`, else ./streams.yaml), and YAML errors
that name the file and line. A key written twice in one mapping is an error, not a silent overwrite.
`${env:NAME}` in a value is the environment variable NAME (`${env:NAME:-default}`: `default` when unset or
empty), so that one file serves several deployments; an unset variable without a default is an error naming
it. (`${SOURCE_NAMESPACE}`, without `env:`, is the destination's own placeholder, left as it is.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from zenskar_pipeline.config.errors import ConfigError, Problem
from zenskar_pipeline.config.models import PipelineConfig
from zenskar_pipeline.config.parse import parse_config
from zenskar_pipeline.config.rules import ModeRules

CONFIG_ENV = "ZENSKAR_PIPELINE_CONFIG"
DEFAULT_CONFIG = Path("streams.yaml")


# libyaml's parser when PyYAML was built with it (about 10x faster on a 500-stream file), else pure Python.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a mapping with a repeated key."""


def _mapping_without_repeats(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    """The streams file to read: `ZENSKAR_PIPELINE_CONFIG`, else ./streams.yaml, made absolute."""
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser().resolve()


def load_config(
    path: Path | None = None, env: Mapping[str, str] = os.environ, *, rules: ModeRules
) -> PipelineConfig:
    """Read and validate the streams file, each stream's settings also by its sync mode's `rules`;
    `ConfigError` lists every problem found."""
    path = Path(path).expanduser().resolve() if path is not None else config_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = "not found" if isinstance(error, FileNotFoundError) else f"cannot be read ({error.strerror})"
        raise ConfigError(
            [Problem("streams file", str(path), reason, f"pass --config FILE or set {CONFIG_ENV}")]
        ) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_problem(error)], path) from None
    problems: list[Problem] = []
    data = expand_variables(data, env, problems)
    if problems:
        raise ConfigError(problems, path)
    return parse_config(data, rules=rules, path=path, env=env)


_VARIABLE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_variables(
    data: object, env: Mapping[str, str], problems: list[Problem], where: str = "top level"
) -> object:
    """`data` with `${env:NAME}` and `${env:NAME:-default}` in its text values replaced from `env`; each unset
    variable without a default adds a problem naming the setting that uses it."""
    if isinstance(data, dict):
        return {
            key: expand_variables(value, env, problems, _path(where, str(key))) for key, value in data.items()
        }
    if isinstance(data, list):
        return [expand_variables(value, env, problems, f"{where}[{i}]") for i, value in enumerate(data)]
    if not isinstance(data, str) or "${env:" not in data:
        return data

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        problems.append(
            Problem(
                "environment",
                where,
                f"${{env:{name}}} is not set",
                f"set the variable {name}, give a default (${{env:{name}:-value}}) or write the value",
            )
        )
        return match.group(0)

    return _VARIABLE.sub(value, data)


def _path(where: str, key: str) -> str:
    return key if where == "top level" else f"{where}.{key}"


def _yaml_problem(error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return Problem("YAML", where, f"not valid YAML: {detail}", "fix the YAML at that line")
