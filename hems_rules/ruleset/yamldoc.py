"""YAML documents that remember where every value came from.

PyYAML keeps the last of duplicate keys without a word; here a duplicate is an error.
The document is composed once into nodes (for line and column) and constructed from
the same nodes, so nothing is parsed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from hems_rules.errors import Problem

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathPart = str | int


def format_path(path: tuple[PathPart, ...] | list[PathPart]) -> str:
    """`consumers[1].min_on` for ('consumers', 1, 'min_on')."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class YamlDocument:
    """The data of one YAML file and a way back from a path in it to a line."""

    file: str
    data: Any
    root: yaml.Node | None

    def locate(self, path: tuple[PathPart, ...], key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value at `path` (or of its key)."""
        node = self.root
        mark = node.start_mark if node is not None else None
        for index, part in enumerate(path):
            if isinstance(node, yaml.MappingNode):
                for knode, vnode in node.value:
                    if knode.value == part:
                        last = index == len(path) - 1
                        node = knode if key and last else vnode
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = node.value[part]
            else:
                break
            mark = node.start_mark
        if mark is None:
            return 1, 1
        return mark.line + 1, mark.column + 1

    def part(self, key: str) -> YamlDocument:
        """The document under a top-level key, still located in the same file."""
        node = self.root
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), node)
        data = self.data.get(key) if isinstance(self.data, dict) else None
        return YamlDocument(self.file, data, node)

    def problem(self, path: tuple[PathPart, ...], message: str, key: bool = False) -> Problem:
        line, column = self.locate(path, key=key)
        return Problem(self.file, line, column, format_path(path), message)


def _duplicate_keys(file: str, node: yaml.Node | None) -> list[Problem]:
    problems: list[Problem] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for knode, vnode in current.value:
                if isinstance(knode, yaml.ScalarNode):
                    first = seen.setdefault(knode.value, knode)
                    if first is not knode:
                        line = first.start_mark.line + 1
                        problems.append(
                            Problem(
                                file,
                                knode.start_mark.line + 1,
                                knode.start_mark.column + 1,
                                "",
                                f"duplicate key {knode.value!r} (first at line {line})",
                            )
                        )
                stack.append(vnode)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return problems


def parse_yaml(file: str, text: str) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse one file; a document with problems is returned as None."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            problems = _duplicate_keys(file, root)
            if problems:
                return None, problems
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(s for s in (err.context, err.problem) if s)
        return None, [Problem(file, line, column, "", f"YAML error: {what}")]
    except yaml.YAMLError as err:
        return None, [Problem(file, 1, 1, "", f"YAML error: {err}")]
    return YamlDocument(file, data, root), []
