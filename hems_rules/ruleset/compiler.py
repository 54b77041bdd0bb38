"""From rule files to a RuleSet: schema, merge, durations, expressions, references.

Every problem of a load is collected and reported together, each with file, line,
column and the path in the document; a load with any problem yields no RuleSet.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hems_rules.errors import ExpressionError, Problem, RulesError
from hems_rules.expressions import FUNCTIONS, RESERVATION_NAMES, Expression, compile_expression
from hems_rules.ruleset import schema
from hems_rules.ruleset.durations import format_duration, parse_duration
from hems_rules.ruleset.rules import (
    HEMS_SWITCH_SERVICE,
    AutoWrites,
    Consumer,
    DbusRelay,
    DbusSource,
    HistoryConfig,
    HttpSource,
    MqttBroker,
    MqttSource,
    PageConfig,
    RuleSet,
    Runtime,
    ShellyEndpoint,
    Site,
    Variable,
    VariableSource,
)
from hems_rules.ruleset.yamldoc import MAX_CHARS, PathPart, YamlDocument, parse_yaml

RULE_SUFFIXES = (".yaml", ".yml")


def rule_files(directory: Path) -> list[Path]:
    """What the rules of a directory are read from, in the order they are merged.

    Every visible *.yaml / *.yml entry counts, so a dangling link or a directory named
    like a rule file is reported by `read_rule_file` instead of being skipped: rules
    that silently vanish would release their consumers.
    """
    return sorted(
        p for p in directory.iterdir() if p.suffix in RULE_SUFFIXES and not p.name.startswith(".")
    )


# The directory (device, inode) and each rule file's (name, inode, size, mtime, ctime).
Signature = tuple[int, int, frozenset[tuple[str, int, int, int, int]]]


def _is_rule_name(name: str) -> bool:
    return name.endswith(RULE_SUFFIXES) and not name.startswith(".")


def signature(directory: Path) -> Signature | None:
    """What any save changes in the directory the rules path names; None: there is none.

    Times are the kernel's coarse clock (a few ms): a same-size rewrite within one tick
    of the look before could pass unseen, which no person saving a file can do.
    """
    try:
        info = directory.stat()
        if not stat.S_ISDIR(info.st_mode):
            return None
        files = set()
        with os.scandir(directory) as entries:
            for entry in entries:
                if _is_rule_name(entry.name):
                    with contextlib.suppress(OSError):  # gone since the listing
                        f = entry.stat()
                        files.add((entry.name, f.st_ino, f.st_size, f.st_mtime_ns, f.st_ctime_ns))
    except OSError:
        return None
    return info.st_dev, info.st_ino, frozenset(files)


def read_rule_file(path: Path, what: str = "rule file") -> str:
    """The text of one rule file (or scenario); RulesError saying what it is if it is not one.

    Opened without blocking, so a FIFO named like a rule file cannot hang a load.
    """

    def refuse(message: str) -> RulesError:
        return RulesError([Problem(str(path), 1, 1, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.is_symlink():
            raise refuse(f"a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise refuse("vanished while it was read") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise refuse("a loop of symbolic links") from None
        raise refuse(f"cannot read: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise refuse(f"a directory, not a {what}" if stat.S_ISDIR(mode) else "not a regular file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_CHARS * 4 + 1)  # UTF-8: at most 4 bytes a character
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise refuse(f"not UTF-8 text: byte {err.start} is {data[err.start]:#04x}") from None


def topic_filter_problem(topic: str) -> str | None:
    """Why `topic` is not an MQTT topic filter (MQTT 3.1.1, 4.7.1), or None."""
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "# only as the last level"
        if "+" in level and level != "+":
            return "+ only as a whole level"
    return None


@dataclass
class _Compiler:
    problems: list[Problem]

    def duration(self, doc: YamlDocument, path: tuple[PathPart, ...], value: Any) -> float:
        try:
            return parse_duration(value)
        except ValueError as err:
            self.problems.append(doc.problem(path, str(err)))
            return 0.0

    def expression(
        self, doc: YamlDocument, path: tuple[PathPart, ...], text: Any, names: frozenset[str]
    ) -> Expression | None:
        try:
            return compile_expression(text, names)
        except ExpressionError as err:
            self.problems.append(doc.problem(path, f"{text!r}: {err}"))
            return None

    def optional_duration(
        self, doc: YamlDocument, path: tuple[PathPart, ...], spec: dict[str, Any], key: str
    ) -> float | None:
        return self.duration(doc, (*path, key), spec[key]) if key in spec else None

    def site(self, doc: YamlDocument | None) -> Site:
        raw = (doc.data or {}).get("site") if doc else None
        raw = schema.with_defaults(raw or {}, {"$ref": "#/$defs/site"})
        located = doc or YamlDocument("<defaults>", {}, None)
        reservation = self.expression(
            located, ("site", "battery_reservation"), raw["battery_reservation"], RESERVATION_NAMES
        )
        if reservation is not None:
            self.reservation_computes(located, reservation)
        mqtt = raw.get("mqtt")
        web, history = raw["web"], raw["history"]
        if web["enabled"] and web["control"] and "password" not in web:
            self.problems.append(
                located.problem(("site", "web", "control"), "control needs a password")
            )
        portal = ((mqtt or {}).get("auto_writes") or {}).get("portal", "+")
        if portal != "+" and any(c in portal for c in "/+#"):
            path = ("site", "mqtt", "auto_writes", "portal")
            self.problems.append(
                located.problem(path, f"{json.dumps(portal)} is not one topic level")
            )
        return Site(
            battery_reservation=reservation or compile_expression("0", RESERVATION_NAMES),
            phases=raw["phases"],
            loop_interval=self.duration(located, ("site", "loop_interval"), raw["loop_interval"]),
            continuous_inverter_power=raw["continuous_inverter_power"],
            dc_efficiency=raw["dc_efficiency"],
            settle=self.duration(located, ("site", "settle"), raw["settle"]),
            mqtt=MqttBroker(
                host=mqtt["host"],
                port=mqtt["port"],
                username=mqtt.get("username"),
                password=mqtt.get("password"),
                auto_writes=AutoWrites(**mqtt["auto_writes"])
                if mqtt.get("auto_writes") is not None
                else None,
            )
            if mqtt
            else None,
            web=PageConfig(
                port=web["port"],
                bind=web["bind"],
                control=web["control"],
                password=web.get("password"),
            )
            if web["enabled"]
            else None,
            history=HistoryConfig(
                path=history["path"],
                days=history["days"],
                max_bytes=int(history["max_mb"] * (1 << 20)),
            )
            if history["enabled"]
            else None,
        )

    def reservation_computes(self, doc: YamlDocument, reservation: Expression) -> None:
        """A reservation that fails at every SOC would keep every secondary off for good."""
        errors = [reservation.evaluate({"SOC": float(soc)}).error for soc in range(101)]
        if all(errors):
            self.problems.append(
                doc.problem(
                    ("site", "battery_reservation"),
                    f"fails at every SOC from 0 to 100 % ({errors[0]})",
                )
            )

    def variable(self, doc: YamlDocument, name: str, spec: dict[str, Any]) -> Variable:
        path: tuple[PathPart, ...] = ("variables", name)
        kind, body = next(iter(spec.items()))
        at = (*path, kind)
        stale = self.optional_duration(doc, at, body, "stale_after")
        source: VariableSource
        if kind == "mqtt":
            source = MqttSource(topic=body["topic"], json=body.get("json"), stale_after=stale)
            why = topic_filter_problem(source.topic)
            if why:
                message = f"{json.dumps(source.topic)} is not an MQTT topic filter: {why}"
                self.problems.append(doc.problem((*at, "topic"), message))
        elif kind == "dbus":
            source = DbusSource(service=body["service"], path=body["path"], stale_after=stale)
        elif kind == "http":
            source = HttpSource(
                url=body["url"],
                json=body.get("json"),
                every=self.duration(doc, (*at, "every"), body["every"]),
                stale_after=stale,
            )
        else:
            host, port, sensor = body["host"], body["port"], body["sensor"]
            source = HttpSource(
                url=f"http://{host}:{port}/rpc/Temperature.GetStatus?id={sensor}",
                json="tC",
                every=self.duration(doc, (*at, "every"), body["every"]),
                stale_after=stale,
                user=body["user"],
                password=body.get("password"),
            )
        return Variable(name=name, source=source)

    def shelly(
        self, doc: YamlDocument, path: tuple[PathPart, ...], spec: dict[str, Any]
    ) -> ShellyEndpoint:
        toggle_after = self.optional_duration(doc, (*path, "shelly"), spec, "toggle_after")
        return ShellyEndpoint(
            host=spec["host"],
            port=spec["port"],
            switch=spec["switch"],
            user=spec["user"],
            password=spec.get("password"),
            toggle_after=toggle_after or None,
        )

    def consumer(
        self, doc: YamlDocument, index: int, raw: dict[str, Any], site: Site, names: frozenset[str]
    ) -> Consumer | None:
        path: tuple[PathPart, ...] = ("consumers", index)
        if raw.get("dbus", {}).get("service") == HEMS_SWITCH_SERVICE:
            self.problems.append(
                doc.problem(
                    (*path, "dbus", "service"),
                    "is hems-rules' own switch service: name the service of the relay itself",
                )
            )
        if raw["phase"] == "3P" and site.phases != 3:
            self.problems.append(doc.problem((*path, "phase"), "3P needs a 3-phase site"))
        if raw["phase"] in ("L2", "L3") and int(raw["phase"][1]) > site.phases:
            self.problems.append(
                doc.problem(
                    (*path, "phase"), f"{raw['phase']} does not exist on a {site.phases}-phase site"
                )
            )
        auto_when = None
        if "auto_when" in raw:
            auto_when = self.expression(doc, (*path, "auto_when"), raw["auto_when"], names)
        try:
            return Consumer(
                id=raw["id"],
                name=raw.get("name") or raw["id"].replace("_", " ").capitalize(),
                shelly=self.shelly(doc, path, raw["shelly"]) if "shelly" in raw else None,
                dbus=DbusRelay(raw["dbus"]["service"], str(raw["dbus"]["output"]))
                if "dbus" in raw
                else None,
                power=float(raw["power"]),
                phase=raw["phase"],
                priority=raw["priority"],
                primary=raw["class"] == "primary",
                min_on=self.duration(doc, (*path, "min_on"), raw["min_on"]),
                min_off=self.duration(doc, (*path, "min_off"), raw["min_off"]),
                on_delay=self.duration(doc, (*path, "on_delay"), raw["on_delay"]),
                off_delay=self.duration(doc, (*path, "off_delay"), raw["off_delay"]),
                on_margin=float(raw["on_margin"]),
                off_margin=float(raw["off_margin"]),
                max_starts_per_day=raw["max_starts_per_day"],
                auto_when=auto_when,
                release_keeps=raw["on_release"] == "keep",
                stale_holds=raw["on_stale"] == "hold",
                vrm=raw["vrm"],
                runtime=self.runtime(doc, (*path, "runtime"), raw["runtime"])
                if "runtime" in raw
                else None,
            )
        except ValueError as err:
            self.problems.append(doc.problem(path, str(err)))
            return None

    def runtime(
        self, doc: YamlDocument, path: tuple[PathPart, ...], spec: dict[str, Any]
    ) -> Runtime:
        """runtime: {min, by, max}; a target that no day can meet is a located error."""
        least = self.optional_duration(doc, path, spec, "min")
        most = self.optional_duration(doc, path, spec, "max")
        hours, minutes = (int(part) for part in spec.get("by", "24:00").split(":"))
        by = hours * 60 + minutes
        runtime = Runtime(min=least, by=by, max=most)
        if least is None and "by" in spec:
            self.problems.append(doc.problem((*path, "by"), "by needs a min to finish by then"))
        if least is not None and most is not None and least > most:
            message = f"min {format_duration(least)} is longer than max {format_duration(most)}"
            self.problems.append(doc.problem((*path, "min"), message))
        elif least is not None and least > by * 60:
            message = (
                f"min {format_duration(least)} does not fit between midnight and {runtime.by_text}"
            )
            self.problems.append(doc.problem((*path, "min"), message))
        return runtime


def _first_places(
    docs: list[YamlDocument], problems: list[Problem]
) -> tuple[YamlDocument | None, dict[str, tuple[YamlDocument, tuple[PathPart, ...]]]]:
    """The document holding `site` and where each variable name is defined; duplicates reported."""
    site_doc: YamlDocument | None = None
    variables: dict[str, tuple[YamlDocument, tuple[PathPart, ...]]] = {}
    for doc in docs:
        data = doc.data or {}
        if "site" in data:
            if site_doc is not None:
                line, _ = site_doc.locate(("site",), key=True)
                problems.append(
                    doc.problem(
                        ("site",), f"site is already defined at {site_doc.file}:{line}", key=True
                    )
                )
            else:
                site_doc = doc
        for name in data.get("variables") or {}:
            path: tuple[PathPart, ...] = ("variables", name)
            if name in variables:
                first, first_path = variables[name]
                line, _ = first.locate(first_path, key=True)
                problems.append(
                    doc.problem(
                        path,
                        f"variable {name!r} is already defined at {first.file}:{line}",
                        key=True,
                    )
                )
            elif name in FUNCTIONS:
                problems.append(doc.problem(path, f"{name!r} is a function name", key=True))
            else:
                variables[name] = (doc, path)
    return site_doc, variables


def _relay(consumer: Consumer) -> tuple[object, ...]:
    """What identifies a consumer's relay: two consumers on one would fight over it."""
    if consumer.shelly is not None:
        return (
            "shelly",
            consumer.shelly.host.lower(),
            consumer.shelly.port,
            consumer.shelly.switch,
        )
    assert consumer.dbus is not None
    return ("dbus", consumer.dbus.service, consumer.dbus.output)


