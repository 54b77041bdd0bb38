"""The status page: an aiohttp server that hems-rules runs as one of its components.

`GET /` and `/static/*` serve the page from the package (a GX is often offline);
`GET /api/live` streams the live view as server-sent events, pushed at once when a
decision changes and at most once a second otherwise; `GET /api/day?date=` returns a
day's chart from the history. Nothing is computed while nobody looks.

Read-only unless `control` is on. Then `POST /api/auto` and `POST /api/switch` take JSON
with the password. A foreign page cannot forge them: they need a JSON body and a custom
header (a cross-site request with either needs a CORS preflight, which is never
granted), an Origin, when sent, of this very host, and the password, which no browser
attaches by itself. Wrong password 403, unknown consumer 404, bad value 400, refused
409; nothing changes then.

A port that cannot be bound is logged and the page stays off: control goes on.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from hems_rules.core.model import CycleResult
from hems_rules.history.recording import Recording
from hems_rules.ruleset.rules import PageConfig, RuleSet
from hems_rules.web.chart import RESOLUTION, day_chart, live

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
HEADER = "X-HEMS-Request"  # any value; its presence forces a CORS preflight
QUIET_PUSH = 1.0  # s between pushes while no decision changes
KEEPALIVE = 15.0
WRONG_PASSWORD_DELAY = 0.5
# How long a request under way may take to finish when the page stops (s): the releases
# come after the page, and aiohttp from 3.10 on would wait a minute for a stalled client.
STOP_GRACE = 1.0
SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Control(Protocol):
    """What the app lets the page do; the writes return False when they were refused."""

    def set_auto(self, consumer_id: str, value: int) -> bool: ...

    def switch(self, consumer_id: str, on: bool) -> bool: ...


class History(Protocol):
    async def read(self, day: date) -> Recording: ...

    async def days(self) -> list[date]: ...


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Asset:
    content_type: str
    body: bytes
    gzipped: bytes
    etag: str


def _assets() -> dict[str, _Asset]:
    assets = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            kind = TYPES[path.suffix] + ("; charset=utf-8" if path.suffix != ".txt" else "")
            assets[path.name] = _Asset(kind, body, gzip.compress(body, 9, mtime=0), etag)
    return assets


class StatusPage:
    """Serves the page on `config.bind:config.port` while entered."""

    def __init__(
        self,
        config: PageConfig,
        rules: RuleSet,
        *,
        history: History | None = None,
        control: Control | None = None,
        rules_error: Callable[[], str] = lambda: "",
    ) -> None:
        self.config = config
        self.rules = rules
        self.history = history
        self.control = control if config.control and config.password else None
        self.rules_error = rules_error
        self.port: int | None = None  # bound port, None while the page is off
        self._record: CycleResult | None = None
        self._version = 0
        self._cached: tuple[int, bytes] | None = None
        self._wake = asyncio.Event()
        self._pushed = 0.0
        self._later: asyncio.TimerHandle | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[web.StreamResponse] = set()
        self._assets = _assets()

    async def __aenter__(self) -> StatusPage:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/live", self._live)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/day", self._day)
        app.router.add_post("/api/auto", self._auto)
        app.router.add_post("/api/switch", self._switch)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=STOP_GRACE
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.bind, self.config.port)
        try:
            await site.start()
        except OSError as err:
            log.error("status page on port %d is off, control goes on: %s", self.config.port, err)
            await runner.cleanup()
            return self
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info("status page on http://%s:%d/", self.config.bind, self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._later is not None:
            self._later.cancel()
        if self._runner is not None:
            self._streams.clear()
            self._wake.set()
            await self._runner.cleanup()
            self._runner = None
            self.port = None

    # -- fed by the loop ------------------------------------------------------------------

    def use_rules(self, rules: RuleSet) -> None:
        self.rules = rules

    def publish(self, record: CycleResult) -> None:
        self._record = record
        if self._runner is None or not self._streams:
            return
        now = time.monotonic()
        if record.changed or now - self._pushed >= QUIET_PUSH:
            self._push()
        elif self._later is None:
            delay = QUIET_PUSH - (now - self._pushed)
            self._later = asyncio.get_running_loop().call_later(delay, self._push)

    def _push(self) -> None:
        if self._later is not None:
            self._later.cancel()
            self._later = None
        self._pushed = time.monotonic()
        self._version += 1
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def _live_json(self) -> bytes | None:
        record = self._record
        if record is None:
            return None
        if self._cached is not None and self._cached[0] == self._version:
            return self._cached[1]
        # On/off by hand (while Auto is 0) comes with control, as in the GX's switch pane.
        control = self.control is not None
        extra = {"control": control, "manual": control}
        view = live(
            record.plan,
            record.snapshot,
            self.rules,
            record.at.timestamp(),
            rules_error=self.rules_error(),
            extra=extra,
        )
        body = json.dumps(view, separators=(",", ":")).encode()
        self._cached = (self._version, body)
        return body

    # -- requests ----------------------------------------------------------------------

    @web.middleware
    async def _headers(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY)
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, "index.html", cache="no-cache")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, request.match_info["name"], cache="max-age=86400")

    def _asset(self, request: web.Request, name: str, cache: str) -> web.StreamResponse:
        asset = self._assets.get(name)
        if asset is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": cache, "ETag": asset.etag, "Vary": "Accept-Encoding"}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        body = asset.body
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers={**headers, "Content-Type": asset.content_type})

    async def _state(self, request: web.Request) -> web.Response:
        body = self._live_json()
        if body is None:
            return web.json_response({"waiting": "no cycle yet"}, status=503)
        return web.Response(body=body, content_type="application/json")

    async def _live(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                **SECURITY,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        self._streams.add(response)
        sent = -1
        try:
            while response in self._streams:
                if sent != self._version and (body := self._live_json()) is not None:
                    sent = self._version
                    await response.write(b"data: " + body + b"\n\n")
                    continue
                wake = self._wake
                try:
                    await asyncio.wait_for(wake.wait(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except ConnectionError:
            pass  # the browser went away: nothing to tell it
        finally:
            self._streams.discard(response)
        return response

    async def _day(self, request: web.Request) -> web.Response:
        if self.history is None:
            return web.json_response({"error": "the history is off (site.history)"}, status=404)
        days = await self.history.days()
        wanted = request.query.get("date")
        try:
            day = date.fromisoformat(wanted) if wanted else (days[-1] if days else None)
        except ValueError:
            return web.json_response({"error": "date is YYYY-MM-DD"}, status=400)
        try:
            resolution = float(request.query.get("resolution", RESOLUTION))
        except ValueError:
            resolution = math.nan
        if not math.isfinite(resolution):
            return web.json_response({"error": "resolution is a number of seconds"}, status=400)
        if day is None:
            return web.json_response({"error": "nothing recorded yet", "days": []}, status=404)
        recording = await self.history.read(day)
        chart = day_chart(recording, days, max(resolution, recording.step))
        chart["date"] = day.isoformat()
        response = web.json_response(chart, dumps=lambda v: json.dumps(v, separators=(",", ":")))
        response.enable_compression()
        return response

    # -- control -------------------------------------------------------------------------

    async def _auto(self, request: web.Request) -> web.Response:
        async def act(control: Control, consumer_id: str, body: dict[str, Any]) -> str:
            value = body.get("auto")
            if value not in (0, 1) or isinstance(value, bool):
                raise Refused(400, "auto must be 0 or 1")
            if not control.set_auto(consumer_id, int(value)):
                raise Refused(409, "the switch service refused the value")
            return f"Auto of {consumer_id} set to {value}"

        return await self._write(request, act)

    async def _switch(self, request: web.Request) -> web.Response:
        async def act(control: Control, consumer_id: str, body: dict[str, Any]) -> str:
            on = body.get("on")
            if not isinstance(on, bool):
                raise Refused(400, "on must be true or false")
            record = self._record
            auto = record.snapshot.auto.get(consumer_id, 1) if record else 1
            if auto:
                raise Refused(409, "Auto is on: switch Auto off first, then on or off by hand")
            if not control.switch(consumer_id, on):
                raise Refused(409, "switching by hand was refused")
            return f"{consumer_id} switched {'on' if on else 'off'} by hand"

        return await self._write(request, act)

    async def _write(self, request: web.Request, act: Any) -> web.Response:
        try:
            control = self._writable(request)
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise Refused(400, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise Refused(400, "the body must be a JSON object")
            password = body.get("password")
            expected = self.config.password or ""
            if not isinstance(password, str) or not hmac.compare_digest(
                password.encode(), expected.encode()
            ):
                await asyncio.sleep(WRONG_PASSWORD_DELAY)  # slows guessing down
                log.warning("status page: wrong password from %s", request.remote)
                raise Refused(403, "wrong password")
            consumer_id = body.get("consumer")
            if not isinstance(consumer_id, str) or consumer_id not in {
                c.id for c in self.rules.consumers
            }:
                raise Refused(404, f"no consumer {consumer_id!r}")
            message = await act(control, consumer_id, body)
        except Refused as refused:
            return web.json_response({"ok": False, "error": str(refused)}, status=refused.status)
        log.info("status page: %s (from %s)", message, request.remote)
        return web.json_response({"ok": True, "message": message})

    def _writable(self, request: web.Request) -> Control:
        """The checks before the body is even read."""
        if self.control is None:
            raise Refused(403, "the page is read-only (site.web.control)")
        if request.content_type != "application/json":
            raise Refused(415, "send application/json")
        if HEADER not in request.headers:
            raise Refused(403, f"missing the {HEADER} header")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise Refused(403, "a request from another site")
        return self.control
