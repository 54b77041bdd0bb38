"""A small Shelly Gen2+ RPC client over HTTP (`POST /rpc` with JSON-RPC frames).

Layering as in python-kasa: this module is transport and protocol only; what a relay
means to the engine lives in sinks/shelly.py. One request is in flight per device at a
time (a Shelly accepts few parallel HTTP channels), failures become ShellyError
subclasses split by who must handle them, and transient ones are retried with backoff.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

import aiohttp

from hems_rules.errors import HemsError
from hems_rules.shelly.digest import DigestAuth

log = logging.getLogger(__name__)

CLIENT_NAME = "hems-rules"


class ShellyError(HemsError):
    """Root of everything a Shelly can do wrong."""


class DeviceConnectionError(ShellyError):
    """The device cannot be reached or did not answer: transient, retried."""


class DeviceTimeoutError(DeviceConnectionError, TimeoutError):
    """The device did not answer in time."""


class InvalidResponseError(ShellyError):
    """The device answered something that is not a JSON-RPC frame."""


class InvalidAuthError(ShellyError):
    """The device refused the credentials: the user must fix the rules."""


class RpcCallError(ShellyError):
    """The device understood the call and refused it (e.g. -105: no such switch)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"RPC error {code}: {message}")


class ShellyRpc:
    """RPC calls to one device."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        host: str,
        port: int = 80,
        *,
        user: str = "admin",
        password: str | None = None,
        timeout: float = 4.0,
        retries: int = 1,
        backoff: float = 0.25,
    ) -> None:
        self.address = f"{host}:{port}"
        self._url = f"http://{host}:{port}/rpc"
        self._session = session
        self._auth = DigestAuth(user, password) if password else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `result` of one call; retried on connection trouble, never on a refusal."""
        async with self._lock:
            for attempt in itertools.count():
                try:
                    return await self._call_once(method, params or {})
                except DeviceConnectionError:
                    if attempt >= self._retries:
                        raise
                    await asyncio.sleep(self._backoff * 2**attempt)
        raise AssertionError("unreachable")

    async def _call_once(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        frame = {"id": next(self._ids), "src": CLIENT_NAME, "method": method, "params": params}
        for fresh_challenge in (False, True):
            headers = {}
            if self._auth is not None and self._auth.ready:
                headers["Authorization"] = self._auth.header("POST", "/rpc")
            status, www_authenticate, body = await self._post(frame, headers)
            if status != 401:
                return self._result(status, body)
            if self._auth is None:
                raise InvalidAuthError(f"{self.address} needs a password")
            if fresh_challenge or not self._auth.challenge(www_authenticate):
                raise InvalidAuthError(f"{self.address} refused the password")
        raise AssertionError("unreachable")

    async def _post(self, frame: dict[str, Any], headers: dict[str, str]) -> tuple[int, str, bytes]:
        try:
            async with self._session.post(
                self._url, json=frame, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.read()
                return response.status, response.headers.get("WWW-Authenticate", ""), body
        except TimeoutError as err:
            raise DeviceTimeoutError(f"{self.address} did not answer in time") from err
        except aiohttp.ClientError as err:
            raise DeviceConnectionError(f"{self.address}: {err}") from err

    def _result(self, status: int, body: bytes) -> dict[str, Any]:
        if status >= 500:
            raise DeviceConnectionError(f"{self.address} answered HTTP {status}")
        try:
            reply = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidResponseError(f"{self.address} answered non-JSON: {body[:60]!r}") from None
        if not isinstance(reply, dict):
            raise InvalidResponseError(f"{self.address} answered a non-object: {body[:60]!r}")
        error = reply.get("error")
        if isinstance(error, dict):
            raise RpcCallError(int(error.get("code", 0)), str(error.get("message", "")))
        if status != 200:
            raise InvalidResponseError(f"{self.address} answered HTTP {status}")
        result = reply.get("result")
        if not isinstance(result, dict):
            raise InvalidResponseError(f"{self.address} answered no result: {body[:60]!r}")
        return result