def compile_documents(
    docs: list[YamlDocument], problems: list[Problem] | None = None, *, live: bool = False
) -> RuleSet:
    """Merge and compile parsed documents; RulesError with every problem found.

    `problems` already found (files that did not parse) are reported with the rest.
    `live` rules will read real sources, so an mqtt variable needs a broker (a scenario
    sets its variables itself).
    """
    problems = list(problems or [])
    for doc in docs:
        if doc.data is not None and not isinstance(doc.data, dict):
            problems.append(
                doc.problem((), "a rule file must be a mapping of site, variables, consumers")
            )
        else:
            problems.extend(schema.validate(doc))
    if problems:
        raise RulesError(problems)

    docs = [YamlDocument(d.file, schema.with_defaults(d.data or {}), d.root) for d in docs]
    site_doc, variable_places = _first_places(docs, problems)
    compiler = _Compiler(problems)
    site = compiler.site(site_doc)
    variables = {
        name: compiler.variable(doc, name, doc.data["variables"][name])
        for name, (doc, _) in variable_places.items()
    }
    if live and site.mqtt is None:
        for name, (doc, place) in variable_places.items():
            if isinstance(variables[name].source, MqttSource):
                message = "needs site.mqtt, the broker to subscribe to"
                problems.append(doc.problem((*place, "mqtt"), message, key=True))
    names = frozenset(variables)
    consumers: list[Consumer] = []
    first_id: dict[str, tuple[YamlDocument, tuple[PathPart, ...]]] = {}
    relays: dict[tuple[object, ...], tuple[str, YamlDocument, tuple[PathPart, ...]]] = {}
    for doc in docs:
        for index, spec in enumerate((doc.data or {}).get("consumers") or []):
            path: tuple[PathPart, ...] = ("consumers", index, "id")
            if spec["id"] in first_id:
                first, first_path = first_id[spec["id"]]
                line, _ = first.locate(first_path)
                problems.append(
                    doc.problem(path, f"id {spec['id']!r} is already used at {first.file}:{line}")
                )
                continue
            first_id[spec["id"]] = (doc, path)
            consumer = compiler.consumer(doc, index, spec, site, names)
            if consumer is None:
                continue
            consumers.append(consumer)
            kind = "shelly" if consumer.shelly is not None else "dbus"
            relay = _relay(consumer)
            at: tuple[PathPart, ...] = ("consumers", index, kind)
            if relay in relays:
                other, other_doc, other_path = relays[relay]
                line, _ = other_doc.locate(other_path)
                where = f"{other_doc.file}:{line}"
                message = f"the same relay as {other} ({where}), which would fight it"
                problems.append(doc.problem(at, message))
            else:
                relays[relay] = (consumer.id, doc, at)
    if problems:
        raise RulesError(problems)
    return RuleSet(
        site=site,
        consumers=tuple(consumers),
        variables=MappingProxyType(variables),
    )


def load_rules(directory: Path | str) -> RuleSet:
    """Load, validate and compile every rule file of a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesError([Problem(str(directory), 1, 1, "", "not a directory")])
    docs: list[YamlDocument] = []
    problems: list[Problem] = []
    files = rule_files(directory)
    if not files:
        raise RulesError([Problem(str(directory), 1, 1, "", "no rule files (*.yaml) here")])
    for path in files:
        try:
            text = read_rule_file(path)
        except RulesError as err:
            problems.extend(err.problems)
            continue
        doc, found = parse_yaml(str(path), text)
        problems.extend(found)
        if doc is not None:
            docs.append(doc)
    return compile_documents(docs, problems, live=True)
