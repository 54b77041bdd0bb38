"""Shelly relays: carry out the engine's commands and report what the relays really do.

One worker per consumer polls its switch channel, sends commands with a read-back,
keeps an optional `toggle_after` dead-man alive, and reports a DeviceFact after every
exchange. A device that fails is reported unavailable with the cause (a wrong password
is a configuration fault, shown on /Hems/ConfigError) and rejoins when it answers;
each is logged once (health.py). Workers are independent tasks, so one slow or dead
Shelly never delays another or the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hems_rules.core.model import DeviceFact
from hems_rules.health import Faults, Health, reason
from hems_rules.ruleset.rules import Consumer, ShellyEndpoint
from hems_rules.tasks import Tasks, cancel_and_wait

if TYPE_CHECKING:
    import aiohttp

    from hems_rules.shelly.rpc import ShellyRpc

log = logging.getLogger(__name__)

Report = Callable[[str, DeviceFact], None]
Address = Callable[[ShellyEndpoint], tuple[str, int]]


def direct(endpoint: ShellyEndpoint) -> tuple[str, int]:
    return endpoint.host, endpoint.port


class ShellyRelay:
    """One consumer's switch channel."""

    def __init__(
        self,
        consumer: Consumer,
        rpc: ShellyRpc,
        report: Report,
        poll_interval: float,
        faults: Faults | None = None,
    ) -> None:
        assert consumer.shelly is not None
        self.consumer = consumer
        self.endpoint = consumer.shelly
        self.rpc = rpc
        self._report = report
        self._interval = poll_interval
        self._wanted: bool | None = None
        self._commands = 0  # counts command() calls: one arriving mid-exchange is kept
        self._wake = asyncio.Event()
        # The consumer's id names it; the errors say which device and address.
        self.health = Health(consumer.id, log, faults)
        self._measured = False  # has a power reading arrived since the last switch?
        self._asserted_at = 0.0

    def command(self, on: bool) -> None:
        self._wanted = on
        self._commands += 1
        self._wake.set()

    @property
    def pending(self) -> bool:
        return self._wanted is not None

    async def finish(self) -> None:
        """One last exchange: deliver a pending command (a release) and stop."""
        try:
            await self._exchange()
        finally:
            self.health.close()

    async def switch_off_now(self) -> None:
        """Switch off at once, outside the polling rhythm (for shutdown releases)."""
        await self.rpc.call("Switch.Set", {"id": self.endpoint.switch, "on": False})
        log.info("%s switched off on shutdown", self.consumer.id)

    async def run(self) -> None:
        try:
            while True:
                await self._exchange()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_wait()):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            self.health.close()

    def _next_wait(self) -> float:
        toggle_after = self.endpoint.toggle_after
        if toggle_after is None or not self._asserted_at:
            return self._interval
        due = self._asserted_at + toggle_after / 2 - time.monotonic()
        return max(0.05, min(self._interval, due))

    async def _exchange(self) -> None:
        channel = self.endpoint.switch
        commands = self._commands
        try:
            await self._send(channel)
            status = await self.rpc.call("Switch.GetStatus", {"id": channel})
        except Exception as err:
            # Whatever it is (a bug included), this device is unavailable for now; its
            # polling goes on, and so does everyone else's. A command that came meanwhile
            # is still to be sent; the one that failed is the engine's to repeat.
            if self._commands == commands:
                self._wanted = None
            self._asserted_at = 0.0
            self.health.failed(err)
            self._report(self.consumer.id, DeviceFact(available=False, cause=reason(err)))
            return
        self.health.ok()
        on = bool(status.get("output"))
        apower = status.get("apower")
        power = None
        if self._measured and on and isinstance(apower, (int, float)) and apower >= 0:
            power = float(apower)
        self._measured = True
        if not on:
            self._asserted_at = 0.0
        self._report(self.consumer.id, DeviceFact(on=on, power=power))

    async def _send(self, channel: int) -> None:
        toggle_after = self.endpoint.toggle_after
        refresh = (
            toggle_after is not None
            and self._asserted_at
            and time.monotonic() - self._asserted_at >= toggle_after / 2
        )
        wanted, commands = self._wanted, self._commands
        if wanted is None and not refresh:
            return
        on = True if wanted is None else wanted
        params: dict[str, object] = {"id": channel, "on": on}
        if on and toggle_after is not None:
            params["toggle_after"] = toggle_after
        await self.rpc.call("Switch.Set", params)
        self._asserted_at = time.monotonic() if on and toggle_after is not None else 0.0
        if wanted is not None:
            log.info("%s switched %s", self.consumer.id, "on" if on else "off")
            self._measured = False
        if self._commands == commands:
            self._wanted = None  # else a newer command came while this one was on its way


