"""The JSON Schemas of rule files and scenarios: the one source of truth for what is
allowed, and for rules the defaults."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from hems_rules.errors import Problem
from hems_rules.ruleset.durations import format_duration, parse_duration
from hems_rules.ruleset.validator import Found, Location, SchemaError, Validator
from hems_rules.ruleset.yamldoc import YamlDocument

RULES = "rules.schema.json"
SCENARIO = "scenario.schema.json"
# The package's directory, where the schemas are installed (and linked in a checkout).
_PACKAGE = Path(__file__).parent.parent


@cache
def schema(name: str = RULES) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_PACKAGE / name).read_text("utf-8"))
    return loaded


def _inline(node: Any, name: str) -> Any:
    """The schema `name` with every $ref replaced by its definition.

    Same meaning, with nothing to resolve while checking an instance (the schemas have
    no recursive definitions), so the validator needs no references at all. Keywords
    beside a $ref narrow what it refers to (a use's x-seconds replaces the duration's).
    A reference into another schema names its file, relative to $id as JSON Schema has
    it: "rules.schema.json#/$defs/duration".
    """
    if isinstance(node, dict):
        if "$ref" in node:
            file, _, pointer = node["$ref"].partition("#")
            target = file or name
            definition = schema(target)["$defs"][pointer.rsplit("/", 1)[-1]]
            narrowed = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(definition, target), **_inline(narrowed, name)}
        return {k: _inline(v, name) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, name) for v in node]
    return node


def _seconds(
    _: Validator, bounds: dict[str, float], instance: Any, __: Mapping[str, Any], ___: Location
) -> Found:
    """x-seconds: a duration's range in seconds, whichever way it is written."""
    try:
        seconds = parse_duration(instance)
    except ValueError:
        return  # not a duration at all: the anyOf beside this says so
    low, high = bounds.get("minimum", 0.0), bounds.get("maximum")
    if seconds < low:
        yield f"{_show(instance)} is shorter than {format_duration(low)}"
    elif high is not None and seconds > high:
        yield f"{_show(instance)} is longer than {format_duration(high)}"


@cache
def _validator(name: str) -> Validator:
    return Validator(_inline(schema(name), name), {"x-seconds": _seconds})


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def with_defaults(data: Any, node: dict[str, Any] | None = None) -> Any:
    """A copy of valid data with every default of the schema filled in, at any depth."""
    node = _resolve(node if node is not None else schema())
    if isinstance(data, dict):
        filled = dict(data)
        properties = node.get("properties", {})
        for name, spec in properties.items():
            declared = spec if "default" in spec else _resolve(spec)
            if name not in filled and "default" in declared:
                filled[name] = declared["default"]
        for name, value in filled.items():
            if name in properties:
                filled[name] = with_defaults(value, properties[name])
            elif isinstance(node.get("additionalProperties"), dict):
                filled[name] = with_defaults(value, node["additionalProperties"])
        return filled
    if isinstance(data, list) and isinstance(node.get("items"), dict):
        return [with_defaults(item, node["items"]) for item in data]
    return data


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems(doc: YamlDocument, err: SchemaError) -> list[Problem]:
    path, spec = err.path, err.schema
    if err.keyword == "additionalProperties" and isinstance(err.instance, dict):
        known = sorted(spec.get("properties", {}))
        problems = []
        for key in err.instance:
            if key in known:
                continue
            hint = difflib.get_close_matches(str(key), known, n=1)
            suffix = f", did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(known)})"
            problems.append(doc.problem((*path, key), f"unknown key {key!r}{suffix}", key=True))
        return problems
    if "x-message" in spec:  # a rule about the whole mapping, not a value to quote
        return [doc.problem(path, spec["x-message"])]
    if "x-error" in spec and err.keyword != "x-seconds":
        return [doc.problem(path, f"{_show(err.instance)} {spec['x-error']}")]
    if err.keyword == "enum":
        choices = ", ".join(_show(c) for c in spec.get("enum", []) if c is not False)
        return [doc.problem(path, f"{_show(err.instance)} is not one of {choices}")]
    message, shown = err.message, repr(err.instance)
    if len(shown) > 60 and message.startswith(shown):  # a whole list or mapping, shortened
        message = _show(err.instance) + message[len(shown) :]
    return [doc.problem(path, message)]


def validate(doc: YamlDocument, name: str = RULES) -> list[Problem]:
    """Every problem of one document against the schema `name`, located."""
    problems: list[Problem] = []
    errors = _validator(name).errors(doc.data)
    for err in sorted(errors, key=lambda e: list(map(str, e.path))):
        problems.extend(_problems(doc, err))
    return problems
