"""Our JSON Schema validator (ruleset/validator.py) against the jsonschema package, which
stays a development dependency to keep it honest: on documents shaped like rule files
and scenarios, with hostile values anywhere, both find the same errors, at the same
places, with the same messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.ruleset import schema as schemas
from hems_rules.ruleset import validator
from hems_rules.ruleset.validator import Validator

jsonschema = pytest.importorskip("jsonschema")  # not on the GX stack, which bundles it no more

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**7), 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
NAMES = st.one_of(st.text(max_size=6), st.integers(0, 3), st.sampled_from(["a_1", "Bad", "x-y"]))


def _near(bound: float) -> st.SearchStrategy[float | int]:
    return st.sampled_from([bound, bound - 1, bound + 1, bound - 0.5, bound + 0.5, float(bound)])


def instances(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values around what `schema` allows: mostly its shape, often out of its bounds,
    once in ten anything at all (so that errors deep inside are found too)."""
    options: list[st.SearchStrategy[Any]] = []
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    for branch in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        options.append(instances(branch))
    for keyword in ("minimum", "maximum", "exclusiveMinimum"):
        if keyword in schema:
            options.append(_near(schema[keyword]))
    if "pattern" in schema:
        options.append(st.from_regex(schema["pattern"]))
    if "minLength" in schema:
        options.append(st.sampled_from(["", "z" * (schema["minLength"] - 1)]))
    if "maxLength" in schema:
        longest = schema["maxLength"]
        options.append(st.sampled_from(["x" * longest, "y" * (longest + 1)]))
    if "items" in schema:
        options.append(st.lists(instances(schema["items"]), max_size=3))
    if "properties" in schema or isinstance(schema.get("additionalProperties"), dict):
        options.append(_mappings(schema))
    if "x-seconds" in schema:
        bounds = schema["x-seconds"]
        options.append(st.sampled_from([f"{bounds.get('maximum', 60) + 1}s", "0.05s", "1d", "5m"]))
    if not options:
        return SCALARS
    shaped = st.one_of(options)
    return st.integers(0, 9).flatmap(lambda n: SCALARS if n == 0 else shaped)


def _mappings(schema: dict[str, Any]) -> st.SearchStrategy[dict[Any, Any]]:
    properties = {name: instances(sub) for name, sub in schema.get("properties", {}).items()}
    more = schema.get("additionalProperties")
    extra_values = instances(more) if isinstance(more, dict) else SCALARS
    known = st.fixed_dictionaries({}, optional=properties)
    extra = st.dictionaries(NAMES, extra_values, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


def _jsonschema_for(name: str) -> Any:
    def seconds(validator: Any, bounds: Any, instance: Any, schema: Any) -> Iterator[Any]:
        for message in schemas._seconds(validator, bounds, instance, schema, ()):
            assert isinstance(message, str)
            yield jsonschema.ValidationError(message)

    extended = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-seconds": seconds})
    return extended(schemas._inline(schemas.schema(name), name))


def _found(errors: Any) -> list[tuple[list[str], str, str]]:
    """Each error as (where, keyword, message), in the order schema.py reports them."""
    found = [(list(map(str, e.path)), e.keyword, e.message) for e in errors]
    return sorted(found, key=lambda f: f[0])


def _found_by_jsonschema(errors: Any) -> list[tuple[list[str], str, str]]:
    found = [(list(map(str, e.absolute_path)), e.validator, e.message) for e in errors]
    return sorted(found, key=lambda f: f[0])


def _same_messages(ours: list[Any], theirs: list[Any]) -> bool:
    """NaN is not equal to itself, in a message's value either: compare as text."""
    return repr(ours) == repr(theirs)


PARITY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.mark.parametrize("name", [schemas.RULES, schemas.SCENARIO])
def test_our_validator_finds_what_jsonschema_finds(name: str) -> None:
    ours = schemas._validator(name)
    theirs = _jsonschema_for(name)
    inlined = schemas._inline(schemas.schema(name), name)
    failed: set[str] = set()

    @PARITY
    @given(instances(inlined))
    def check(document: Any) -> None:
        mine = _found(ours.errors(document))
        reference = _found_by_jsonschema(theirs.iter_errors(document))
        assert _same_messages(mine, reference), (document, mine, reference)
        failed.update(keyword for _, keyword, _ in mine)

    check()
    # The documents went deep enough: every keyword of the schema that can fail did.
    descending = {"properties", "items", "allOf", "if", "propertyNames"}
    used = {k for k in validator._keywords(inlined) if k in ours._keywords} - descending
    assert used <= failed, f"never failed: {sorted(used - failed)}"


def test_a_keyword_it_does_not_check_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="not checked here: \\['const'\\]"):
        Validator({"properties": {"a": {"const": 1}}}, {})
    Validator({"properties": {"a": {"x-note": 1, "description": "words"}}}, {})
