"""YAML documents that remember where every value came from.

PyYAML keeps the last of duplicate keys without a word; here a duplicate is an error.
The document is composed once into nodes (for line and column) and constructed from
the same nodes, so nothing is parsed twice. Rules and scenarios both come through here:
its bounds on size, depth and aliases are the only ones either needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import yaml
from yaml.composer import ComposerError
from yaml.reader import ReaderError

from hems_rules import numbers
from hems_rules.errors import Problem

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathPart = str | int

# Bounds that no rule file or scenario comes near, so a hostile document is refused at
# once: a thousand consumers take about 170 kB and 21,000 values, and the deepest rule
# is five levels down.
MAX_CHARS = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 32
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
INT_TAG, FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


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

    def _node(self, path: tuple[PathPart, ...], key: bool = False) -> yaml.Node | None:
        """The node at `path` (or its key), else the deepest node on the way to it."""
        node = self.root
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
        return node

    def locate(self, path: tuple[PathPart, ...], key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value at `path` (or of its key)."""
        node = self._node(path, key)
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1

    def part(self, path: tuple[PathPart, ...]) -> YamlDocument:
        """The document at `path` (valid data), still located in the same file."""
        data = self.data
        for part in path:
            data = data[part]
        return YamlDocument(self.file, data, self._node(path))

    def problem(self, path: tuple[PathPart, ...], message: str, key: bool = False) -> Problem:
        line, column = self.locate(path, key=key)
        return Problem(self.file, line, column, format_path(path), message)


class _Events(Protocol):
    """The parser side of a PyYAML loader (untyped in the stubs: events carry Any)."""

    def get_event(self) -> Any: ...
    def peek_event(self) -> Any: ...
    def check_event(self, *choices: type[yaml.Event]) -> bool: ...
    def resolve(self, kind: type[yaml.Node], value: str | None, implicit: Any) -> str: ...
    def construct_yaml_int(self, node: yaml.ScalarNode) -> int: ...
    def construct_yaml_float(self, node: yaml.ScalarNode) -> float: ...


@dataclass
class _Open:
    """A sequence or mapping whose end event has not come yet."""

    node: yaml.SequenceNode | yaml.MappingNode
    path: tuple[PathPart, ...]
    children: list[yaml.Node] = field(default_factory=list)
    keys: dict[Any, yaml.Node] = field(default_factory=dict)

    def child_path(self) -> tuple[PathPart, ...]:
        if isinstance(self.node, yaml.SequenceNode):
            return (*self.path, len(self.children))
        if len(self.children) % 2 == 0:
            return self.path  # a key: its problems point at the mapping's path
        key = self.children[-1]
        return (*self.path, key.value if isinstance(key, yaml.ScalarNode) else "?")