class ShellyRelays:
    """Every consumer's relay worker (an async context manager owning the HTTP session).

    The session, and with it aiohttp's client, comes with the first Shelly: rules
    without one never load it, and `run` decides once before it syncs the relays.
    """

    def __init__(
        self,
        report: Report,
        poll_interval: float = 5.0,
        timeout: float = 4.0,
        address: Address = direct,
        faults: Faults | None = None,
    ) -> None:
        self._report = report
        self._interval = poll_interval
        self._timeout = timeout
        self._address = address
        self._faults = faults
        self._session: aiohttp.ClientSession | None = None
        self._open = False
        self._tasks = Tasks("Shelly relays")
        self._workers: dict[str, tuple[ShellyRelay, asyncio.Task[None]]] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self._clients: dict[tuple[str, int, str, str | None], ShellyRpc] = {}

    async def __aenter__(self) -> ShellyRelays:
        self._open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop(list(self._workers))
        await self._tasks.aclose()
        if self._session is not None:
            await self._session.close()

    def sync(self, consumers: Iterable[Consumer]) -> None:
        """Start workers for new or changed Shelly consumers; stop those no longer in the rules."""
        assert self._open, "use ShellyRelays as an async context manager"
        wanted = {c.id: c for c in consumers if c.shelly is not None}
        gone = [i for i, (w, _) in self._workers.items() if wanted.get(i) != w.consumer]
        for consumer_id in gone:
            worker, task = self._workers.pop(consumer_id)
            task.cancel()
            if worker.pending:
                finishing = self._tasks.spawn(worker.finish(), name=f"shelly-{consumer_id}-last")
                self._finishing.add(finishing)
                finishing.add_done_callback(self._finishing.discard)
        for consumer_id, consumer in wanted.items():
            if consumer_id in self._workers:
                continue
            worker = ShellyRelay(
                consumer, self._rpc(consumer), self._report, self._interval, self._faults
            )
            task = self._tasks.keep_running(f"shelly-{consumer_id}", worker.run)
            self._workers[consumer_id] = (worker, task)
        # Clients of devices no longer in the rules go (a finishing worker keeps its own).
        in_use = {worker.rpc for worker, _ in self._workers.values()}
        self._clients = {key: rpc for key, rpc in self._clients.items() if rpc in in_use}

    @property
    def clients(self) -> int:
        """How many device clients are kept (one per device in the rules)."""
        return len(self._clients)

    def _rpc(self, consumer: Consumer) -> ShellyRpc:
        """One client per device: channels of a Pro4PM share it, and so its one-at-a-time lock."""
        # Imported with the first Shelly: aiohttp's client is a quarter of `run`'s start
        # on a GX, needed neither for its first decision nor by rules without a Shelly.
        import aiohttp  # noqa: PLC0415

        from hems_rules.shelly.rpc import ShellyRpc  # noqa: PLC0415

        assert consumer.shelly is not None
        if self._session is None:
            self._session = aiohttp.ClientSession()
        endpoint = consumer.shelly
        host, port = self._address(endpoint)
        key = (host, port, endpoint.user, endpoint.password)
        rpc = self._clients.get(key)
        if rpc is None:
            rpc = ShellyRpc(
                self._session,
                host,
                port,
                user=endpoint.user,
                password=endpoint.password,
                timeout=self._timeout,
            )
            self._clients[key] = rpc
        return rpc

    def command(self, consumer_id: str, on: bool) -> None:
        entry = self._workers.get(consumer_id)
        if entry is None:
            log.warning("no relay for %s; command %s dropped", consumer_id, on)
            return
        entry[0].command(on)

    async def release(self, consumer_ids: Iterable[str]) -> None:
        """Shutdown: stop every worker, then switch these relays off and wait for the answers.

        Workers stop first so that no command still pending in one can reach its relay
        after the off (bounded by the RPC timeout).
        """
        workers = {i: w for i, (w, _) in self._workers.items()}
        await self._stop(list(self._workers))
        await asyncio.gather(*self._finishing, return_exceptions=True)
        releasing = [workers[i] for i in consumer_ids if i in workers]
        results = await asyncio.gather(
            *(w.switch_off_now() for w in releasing), return_exceptions=True
        )
        for worker, result in zip(releasing, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("%s could not be switched off: %s", worker.consumer.id, result)

    async def _stop(self, consumer_ids: list[str]) -> None:
        tasks = [self._workers.pop(i)[1] for i in consumer_ids if i in self._workers]
        await cancel_and_wait(tasks, "Shelly relays")
