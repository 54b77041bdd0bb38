"""HTTP polls: a URL every N seconds, a number out of its JSON.

A value that cannot be fetched is not passed off as fresh: after a few failures in a row
the variable becomes unknown. Failures and recoveries are logged once each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from hems_rules.ruleset.rules import HttpSource
from hems_rules.shelly.digest import DigestAuth
from hems_rules.sources.payloads import MAX_CHARS, PayloadError, extract

log = logging.getLogger(__name__)

Report = Callable[[str, float | None], None]
FAILURES_BEFORE_UNKNOWN = 3


class HttpPoller:
    def __init__(
        self,
        name: str,
        source: HttpSource,
        session: aiohttp.ClientSession,
        report: Report,
        *,
        timeout: float = 4.0,
        url: str | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.url = url or source.url
        self._session = session
        self._report = report
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._auth = DigestAuth(source.user, source.password) if source.password else None
        self.failures = 0

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("%s: unexpected failure, retrying", self.name)
            await asyncio.sleep(self.source.every)

    async def poll(self) -> None:
        try:
            value = extract(await self._get(), self.source.json)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            self.failures += 1
            if self.failures == 1:
                log.warning(
                    "%s: %s failed: %s", self.name, self.url, str(err) or type(err).__name__
                )
            if self.failures == FAILURES_BEFORE_UNKNOWN:
                log.warning("%s is unknown after %d failed polls", self.name, self.failures)
                self._report(self.name, None)
            return
        if self.failures:
            log.info("%s: %s answers again", self.name, self.url)
        self.failures = 0
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
                if reply.status != 200:
                    raise ValueError(f"HTTP {reply.status}")
                return body
        raise ValueError("authentication refused")


async def _read(reply: aiohttp.ClientResponse) -> bytes:
    """The body, refused as soon as it passes the payload bound (a device may send forever)."""
    body = bytearray()
    async for chunk in reply.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_CHARS:
            raise PayloadError(f"longer than {MAX_CHARS // 1000} kB")
    return bytes(body)
