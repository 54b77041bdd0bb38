"""YAML as an attacker or a careless user writes it: bounded, located, never a hang."""

from __future__ import annotations

import pytest

from hems_rules.ruleset.yamldoc import MAX_CHARS, MAX_DEPTH, MAX_NODES, parse_yaml

LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(9)]
)


def refusal(text: str) -> str:
    doc, problems = parse_yaml("bad.yaml", text)
    assert doc is None
    [problem] = problems
    assert problem.file == "bad.yaml" and problem.line >= 1 and problem.column >= 1
    return str(problem)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("&a [*a]\n", "bad.yaml:1:5:"),
        ("&a [*a, *a]\n", "bad.yaml:1:5:"),
        ("x: &a {y: [1, {z: *a}]}\n", "bad.yaml:1:19:"),
    ],
)
def test_an_alias_inside_its_own_anchor_is_refused_at_once(text: str, place: str) -> None:
    message = refusal(text)
    assert message.startswith(place), message
    assert "refers to a value that contains it" in message


@pytest.mark.timeout(10)
def test_a_billion_laughs_is_refused_by_the_node_budget() -> None:
    message = refusal(LAUGHS)
    assert f"more than {MAX_NODES} values" in message


@pytest.mark.timeout(10)
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000, 200_000])
def test_deep_nesting_is_refused_quickly_and_located(levels: int) -> None:
    message = refusal("[" * levels + "]" * levels)
    assert message.startswith("bad.yaml:1:"), message
    assert "nest" in message


def test_deep_nesting_is_refused_where_it_gets_too_deep() -> None:
    block = "".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5))
    message = refusal(block)
    assert message.startswith(f"bad.yaml:{MAX_DEPTH + 1}:{MAX_DEPTH + 1}:"), message
    assert f"nested deeper than {MAX_DEPTH} levels" in message


def test_a_huge_document_is_refused_before_parsing() -> None:
    message = refusal("#" * (MAX_CHARS + 1))
    assert f"larger than {MAX_CHARS // 1000} kB" in message


def test_anchors_and_merge_keys_within_the_budget_still_work() -> None:
    text = (
        "base: &relay {host: 10.0.0.9, port: 80}\n"
        "one: {<<: *relay, switch: 0}\n"
        "two: {<<: *relay, switch: 1}\n"
        "same: *relay\n"
    )
    doc, problems = parse_yaml("ok.yaml", text)
    assert not problems and doc is not None
    assert doc.data["two"] == {"host": "10.0.0.9", "port": 80, "switch": 1}
    assert doc.data["same"] == {"host": "10.0.0.9", "port": 80}
    assert doc.locate(("two", "switch")) == (3, 27)


def test_duplicate_keys_are_still_found_once_each() -> None:
    doc, problems = parse_yaml("dup.yaml", "a: &m {x: 1, x: 2}\nb: *m\nc: *m\n")
    assert doc is None
    assert [str(p) for p in problems] == ["dup.yaml:1:14: duplicate key 'x' (first at line 1)"]
