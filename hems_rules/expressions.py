"""The expression sandbox: battery reservation equations and auto_when conditions.

An expression is checked against an AST whitelist when it is compiled (from a rule
file or from a D-Bus setting), then evaluated by asteval with pre-parsed nodes. The
whitelist is the security boundary: asteval has no time limit, so anything that could
hang the loop or exhaust memory (big exponents, shifts, sequences) never reaches it.
Every number is a float, so integer blow-up is impossible.
"""

from __future__ import annotations

import ast
import difflib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asteval import Interpreter

from hems_rules.errors import ExpressionError

MAX_LENGTH = 500
# The one name a battery reservation equation may use.
RESERVATION_NAMES = frozenset({"SOC"})
MAX_EXPONENT = 8


def _round(value: float, digits: float = 0.0) -> float:
    return float(round(value, int(digits)))


FUNCTIONS: dict[str, Any] = {"min": min, "max": max, "abs": abs, "round": _round}
_ARITY = {"min": (2, 8), "max": (2, 8), "abs": (1, 1), "round": (1, 2)}

_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Pow)
_UNARY = (ast.UAdd, ast.USub, ast.Not)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_STRUCTURE = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
    ast.Call, ast.Name, ast.Constant, ast.Load,
)  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation: a finite value, or an error in plain words."""

    value: float | None = None
    error: str | None = None


class _FloatConstants(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if isinstance(node.value, bool):
            return ast.copy_location(ast.Constant(1.0 if node.value else 0.0), node)
        assert isinstance(node.value, (int, float)), "the lint admits only numbers"
        return ast.copy_location(ast.Constant(float(node.value)), node)


def _small_constant(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
        and abs(node.value) <= MAX_EXPONENT
    )


def _describe(node: ast.AST) -> str:
    return {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscripts",
        ast.Lambda: "lambdas",
        ast.List: "lists",
        ast.Tuple: "tuples",
        ast.Dict: "dicts",
        ast.Set: "sets",
        ast.ListComp: "comprehensions",
        ast.GeneratorExp: "comprehensions",
        ast.NamedExpr: "assignments",
        ast.LShift: "shifts",
        ast.RShift: "shifts",
        ast.JoinedStr: "f-strings",
        ast.Invert: "bit inversions",
        ast.Await: "awaits",
        ast.Starred: "unpacking",
    }.get(type(node), type(node).__name__)


def _lint(tree: ast.Expression, names: frozenset[str]) -> list[str]:
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _OPERATORS):
                problems.append(f"{_describe(node.op)} are not allowed")
            elif isinstance(node.op, ast.Pow) and not _small_constant(node.right):
                problems.append(
                    f"** needs a constant exponent between -{MAX_EXPONENT} and {MAX_EXPONENT}"
                )
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.op, _UNARY):
            problems.append(f"{_describe(node.op)} are not allowed")
        elif isinstance(node, ast.Compare) and not all(isinstance(o, _COMPARE) for o in node.ops):
            problems.append("only the comparisons < <= > >= == != are allowed")
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
                problems.append(f"only the functions {', '.join(sorted(FUNCTIONS))} may be called")
            else:
                low, high = _ARITY[node.func.id]
                if node.keywords or not low <= len(node.args) <= high:
                    problems.append(f"{node.func.id}() takes {low} to {high} plain arguments")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)):
                problems.append(f"{type(node.value).__name__} constants are not allowed")
        elif isinstance(node, ast.Name):
            if node.id not in names and node.id not in FUNCTIONS:
                hint = difflib.get_close_matches(node.id, sorted(names), n=1)
                known = f"did you mean {hint[0]}?" if hint else f"known: {', '.join(sorted(names))}"
                problems.append(f"unknown name {node.id!r} ({known})")
        elif isinstance(node, ast.expr) and not isinstance(node, _STRUCTURE):
            problems.append(f"{_describe(node)} are not allowed")
    return list(dict.fromkeys(problems))


@dataclass(frozen=True)
class Expression:
    """A checked expression, parsed once and evaluated many times."""

    source: str
    names: frozenset[str]
    _node: ast.expr = field(repr=False, compare=False)
    _interpreter: Interpreter = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, float | None]) -> Evaluation:
        """Evaluate with the given inputs; never raises, never blocks."""
        symtable = self._interpreter.symtable
        for name in self.names:
            value = values.get(name)
            if value is None:
                return Evaluation(error=f"{name} is unavailable")
            symtable[name] = float(value)
        interpreter = self._interpreter
        interpreter.error = []
        try:
            result = interpreter.run(self._node, with_raise=True)
        except Exception as err:  # asteval re-raises what the expression raised
            holder = interpreter.error[-1] if interpreter.error else None
            message = holder.msg if holder is not None else str(err)
            return Evaluation(error=f"{type(err).__name__}: {message}".rstrip(": "))
        if isinstance(result, bool):
            result = 1.0 if result else 0.0
        if not isinstance(result, (int, float)) or not math.isfinite(result):
            return Evaluation(error=f"result {result!r} is not a finite number")
        return Evaluation(value=float(result))


def compile_expression(source: str | float, names: frozenset[str] | set[str]) -> Expression:
    """Check and parse an expression that may use only `names` and the whitelist.

    Raises ExpressionError with every problem found, in plain words.
    """
    text = str(source).strip()
    allowed = frozenset(names)
    if not text:
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        with warnings.catch_warnings():
            # "1if SOC else 2" parses with a SyntaxWarning printed on stderr; here it is
            # an error with its column, like any other the user must fix.
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"syntax error at column {err.offset or 0}: {err.msg}") from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise ExpressionError(f"cannot parse: {err}") from None
    problems = _lint(tree, allowed)
    if problems:
        raise ExpressionError("; ".join(problems))
    floated = ast.fix_missing_locations(_FloatConstants().visit(tree))
    used = frozenset(
        n.id for n in ast.walk(floated) if isinstance(n, ast.Name) and n.id not in FUNCTIONS
    )
    symtable: dict[str, Any] = dict(FUNCTIONS)
    symtable.update(dict.fromkeys(used, 0.0))
    interpreter = Interpreter(
        symtable=symtable,
        use_numpy=False,
        minimal=True,
        with_ifexp=True,
        no_attribute=True,
        no_assign=True,
        no_augassign=True,
        no_delete=True,
        no_subscript=True,
        no_slice=True,
        no_joinedstr=True,
        no_formattedvalue=True,
        max_statement_length=MAX_LENGTH,
    )
    # Set once, not per run: asteval keeps every `expr` passed to run() in a list.
    interpreter.expr = text
    return Expression(source=text, names=used, _node=floated.body, _interpreter=interpreter)
