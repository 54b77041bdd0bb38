"""Rules: loading, validation, compilation and hot reload.

The compiler (and with it YAML and JSON Schema) loads on first use, so the pure engine,
which needs only the compiled types, does not pull it in.
"""

from typing import TYPE_CHECKING, Any

from hems_rules.ruleset.rules import Consumer, RuleSet, Site

if TYPE_CHECKING:
    from hems_rules.ruleset.compiler import compile_documents, load_rules, rule_files

__all__ = ["Consumer", "RuleSet", "Site", "compile_documents", "load_rules", "rule_files"]

_COMPILER = {"compile_documents", "load_rules", "rule_files"}


def __getattr__(name: str) -> Any:
    if name in _COMPILER:
        from hems_rules.ruleset import compiler  # noqa: PLC0415

        return getattr(compiler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
