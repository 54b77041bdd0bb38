"""Rules: loading, validation, compilation and hot reload."""

from hems_rules.ruleset.compiler import compile_documents, load_rules, rule_files
from hems_rules.ruleset.rules import Consumer, RuleSet, Site

__all__ = ["Consumer", "RuleSet", "Site", "compile_documents", "load_rules", "rule_files"]
