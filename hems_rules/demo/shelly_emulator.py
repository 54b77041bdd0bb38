"""A Shelly Gen2+ device on loopback, faithful enough to test against.

It speaks the HTTP RPC channel (`POST /rpc` frames, `GET|POST /rpc/<Method>`, `GET
/shelly`), has several switch channels with metering, add-on temperature sensors (ids
100+), SHA-256 digest auth, `toggle_after`, the usual error codes, and faults to inject:
slow answers, timeouts, HTTP 500, garbage, and refusing connections (stopped server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from hems_rules.shelly.digest import parse_challenge, response_hash

log = logging.getLogger(__name__)

Fault = Literal["timeout", "http500", "garbage"] | None

NO_AUTH = {"Shelly.GetDeviceInfo"}


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class EmulatedSwitch:
    load: float = 1000.0  # W drawn while the output is on
    output: bool = False
    energy_wh: float = 0.0
    since: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None

    def status(self, ident: int) -> dict[str, Any]:
        power = self.load if self.output else 0.0
        return {
            "id": ident,
            "source": "http",
            "output": self.output,
            "apower": power,
            "voltage": 230.0,
            "current": round(power / 230.0, 3),
            "aenergy": {"total": round(self.energy_wh, 3)},
            "temperature": {"tC": 41.2, "tF": 106.2},
        }


class EmulatedShelly:
    """One device. `async with` (or start/stop) serves it on 127.0.0.1."""

    def __init__(
        self,
        switches: int = 1,
        *,
        loads: list[float] | None = None,
        temperatures: dict[int, float | None] | None = None,
        password: str | None = None,
        device_id: str = "shellypro4pm-a8032ab1c2d4",
        port: int = 0,
    ) -> None:
        loads = loads or [1000.0] * switches
        self.switches = [EmulatedSwitch(load=loads[i]) for i in range(switches)]
        self.temperatures: dict[int, float | None] = dict(temperatures or {})
        self.password = password
        self.device_id = device_id
        self.port = port
        self.fault: Fault = None
        self.delay = 0.0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[float] = []  # time.perf_counter() of each call, for benchmarks
        self.requests = 0  # every request, answered or refused
        self.in_flight = 0
        self.max_in_flight = 0
        self._nonce = 0
        self._runner: web.AppRunner | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/shelly", self._shelly)
        app.router.add_post("/rpc", self._frame)
        app.router.add_route("*", "/rpc/{method}", self._method)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop answering: connections are refused until start() again (same port)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmulatedShelly:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        for switch in self.switches:
            if switch.timer is not None:
                switch.timer.cancel()

    def power_cut(self) -> None:
        """The device lost power: its outputs are off (it stays unreachable until started)."""
        for switch in self.switches:
            switch.output = False

    # -- HTTP ------------------------------------------------------------------------

    async def _shelly(self, request: web.Request) -> web.Response:
        return web.json_response(self._device_info())

    async def _frame(self, request: web.Request) -> web.StreamResponse:
        try:
            frame = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": -103, "message": "bad JSON"}}, status=400)
        method, params = str(frame.get("method", "")), frame.get("params") or {}
        envelope = {"id": frame.get("id"), "src": self.device_id, "dst": frame.get("src")}
        return await self._serve(request, method, params, envelope)

    async def _method(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, Any] = {k: _query_value(v) for k, v in request.query.items()}
        if request.method == "POST" and request.can_read_body:
            params.update(await request.json())
        return await self._serve(request, request.match_info["method"], params, None)

    async def _serve(
        self,
        request: web.Request,
        method: str,
        params: dict[str, Any],
        envelope: dict[str, Any] | None,
    ) -> web.StreamResponse:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fault == "timeout":
                await asyncio.sleep(3600)
            if self.fault == "http500":
                return web.Response(status=500, text="internal error")
            if self.fault == "garbage":
                return web.Response(status=200, text="<html>not json", content_type="text/html")
            if self.password and method not in NO_AUTH and not self._authorized(request):
                self._nonce += 1
                challenge = (
                    f'Digest qop="auth", realm="{self.device_id}", '
                    f'nonce="{int(time.time())}{self._nonce}", algorithm=SHA-256'
                )
                body = {"code": 401, "message": "Unauthorized"}
                return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge})
            self.calls.append((method, dict(params)))
            self.call_times.append(time.perf_counter())
            try:
                result = self._dispatch(method, params)
            except _RpcError as err:
                error = {"code": err.code, "message": err.message}
                if envelope is None:
                    return web.json_response(error, status=400 if err.code != -105 else 404)
                return web.json_response({**envelope, "error": error})
            if envelope is None:
                return web.json_response(result)
            return web.json_response({**envelope, "result": result})
        finally:
            self.in_flight -= 1

    def _authorized(self, request: web.Request) -> bool:
        params = parse_challenge(request.headers.get("Authorization", ""))
        if not params or params.get("realm") != self.device_id or self.password is None:
            return False
        try:
            nc = int(params.get("nc", "0"), 16)
        except ValueError:
            return False
        expected = response_hash(
            user=params.get("username", ""),
            realm=self.device_id,
            password=self.password,
            method=request.method,
            uri=params.get("uri", ""),
            nonce=params.get("nonce", ""),
            nc=nc,
            cnonce=params.get("cnonce", ""),
        )
        return params.get("username") == "admin" and params.get("response") == expected

    # -- RPC methods -----------------------------------------------------------------

    def _device_info(self) -> dict[str, Any]:
        return {
            "id": self.device_id,
            "mac": self.device_id.rsplit("-", 1)[-1].upper(),
            "model": "SPSW-104PE16EU",
            "gen": 2,
            "fw_id": "20260101-000000/1.4.4-emulated",
            "ver": "1.4.4",
            "app": "Pro4PM",
            "name": None,
            "auth_en": self.password is not None,
            "auth_domain": self.device_id if self.password else None,
        }

    def _switch(self, params: dict[str, Any]) -> tuple[int, EmulatedSwitch]:
        if "id" not in params:
            raise _RpcError(-103, "Missing required argument 'id'!")
        ident = params["id"]
        if not isinstance(ident, int) or not 0 <= ident < len(self.switches):
            raise _RpcError(-105, f"Argument 'id', value {ident} not found!")
        return ident, self.switches[ident]

    def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "Shelly.GetDeviceInfo":
            return self._device_info()
        if method == "Shelly.GetStatus":
            status: dict[str, Any] = {
                f"switch:{i}": s.status(i) for i, s in enumerate(self.switches)
            }
            for ident in self.temperatures:
                status[f"temperature:{ident}"] = self._temperature(ident)
            return status
        if method == "Switch.GetStatus":
            ident, switch = self._switch(params)
            return switch.status(ident)
        if method in ("Switch.Set", "Switch.Toggle"):
            ident, switch = self._switch(params)
            on = (not switch.output) if method == "Switch.Toggle" else params.get("on")
            if not isinstance(on, bool):
                raise _RpcError(-103, "Missing required argument 'on'!")
            was_on = switch.output
            self._set(switch, on, params.get("toggle_after"))
            return {"was_on": was_on}
        if method == "Temperature.GetStatus":
            sensor = params.get("id")
            if not isinstance(sensor, int) or sensor not in self.temperatures:
                raise _RpcError(-105, f"Argument 'id', value {sensor} not found!")
            return self._temperature(sensor)
        raise _RpcError(-114, f"Method {method} failed: No handler for {method}")

    def _temperature(self, ident: int) -> dict[str, Any]:
        celsius = self.temperatures[ident]
        if celsius is None:
            return {"id": ident, "tC": None, "tF": None, "errors": ["read"]}
        return {"id": ident, "tC": celsius, "tF": round(celsius * 9 / 5 + 32, 1)}

    def _set(self, switch: EmulatedSwitch, on: bool, toggle_after: Any) -> None:
        now = time.monotonic()
        if switch.output:
            switch.energy_wh += switch.load * (now - switch.since) / 3600
        switch.output, switch.since = on, now
        if switch.timer is not None:
            switch.timer.cancel()
            switch.timer = None
        if isinstance(toggle_after, (int, float)) and toggle_after > 0:
            loop = asyncio.get_running_loop()
            switch.timer = loop.call_later(float(toggle_after), self._set, switch, not on, None)


def _query_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
