"""A Venus-like switch service on the private bus, as Victron's dbus-shelly publishes one.

What a GX shows for a Shelly channel the user enabled in its UI (venus-conventions.md
§5.1, dbus-shelly's channel services): `com.victronenergy.switch.<suffix>`, or
`acload.<suffix>` when the channel meters, with its DeviceInstance from
ClassAndVrmInstance, the module `/State` 0x100, and per output
`/SwitchableOutput/<x>/State|Status|Name` and `Settings/*` (Type and Function checked
against their Valid* masks). A State write is answered 0 at once and the output moves
only after the device has switched, as dbus-shelly's asynchronous handler does; a
metered service shows the draw on `/Ac/Power`.

Tests and the demo drive it from outside: a fault on an output, a different Function,
a relay that does not move, a press of the device's own button, the service leaving
the bus and coming back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from dbus_fast import Message

from hems_rules.dbus.client import open_client
from hems_rules.dbus.service import BusService
from hems_rules.dbus.settings import SettingsClient, device_instance
from hems_rules.dbus.variants import Value, unwrap
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

PRODUCT_ID_SHELLY_SWITCH = 0xB075
STATUS_OFF, STATUS_ON = 0x00, 0x09
TOGGLE, MOMENTARY = 1, 0
MANUAL, OPPORTUNITY_LOAD = 2, 6


@dataclass
class Output:
    """One relay of the emulated device."""

    label: str
    load: float = 1000.0  # W drawn while on
    on: bool = False
    stuck: bool = False  # State writes are accepted, the relay does not move
    fault: int | None = None  # a Status fault (0x08 output fault, 0x20 disabled...)

    @property
    def status(self) -> int:
        if self.fault is not None:
            return self.fault
        return STATUS_ON if self.on else STATUS_OFF


@dataclass(frozen=True)
class Write:
    """A State write as it arrived: for tests and benchmarks."""

    at: float  # time.perf_counter(), as the Shelly emulator records its calls
    label: str
    value: Value


class EmulatedSwitchService(BusService):
    """One switch or acload service with one output per label (an async context manager)."""

    def __init__(
        self,
        name: str,
        address: str,
        outputs: Sequence[Output] = (Output("0"),),
        *,
        delay: float = 0.02,
    ) -> None:
        super().__init__(name, address)
        self.kind = name.split(".")[2]
        self.metered = self.kind == "acload"
        self.outputs = {o.label: o for o in outputs}
        self.delay = delay  # how long the device takes to switch after a write
        self.writes: list[Write] = []
        self._tasks = Tasks(f"emulated {name}")

    async def __aenter__(self) -> Self:
        suffix = self.name.split(".", 3)[3]
        path = f"/Settings/Devices/{suffix}/ClassAndVrmInstance"
        async with open_client(self.address) as client:
            instance = await device_instance(SettingsClient(client), path, f"{self.kind}:50")
        self.add_mandatory("dbus-shelly (emulated)", instance, "", "")
        self.set("/ProductId", PRODUCT_ID_SHELLY_SWITCH)
        self.set("/ProductName", "Shelly switch")
        self.set("/Mgmt/Connection", "127.0.0.1")
        self.add("/State", 0x100)
        for output in self.outputs.values():
            self._add_output(output)
        if self.metered:
            self.add("/Ac/Power", 0.0, unit="W")
            self.add("/Ac/L1/Power", 0.0, unit="W")
        self._publish()
        await self.register()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        await self.close()

    def _add_output(self, output: Output) -> None:
        prefix = f"/SwitchableOutput/{output.label}"
        self.add(f"{prefix}/State", int(output.on), writable=True)
        self.add(f"{prefix}/Status", output.status)
        name = f"Channel {int(output.label) + 1}" if output.label.isdigit() else output.label
        self.add(f"{prefix}/Name", name)
        self.add(f"{prefix}/Settings/CustomName", "", writable=True)
        self.add(f"{prefix}/Settings/Group", "", writable=True)
        self.add(f"{prefix}/Settings/ShowUIControl", 1, writable=True)
        self.add(f"{prefix}/Settings/ValidTypes", (1 << TOGGLE) | (1 << MOMENTARY))
        self.add(f"{prefix}/Settings/Type", TOGGLE, writable=True, on_set=self._valid)
        self.add(f"{prefix}/Settings/ValidFunctions", (1 << MANUAL) | (1 << OPPORTUNITY_LOAD))
        self.add(f"{prefix}/Settings/Function", MANUAL, writable=True, on_set=self._valid)

    def _valid(self, path: str, value: Value) -> bool:
        """Type and Function only take what their Valid* mask allows."""
        mask = self[path.replace("/Settings/", "/Settings/Valid") + "s"]
        return (
            isinstance(value, int)
            and isinstance(mask, int)
            and 0 <= value < 32
            and bool(mask & (1 << value))
        )

    # -- the device ---------------------------------------------------------------------

    def handle_custom(self, msg: Message) -> Message | None:
        """State writes: answered at once, carried out once the device has switched."""
        path = str(msg.path)
        if msg.member != "SetValue" or not path.endswith("/State") or path not in self.items:
            return None
        label = path.split("/")[2]
        value = unwrap(msg.body[0]) if msg.signature == "v" else None
        self.writes.append(Write(time.perf_counter(), label, value))
        if value not in (0, 1):  # aiovelib's IntegerItem takes what int() makes 0 or 1
            return Message.new_method_return(msg, "i", [1])
        self._tasks.spawn(self._switch_later(label, bool(value)), name=f"switch-{label}")
        return Message.new_method_return(msg, "i", [0])

    async def _switch_later(self, label: str, on: bool) -> None:
        await asyncio.sleep(self.delay)
        output = self.outputs[label]
        if not output.stuck:
            self.press(label, on)

    def press(self, label: str, on: bool) -> None:
        """The relay moves (a command carried out, or the device's own button)."""
        self.outputs[label].on = on
        self._publish()

    def fault(self, label: str, status: int | None) -> None:
        """Status shows a fault (0x08 output fault, 0x20 disabled...); None: healthy again."""
        self.outputs[label].fault = status
        self._publish()

    def set_function(self, label: str, function: int) -> None:
        """The user picked another Function for the output in the GX UI."""
        self.set(f"/SwitchableOutput/{label}/Settings/Function", function)

    def _publish(self) -> None:
        for output in self.outputs.values():
            prefix = f"/SwitchableOutput/{output.label}"
            self.set(f"{prefix}/State", int(output.on))
            self.set(f"{prefix}/Status", output.status)
        if self.metered and "/Ac/Power" in self.items:
            drawn = sum(o.load for o in self.outputs.values() if o.on)
            self.set("/Ac/Power", drawn)
            self.set("/Ac/L1/Power", drawn)
