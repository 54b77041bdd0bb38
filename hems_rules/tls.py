"""OpenSSL is loaded only when the rules need TLS.

Importing `ssl` maps OpenSSL's libssl and libcrypto, and hashlib maps libcrypto too:
about 4.5 MiB of resident memory, more than a tenth of what `run` uses on a GX. asyncio,
aiohttp, urllib, hmac and hashlib all work without OpenSSL, as on a Python built without
it: each imports it inside a try, and hashlib then uses Python's own digests. A GX needs
TLS only for an https:// URL; but aiomqtt imports `ssl` whatever the broker, so rules
with a broker need it as well.

So `run` decides once, from the rules it starts with, before anything imports asyncio.
If later rules need TLS that this process left out, it cannot load it any more (asyncio
and aiohttp remember that it was missing): the app stops with a non-zero exit, and
daemontools starts it again, with TLS.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from hems_rules.ruleset.rules import HttpSource, RuleSet

# What maps OpenSSL: `ssl` and its C part, and hashlib's OpenSSL digests.
_OPENSSL = frozenset({"ssl", "_ssl", "_hashlib"})
# Python's own digests, which hashlib falls back to (MD5 and SHA-1 for aiohttp, SHA-256
# for digest authentication); a Python built without them keeps OpenSSL.
_OWN_DIGESTS = ("_md5", "_sha1", "_sha2" if sys.version_info >= (3, 12) else "_sha256")


def needed_by(rules: RuleSet) -> str | None:
    """What in `rules` needs TLS, in words; None when nothing does."""
    if rules.site.mqtt is not None:
        return "site.mqtt (aiomqtt loads TLS for any broker)"
    for name, variable in rules.variables.items():
        if isinstance(variable.source, HttpSource) and variable.source.url.startswith("https:"):
            return f"the https:// URL of variable {name}"
    return None


class _LeftOut:
    """An import finder that refuses OpenSSL's modules, saying why."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name in _OPENSSL:
            raise ModuleNotFoundError(
                f"No module named {name!r}: left out while no rule needs TLS", name=name
            )
        return None


_LEFT_OUT = _LeftOut()


def leave_out() -> bool:
    """Keep OpenSSL out of this process from now on; False if something loaded it already.

    Call it before importing asyncio.
    """
    if not _OPENSSL.isdisjoint(sys.modules):
        return False
    if not all(importlib.util.find_spec(name) for name in _OWN_DIGESTS):
        return False
    sys.meta_path.insert(0, _LEFT_OUT)
    return True


def left_out() -> bool:
    """Whether this process runs without OpenSSL."""
    return _LEFT_OUT in sys.meta_path
