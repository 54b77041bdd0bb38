"""A small Shelly Gen2+ RPC client over HTTP (`POST /rpc` with JSON-RPC frames).

Layering as in python-kasa: this module is transport and protocol only; what a relay
means to the engine lives in relays.py. One request is in flight per device at a
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

from hems_rules.errors import ConfigurationError, HemsError, TransientError
from hems_rules.shelly.digest import DigestAuth

log = logging.getLogger(__name__)

CLIENT_NAME = "hems-rules"


class ShellyError(HemsError):
    """Root of everything a Shelly can do wrong; `reason` says it for a consumer's Reason."""

    reason = "the Shelly does not answer"


class DeviceConnectionError(ShellyError, TransientError):
    """The device cannot be reached or did not answer: transient, retried."""

    reason = "the relay does not answer"


class DeviceTimeoutError(DeviceConnectionError, TimeoutError):
    """The device did not answer in time."""


class InvalidResponseError(ShellyError, TransientError):
    """The device answered something that is not a JSON-RPC frame (rebooting, or not a
    Shelly at this address): transient, retried."""

    reason = "the Shelly answers nonsense"


class InvalidAuthError(ShellyError, ConfigurationError):
    """The device refused the credentials: the user must fix the password in the rules."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RpcCallError(ShellyError):
    """The device understood the call and refused it."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class DeviceBusyError(RpcCallError, TransientError):
    """A refusal that may pass (busy, not ready, over its limits): retried."""

    reason = "the Shelly refuses for now"


class InvalidRequestError(RpcCallError, ConfigurationError):
    """The call cannot work on this device (no such switch, no such method): the user
    must fix the rules (a switch id the device does not have) or pick another device."""

    def __init__(self, code: int, message: str, reason: str) -> None:
        super().__init__(code, message)
        self.reason = reason


# Shelly's codes for a request this device can never serve: invalid argument, not
# found, and HTTP's 404 for an unknown method. Others (-104 deadline, -108 resource
# exhausted, -109 precondition, -114 unavailable) may pass.
INVALID_REQUEST = frozenset({-103, -105, 404})


def _refusal(address: str, method: str, params: dict[str, Any], error: dict[str, Any]) -> Exception:
    code = error.get("code")
    code = code if isinstance(code, int) else 0
    text = f"{address} refused {method}: {error.get('message', '')} ({code})"
    if code not in INVALID_REQUEST:
        return DeviceBusyError(code, text)
    component = method.partition(".")[0].lower()
    if code == -105 and "id" in params:
        why = f"the Shelly has no {component} {params['id']}"
    else:
        why = f"the Shelly cannot do {method}"
    return InvalidRequestError(code, text, why)


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
                return self._result(status, body, frame)
            if self._auth is None:
                raise InvalidAuthError(
                    f"{self.address} needs a password", "the Shelly needs a password"
                )
            if fresh_challenge or not self._auth.challenge(www_authenticate):
                raise InvalidAuthError(
                    f"{self.address} refused the password", "the Shelly refused the password"
                )
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

    def _result(self, status: int, body: bytes, frame: dict[str, Any]) -> dict[str, Any]:
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
            raise _refusal(self.address, frame["method"], frame["params"], error)
        if status != 200:
            raise InvalidResponseError(f"{self.address} answered HTTP {status}")
        result = reply.get("result")
        if not isinstance(result, dict):
            raise InvalidResponseError(f"{self.address} answered no result: {body[:60]!r}")
        return result
