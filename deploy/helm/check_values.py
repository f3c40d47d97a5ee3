"""Checks Helm values files against a chart's JSON schema as `helm install` would, without Helm or a cluster:
the chart's own values.yaml with the given files over it (maps merged key by key, a null removing a key,
anything else replaced), checked against the chart's values.schema.json; the same for each subchart folder
under charts/ that has a schema, with its part of the values and the globals.

    python deploy/helm/check_values.py CHART_DIR deploy/helm/values.yaml [--kubernetes-definitions FILE]

CHART_DIR is an unpacked chart (`helm pull dagster/dagster --version 1.13.27 --untar`). Dagster's schema
refers to Kubernetes' own definitions (resources, probes, env, ...) by URL; with --kubernetes-definitions
(that `_definitions.json`, read from disk) they are checked too, else those parts are checked only for what
the chart's schema says of them, and the output says how many references were not followed.
Exit status 0 when every check passes, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def coalesce(base: Any, override: Any) -> Any:
    """`override` over `base` as Helm merges values: maps key by key, a null removes the key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _remote_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object whose `$ref` leaves the document."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#"):
            yield node
        for value in node.values():
            yield from _remote_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _remote_refs(value)


def validator(schema: dict[str, Any], kubernetes: Mapping[str, Any] | None) -> tuple[Any, int]:
    """A validator for `schema`, and how many remote references it does not follow (all of them without
    `kubernetes` definitions: they are dropped; with them, every remote document is that one)."""
    schema = copy.deepcopy(schema)
    remote = list(_remote_refs(schema))
    registry: Registry[Any] = Registry()
    if kubernetes is None:
        for node in remote:
            del node["$ref"]
    else:
        documents = {node["$ref"].partition("#")[0] for node in remote}
        resource = Resource.from_contents(dict(kubernetes), default_specification=DRAFT202012)
        registry = registry.with_resources((uri, resource) for uri in documents)
    checker = jsonschema.Draft202012Validator(schema, registry=registry)
    return checker, len(remote) if kubernetes is None else 0


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def problems(chart: Path, values: Any, kubernetes: Mapping[str, Any] | None) -> tuple[list[str], int]:
    """What the chart at `chart` (and its subchart folders) refuses in `values` (already over the chart's
    defaults), one line each with where it is; and the remote references not followed."""
    found: list[str] = []
    skipped = 0
    checks = [(chart.name, chart, values)]
    for sub in sorted(p for p in (chart / "charts").glob("*") if (p / "values.schema.json").exists()):
        defaults = _read_yaml(sub / "values.yaml")
        part = coalesce(defaults, values.get(sub.name) or {})
        part["global"] = coalesce(part.get("global") or {}, values.get("global") or {})
        checks.append((f"{chart.name}/charts/{sub.name}", sub, part))
    for label, folder, checked in checks:
        schema = json.loads((folder / "values.schema.json").read_text(encoding="utf-8"))
        checker, not_followed = validator(schema, kubernetes)
        skipped += not_followed
        for error in sorted(checker.iter_errors(checked), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
            found.append(f"{label}: {where}: {error.message}")
    return found, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "chart", type=Path, help="an unpacked chart: values.yaml, values.schema.json, charts/"
    )
    parser.add_argument("values", type=Path, nargs="+", help="values files, later ones over earlier ones")
    parser.add_argument("--kubernetes-definitions", type=Path, help="Kubernetes' _definitions.json")
    args = parser.parse_args(argv)
    merged = _read_yaml(args.chart / "values.yaml")
    for path in args.values:
        merged = coalesce(merged, _read_yaml(path))
    kubernetes = None
    if args.kubernetes_definitions:
        kubernetes = json.loads(args.kubernetes_definitions.read_text(encoding="utf-8"))
    found, skipped = problems(args.chart, merged, kubernetes)
    for line in found:
        print(line)
    names = ", ".join(str(path) for path in args.values)
    if found:
        print(f"{len(found)} problem(s) in {names}")
        return 1
    note = f"; {skipped} reference(s) to Kubernetes definitions not followed" if skipped else ""
    print(f"valid: {names} against {args.chart}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