class _Composer:
    """Nodes from parser events, one at a time and without recursion.

    PyYAML's composer lets an alias point into its own anchor (a cycle that every later
    walk follows forever) and expands aliases without limit. Here an alias may only
    name a finished value, each alias counts the values it stands for, and the depth is
    checked as the events arrive, so a hostile document costs at most MAX_NODES steps.
    Every scalar is checked where it is read: duplicate keys and numbers that are not
    finite or too big are problems located at their path.
    """

    def __init__(self, loader: _Events, file: str) -> None:
        self.loader = loader
        self.file = file
        self.anchors: dict[str, yaml.Node] = {}
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once closed
        self.values = 0
        self.problems: list[Problem] = []

    def _refuse(self, message: str, mark: Any) -> NoReturn:
        raise ComposerError(None, None, message, mark)

    def _count(self, values: int, depth: int, mark: Any) -> None:
        self.values += values
        if self.values > MAX_NODES:
            self._refuse(f"more than {MAX_NODES} values (counting what aliases repeat)", mark)
        if depth > MAX_DEPTH:
            self._refuse(f"nested deeper than {MAX_DEPTH} levels", mark)

    def _problem(self, node: yaml.Node, path: tuple[PathPart, ...], message: str) -> None:
        mark = node.start_mark
        self.problems.append(
            Problem(self.file, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def compose(self) -> yaml.Node | None:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # document start
        root = self._node()
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            self._refuse(
                "a file holds one YAML document, found another", loader.peek_event().start_mark
            )
        return root

    def _node(self) -> yaml.Node:
        loader = self.loader
        stack: list[_Open] = []
        while True:
            event = loader.get_event()
            kind = type(event)
            path = stack[-1].child_path() if stack else ()
            node: yaml.Node
            if kind in (yaml.SequenceEndEvent, yaml.MappingEndEvent):
                done = stack.pop()
                node, children = done.node, done.children
                node.end_mark = event.end_mark
                if isinstance(node, yaml.MappingNode):
                    node.value = list(zip(children[::2], children[1::2], strict=True))
                else:
                    node.value = children
                values = 1 + sum(self.sizes[id(c)][0] for c in children)
                depth = 1 + max((self.sizes[id(c)][1] for c in children), default=0)
                self.sizes[id(node)] = (values, depth)
            elif kind is yaml.AliasEvent:
                node = self._alias(event, len(stack))
            elif kind is yaml.ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                scalar = yaml.ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, event.style
                )
                self._count(1, len(stack), event.start_mark)
                self.sizes[id(scalar)] = (1, 0)
                self._anchor(event, scalar)
                self._check_number(scalar, path)
                self._check_text(scalar, path)
                node = scalar
            else:
                assert kind in (yaml.SequenceStartEvent, yaml.MappingStartEvent), event
                node_kind = (
                    yaml.SequenceNode if kind is yaml.SequenceStartEvent else yaml.MappingNode
                )
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(node_kind, None, event.implicit)
                collection = node_kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
                self._count(1, len(stack) + 1, event.start_mark)
                self._anchor(event, collection)
                stack.append(_Open(collection, path))
                continue
            if not stack:
                return node
            parent = stack[-1]
            if isinstance(parent.node, yaml.MappingNode) and len(parent.children) % 2 == 0:
                self._key(node, parent.keys)
            parent.children.append(node)

    def _anchor(self, event: Any, node: yaml.Node) -> None:
        if event.anchor is None:
            return
        if event.anchor in self.anchors:
            first = self.anchors[event.anchor].start_mark.line + 1
            self._refuse(
                f"anchor &{event.anchor} is already defined at line {first}", event.start_mark
            )
        self.anchors[event.anchor] = node

    def _alias(self, event: Any, depth: int) -> yaml.Node:
        node = self.anchors.get(event.anchor or "")
        if node is None:
            self._refuse(f"alias *{event.anchor} names no anchor before it", event.start_mark)
        if id(node) not in self.sizes:
            self._refuse(
                f"alias *{event.anchor} refers to a value that contains it", event.start_mark
            )
        values, height = self.sizes[id(node)]
        self._count(values, depth + height, event.start_mark)
        return node

    def _key(self, key: yaml.Node, keys: dict[Any, yaml.Node]) -> None:
        if not isinstance(key, yaml.ScalarNode):
            return
        first = keys.setdefault(key.value, key)
        if first is not key:
            line = first.start_mark.line + 1
            self._problem(key, (), f"duplicate key {key.value!r} (first at line {line})")

    def _check_text(self, node: yaml.ScalarNode, path: tuple[PathPart, ...]) -> None:
        """No string the rules carry may hold a control character (escapes let them in).

        A NUL in a name broke the D-Bus service; an ESC let a rule file write terminal
        codes into `check` output. Tab and newline stay allowed for block text.
        """
        found = _CONTROL.search(node.value)
        if found:
            self._problem(node, path, f"contains U+{ord(found.group()):04X}, a control character")

    def _check_number(self, node: yaml.ScalarNode, path: tuple[PathPart, ...]) -> None:
        """YAML's own number syntax, then the one check every number passes (numbers.py)."""
        if node.tag == INT_TAG:
            construct: Any = self.loader.construct_yaml_int
        elif node.tag == FLOAT_TAG:
            construct = self.loader.construct_yaml_float
        else:
            return
        try:
            if len(node.value) > numbers.MAX_CHARS:
                raise numbers.too_long(node.value)
            numbers.checked(construct(node))
        except ValueError as err:
            self._problem(node, path, str(err))


def parse_yaml(file: str, text: str) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse one file; a document with problems is returned as None."""
    if len(text) > MAX_CHARS:
        return None, [Problem(file, 1, 1, "", f"larger than {MAX_CHARS // 1000} kB")]
    try:
        loader = _Loader(text)
        try:
            composer = _Composer(loader, file)
            root = composer.compose()
            if composer.problems:
                return None, composer.problems
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(s for s in (err.context, err.problem) if s)
        return None, [Problem(file, line, column, "", f"YAML error: {what}")]
    except ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        # Our words: libyaml and PyYAML's pure-Python reader (a GX has no libyaml) differ.
        what = f"unacceptable character U+{err.character:04X}: control characters are not allowed"
        return None, [Problem(file, line, column, "", f"YAML error: {what}")]
    except yaml.YAMLError as err:
        return None, [Problem(file, 1, 1, "", f"YAML error: {err}")]
    return YamlDocument(file, data, root), []
