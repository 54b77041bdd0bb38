"""Payloads from MQTT and HTTP: one number, or a plain reason why not, never anything else."""

from __future__ import annotations

import json

import pytest

from hems_rules.numbers import parse_number
from hems_rules.sources.payloads import MAX_CHARS, MAX_DEPTH, PayloadError, extract, load_json


@pytest.mark.parametrize(
    ("payload", "path", "value"),
    [
        ('{"value": 61.5}', "value", 61.5),
        ('{"a": {"b": [1, {"c": -2e3}]}}', "a.b.1.c", -2000.0),
        ("88.25", None, 88.25),
        (" -3 \n", None, -3.0),
        ('"21.5"', None, 21.5),
        ('{"value": "21.5"}', "value", 21.5),
        ("null", None, None),
        ('{"value": null}', "value", None),
        (b"\xef\xbb\xbf12", None, 12.0),
    ],
)
def test_numbers_in_payloads(payload: str | bytes, path: str | None, value: float | None) -> None:
    assert extract(payload, path) == value


@pytest.mark.parametrize(
    ("payload", "path", "message"),
    [
        ('{"value": true}', "value", "true is not a number"),
        ("false", None, "false is not a number"),
        ("1_0", None, '"1_0" is not a number'),
        ('{"value": "1_0"}', "value", '"1_0" is not a number'),
        ("nan", None, '"nan" is not a number'),
        ("Infinity", None, '"Infinity" is not a number'),
        ('{"value": NaN}', "value", "nan is not a finite number"),
        ('{"value": 1e999}', "value", "inf is not a finite number"),
        ("1e300", None, "1e+300 is beyond"),
        ("9" * 5000, None, "(5000 characters) is too long for a number"),
        ('{"value": ' + "9" * 5000 + "}", "value", "(5000 characters) is too long for a number"),
        ('{"other": ' + "9" * 5000 + "}", "value", "(5000 characters) is too long for a number"),
        ("[" * 2000 + "]" * 2000, None, f"nested deeper than {MAX_DEPTH} levels"),
        ('{"value": ' + "[" * 2000 + "]" * 2000 + "}", "value", "nested deeper than"),
        ('{"value": [1]}', "value", "[1] is not a number"),
        ('{"value": {"x": 1}}', "value", '{"x": 1} is not a number'),
        ('{"value": 1}', "value.x", "no 'x' in the payload"),
        ('{"value": [1]}', "value.²", "no '²' in the payload"),
        ("{", "value", "not JSON"),
        ("x" * (MAX_CHARS + 1), None, f"longer than {MAX_CHARS // 1000} kB"),
    ],
)
def test_anything_else_is_one_plain_payload_error(
    payload: str, path: str | None, message: str
) -> None:
    with pytest.raises(PayloadError) as info:
        extract(payload, path)
    assert message in str(info.value)
    assert "Exceeds the limit" not in str(info.value)


def test_json_strings_that_look_deep_are_not_counted() -> None:
    text = json.dumps({"value": 5, "note": "[" * 5000})
    assert load_json(text)["value"] == 5


def test_the_plain_number_syntax_is_strict() -> None:
    for good, value in (("1", 1.0), ("-1.5", -1.5), (".5", 0.5), ("1e3", 1000.0), ("+2", 2.0)):
        assert parse_number(good) == value
    for bad in ("", "1_0", "0x10", "1,5", "١", "1.5.2", "--1", "inf", "1e", "½"):
        with pytest.raises(ValueError):
            parse_number(bad)
