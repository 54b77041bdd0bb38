"""HTTP polls: a URL every N seconds, a number out of its JSON.

A value that cannot be fetched is not passed off as fresh: after a few failures in a row
the variable becomes unknown. Failures and recoveries are logged once each (health.py);
a refused password or a URL the server does not have is a configuration fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from hems_rules import tls
from hems_rules.errors import ConfigurationError, TransientError
from hems_rules.health import Faults, Health
from hems_rules.ruleset.rules import HttpSource
from hems_rules.shelly.digest import DigestAuth
from hems_rules.sources.payloads import MAX_CHARS, PayloadError, extract

log = logging.getLogger(__name__)

Report = Callable[[str, float | None], None]
FAILURES_BEFORE_UNKNOWN = 3
# Answers that retrying cannot fix: the rules or the device must change.
_REFUSED = {
    401: "the server refused the password",
    403: "the server refused access",
    404: "the server has no such URL",
}


class HttpUnreachableError(TransientError):
    """No answer, or an answer without a usable value: retried."""

    reason = "the server does not answer"


class HttpRefusedError(ConfigurationError):
    """A refused password, or a URL the server does not have."""


def _mapped(err: Exception) -> Exception:
    if isinstance(err, (aiohttp.ClientError, TimeoutError)):
        return HttpUnreachableError(str(err) or type(err).__name__)
    if isinstance(err, ValueError):
        return HttpUnreachableError(f"no value in the answer: {err}")
    if isinstance(err, RuntimeError) and tls.left_out():
        # aiohttp's refusal of https:// without TLS ("SSL is not supported."): a rule
        # with an https:// URL loads TLS, so here the server redirected there.
        return HttpRefusedError(
            f"the server redirects to https://, and TLS is loaded only for an https:// URL"
            f" in the rules: write that URL in the rules ({err})"
        )
    return err  # a bug: health.py logs its traceback


class HttpPoller:
    def __init__(
        self,
        name: str,
        source: HttpSource,
        session: aiohttp.ClientSession,
        report: Report,
        *,
        timeout: float = 4.0,
        faults: Faults | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.url = source.url
        self._session = session
        self._report = report
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._auth = DigestAuth(source.user, source.password) if source.password else None
        self.health = Health(f"{name} (HTTP {urlsplit(self.url).netloc})", log, faults)

    async def run(self) -> None:
        try:
            while True:
                await self.poll()
                await asyncio.sleep(self.source.every)
        finally:
            self.health.close()

    async def poll(self) -> None:
        try:
            value = extract(await self._get(), self.source.json)
        except Exception as err:
            self.health.failed(_mapped(err))
            if self.health.failures == FAILURES_BEFORE_UNKNOWN:
                log.warning(
                    "%s is unknown after %d failed polls", self.name, FAILURES_BEFORE_UNKNOWN
                )
                self._report(self.name, None)
            return
        self.health.ok()
        self._report(self.name, value)

    async def _get(self) -> bytes:
        parts = urlsplit(self.url)
        uri = parts.path + (f"?{parts.query}" if parts.query else "")
        for fresh in (False, True):
            headers = {}
            if self._auth is not None and self._auth.ready:
                headers["Authorization"] = self._auth.header("GET", uri)
            async with self._session.get(self.url, headers=headers, timeout=self._timeout) as reply:
                body = await _read(reply)
                challenge = reply.headers.get("WWW-Authenticate", "")
                if (
                    reply.status == 401
                    and self._auth is not None
                    and not fresh
                    and self._auth.challenge(challenge)
                ):
                    continue
                if reply.status in _REFUSED:
                    raise HttpRefusedError(f"{self.url}: {_REFUSED[reply.status]}")
                if reply.status != 200:
                    raise HttpUnreachableError(f"HTTP {reply.status}")
                return body
        raise AssertionError("unreachable")


async def _read(reply: aiohttp.ClientResponse) -> bytes:
    """The body, refused as soon as it passes the payload bound (a device may send forever)."""
    body = bytearray()
    async for chunk in reply.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_CHARS:
            raise PayloadError(f"longer than {MAX_CHARS // 1000} kB")
    return bytes(body)
