"""The JSON Schema 2020-12 keywords that our two schemas use, checked as the standard
defines them and worded as the jsonschema package words them.

The jsonschema package (with referencing, rpds, attrs and the draft meta-schemas it
loads) held about 2.7 MiB of the memory `run` keeps for its lifetime on a GX, to check a
rule file a few times a day; rpds is also a compiled Rust package to bundle for each
GX architecture. Our schemas need twenty keywords and no references across documents
(schema.py inlines the $refs). A keyword this module does not implement is refused when
the validator is made, so a schema that starts using one fails its tests at once
instead of passing unchecked; tests/test_validator.py checks on fuzzed documents that
jsonschema finds the same errors with the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaError:
    """One thing an instance breaks: which keyword of which (sub)schema, and where."""

    keyword: str
    path: Location  # into the instance
    instance: Any  # the value at `path`
    schema: Mapping[str, Any]  # the (sub)schema holding `keyword`
    message: str


# A keyword's check yields messages about the instance itself, or the errors of the
# subschemas it applies (Validator.descend).
Found = Iterator[str | SchemaError]
Keyword = Callable[["Validator", Any, Any, Mapping[str, Any], Location], Found]

_TYPES: dict[str, Callable[[Any], bool]] = {
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        not isinstance(v, bool)
        and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
    ),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
}


def _number(value: Any) -> bool:
    return _TYPES["number"](value)


def _equal(one: Any, two: Any) -> bool:
    """JSON equality: true and 1, false and 0 differ (in Python they are equal)."""
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    return bool(one == two)


def _type(_: Validator, types: str | list[str], instance: Any, __: Any, ___: Location) -> Found:
    names = [types] if isinstance(types, str) else types
    if not any(_TYPES[name](instance) for name in names):
        yield f"{instance!r} is not of type {', '.join(repr(name) for name in names)}"


def _enum(_: Validator, values: list[Any], instance: Any, __: Any, ___: Location) -> Found:
    if not any(_equal(value, instance) for value in values):
        yield f"{instance!r} is not one of {values!r}"


def _minimum(_: Validator, low: float, instance: Any, __: Any, ___: Location) -> Found:
    if _number(instance) and instance < low:
        yield f"{instance!r} is less than the minimum of {low!r}"


def _maximum(_: Validator, high: float, instance: Any, __: Any, ___: Location) -> Found:
    if _number(instance) and instance > high:
        yield f"{instance!r} is greater than the maximum of {high!r}"


def _exclusive_minimum(_: Validator, low: float, instance: Any, __: Any, ___: Location) -> Found:
    if _number(instance) and instance <= low:
        yield f"{instance!r} is less than or equal to the minimum of {low!r}"


def _min_length(_: Validator, least: int, instance: Any, __: Any, ___: Location) -> Found:
    if isinstance(instance, str) and len(instance) < least:
        yield f"{instance!r} {'should be non-empty' if least == 1 else 'is too short'}"


def _max_length(_: Validator, most: int, instance: Any, __: Any, ___: Location) -> Found:
    if isinstance(instance, str) and len(instance) > most:
        yield f"{instance!r} {'is expected to be empty' if most == 0 else 'is too long'}"


def _pattern(_: Validator, pattern: str, instance: Any, __: Any, ___: Location) -> Found:
    if isinstance(instance, str) and not re.search(pattern, instance):
        yield f"{instance!r} does not match {pattern!r}"


def _required(_: Validator, names: list[str], instance: Any, __: Any, ___: Location) -> Found:
    if isinstance(instance, dict):
        yield from (f"{name!r} is a required property" for name in names if name not in instance)


def _min_properties(_: Validator, least: int, instance: Any, __: Any, ___: Location) -> Found:
    if isinstance(instance, dict) and len(instance) < least:
        said = "should be non-empty" if least == 1 else "does not have enough properties"
        yield f"{instance!r} {said}"


def _max_properties(_: Validator, most: int, instance: Any, __: Any, ___: Location) -> Found:
    if isinstance(instance, dict) and len(instance) > most:
        said = "is expected to be empty" if most == 0 else "has too many properties"
        yield f"{instance!r} {said}"


def _properties(
    validator: Validator, schemas: dict[str, Any], instance: Any, _: Any, at: Location
) -> Found:
    if isinstance(instance, dict):
        for name, schema in schemas.items():
            if name in instance:
                yield from validator.descend(instance[name], schema, (*at, name))


def _additional_properties(
    validator: Validator, allowed: bool | dict[str, Any], instance: Any, schema: Any, at: Location
) -> Found:
    if not isinstance(instance, dict):
        return
    extras = [name for name in instance if name not in schema.get("properties", {})]
    if isinstance(allowed, dict):
        for name in extras:
            yield from validator.descend(instance[name], allowed, (*at, name))
    elif not allowed and extras:
        names = ", ".join(repr(name) for name in sorted(extras, key=str))
        verb = "was" if len(extras) == 1 else "were"
        yield f"Additional properties are not allowed ({names} {verb} unexpected)"


def _property_names(
    validator: Validator, schema: dict[str, Any], instance: Any, _: Any, at: Location
) -> Found:
    # The name is the instance, but the place is still the mapping's (as the standard has it).
    if isinstance(instance, dict):
        for name in instance:
            yield from validator.descend(name, schema, at)


def _items(
    validator: Validator, schema: dict[str, Any], instance: Any, _: Any, at: Location
) -> Found:
    if isinstance(instance, list):
        for index, item in enumerate(instance):
            yield from validator.descend(item, schema, (*at, index))


def _all_of(
    validator: Validator, schemas: list[dict[str, Any]], instance: Any, _: Any, at: Location
) -> Found:
    for schema in schemas:
        yield from validator.descend(instance, schema, at)


def _any_of(
    validator: Validator, schemas: list[dict[str, Any]], instance: Any, _: Any, at: Location
) -> Found:
    if not any(validator.valid(instance, schema) for schema in schemas):
        yield f"{instance!r} is not valid under any of the given schemas"


def _one_of(
    validator: Validator, schemas: list[dict[str, Any]], instance: Any, _: Any, at: Location
) -> Found:
    valid = [schema for schema in schemas if validator.valid(instance, schema)]
    if not valid:
        yield f"{instance!r} is not valid under any of the given schemas"
    elif len(valid) > 1:
        # jsonschema lists the first valid schema last.
        shown = ", ".join(repr(schema) for schema in (*valid[1:], valid[0]))
        yield f"{instance!r} is valid under each of {shown}"


def _if(
    validator: Validator, condition: dict[str, Any], instance: Any, schema: Any, at: Location
) -> Found:
    branch = "then" if validator.valid(instance, condition) else "else"
    if branch in schema:
        yield from validator.descend(instance, schema[branch], at)


KEYWORDS: dict[str, Keyword] = {
    "type": _type,
    "enum": _enum,
    "minimum": _minimum,
    "maximum": _maximum,
    "exclusiveMinimum": _exclusive_minimum,
    "minLength": _min_length,
    "maxLength": _max_length,
    "pattern": _pattern,
    "required": _required,
    "minProperties": _min_properties,
    "maxProperties": _max_properties,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "propertyNames": _property_names,
    "items": _items,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "if": _if,
}
# Read by another keyword (then, else), or words for people and tools, not checks.
_PASSIVE = frozenset(
    {"then", "else", "$schema", "$id", "$comment", "title", "description", "default"}
)
# Keywords whose value is a subschema, a list of them, or a mapping of names to them.
_ONE, _LIST, _NAMED = (
    frozenset({"additionalProperties", "propertyNames", "items", "if", "then", "else"}),
    frozenset({"allOf", "anyOf", "oneOf"}),
    frozenset({"properties"}),
)


def _subschemas(schema: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for keyword, value in schema.items():
        if keyword in _ONE and isinstance(value, dict):
            yield value
        elif keyword in _LIST:
            yield from value
        elif keyword in _NAMED:
            yield from value.values()


def _keywords(schema: Mapping[str, Any]) -> set[str]:
    """Every keyword `schema` uses, at any depth."""
    found = set(schema)
    for subschema in _subschemas(schema):
        found |= _keywords(subschema)
    return found


class Validator:
    """Checks instances against one schema (its $refs inlined), plus `extra` keywords
    of our own; unknown keywords other than `x-` annotations are refused up front."""

    def __init__(self, schema: Mapping[str, Any], extra: Mapping[str, Keyword]) -> None:
        self._keywords = {**KEYWORDS, **extra}
        unknown = {
            keyword
            for keyword in _keywords(schema) - self._keywords.keys() - _PASSIVE
            if not keyword.startswith("x-")
        }
        if unknown:
            raise ValueError(f"the schema uses keywords not checked here: {sorted(unknown)}")
        self.schema = schema

    def errors(self, instance: Any) -> Iterator[SchemaError]:
        """Every error of `instance`, depth first in the order of the schema's keywords."""
        return self.descend(instance, self.schema, ())

    def descend(
        self, instance: Any, schema: Mapping[str, Any], at: Location
    ) -> Iterator[SchemaError]:
        """The errors of `instance`, found at `at`, against a subschema."""
        for keyword, value in schema.items():
            check = self._keywords.get(keyword)
            if check is None:
                continue
            for found in check(self, value, instance, schema, at):
                if isinstance(found, str):
                    yield SchemaError(keyword, at, instance, schema, found)
                else:
                    yield found

    def valid(self, instance: Any, schema: Mapping[str, Any]) -> bool:
        return next(self.descend(instance, schema, ()), None) is None
