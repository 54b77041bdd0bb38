"""`hems-rules run | check | simulate | replay | demo`.

Each command imports what it needs when it runs: `run` on a GX never loads the demo,
the emulators, the simulator or a web server it does not use (memory and start-up).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from hems_rules.core.reasons import span
from hems_rules.errors import HemsError, printable
from hems_rules.ruleset.durations import parse_duration

if TYPE_CHECKING:
    from hems_rules.core.model import Decision
    from hems_rules.ruleset.rules import RuleSet, Runtime


GX_RULES = Path("/data/hems-rules/rules")


def _runtime(runtime: Runtime) -> str:
    """runtime: {min, by, max} as a sentence: "at least 5 h a day by 21:00, at most 8 h"."""
    parts = []
    if runtime.min is not None:
        parts.append(f"at least {span(runtime.min)} a day by {runtime.by_text}")
    if runtime.max is not None:
        parts.append(f"at most {span(runtime.max)} a day")
    return ", ".join(parts)


def _summary(rules: RuleSet) -> str:
    lines = [f"rules OK: {len(rules.consumers)} consumers, {len(rules.variables)} variables"]
    site = rules.site
    limit = (
        "no limit"
        if site.continuous_inverter_power is None
        else f"{site.continuous_inverter_power:g} W"
    )
    lines.append(
        f"site: {site.phases} phase(s), loop every {site.loop_interval:g} s, "
        f"continuous inverter power {limit} per phase, DC efficiency {site.dc_efficiency:g}, "
        f"settle at most {site.settle:g} s"
    )
    readings = []
    for soc in (0, 50, 100):
        result = site.battery_reservation.evaluate({"SOC": float(soc)})
        value = (
            f"{max(0.0, result.value):g} W"
            if result.value is not None
            else f"error ({result.error})"
        )
        readings.append(f"SOC {soc}% -> {value}")
    lines.append(f"battery reservation {site.battery_reservation.source!r}: {', '.join(readings)}")
    web, history = site.web, site.history
    lines.append(
        "status page off"
        if web is None
        else f"status page on {web.bind}:{web.port}, "
        + ("control with a password" if web.control else "read-only")
    )
    lines.append(
        "history off"
        if history is None
        else f"history in {history.path}, {history.days} days, at most "
        f"{history.max_bytes / (1 << 20):g} MB"
    )
    lines.append("consumers, served in this order:")
    for c in rules.ranked:
        kind = "primary" if c.primary else "secondary"
        condition = f", auto_when {c.auto_when.source!r}" if c.auto_when else ""
        relay = (
            f"shelly {c.shelly.host}:{c.shelly.port} switch {c.shelly.switch}"
            if c.shelly is not None
            else f"dbus {c.dbus}"
        )
        lines.append(
            f"  {c.priority:>4}  {c.id:<20} {c.power:>6g} W {c.phase:<2} {kind:<9} "
            f"{relay}{condition}"
        )
        if c.runtime is not None:
            lines.append(f"        {'':<20} runtime {_runtime(c.runtime)}")
    if rules.variables:
        lines.append("variables:")
        for name, variable in rules.variables.items():
            source = variable.source
            kind = type(source).__name__.removesuffix("Source").lower()
            where = (
                getattr(source, "topic", None)
                or getattr(source, "url", None)
                or (f"{getattr(source, 'service', '')}{getattr(source, 'path', '')}")
            )
            lines.append(f"  {name:<20} {kind} {where}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    from hems_rules.ruleset.compiler import load_rules

    try:
        rules = load_rules(args.directory)
    except HemsError as err:
        print(err, file=sys.stderr)
        return 1
    print(_summary(rules))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    """Exit 0 when every expectation holds, 1 when one fails, 2 for a wrong scenario."""
    from hems_rules.simulate.scenario import decision_line, load_scenario, run_scenario

    try:
        scenario = load_scenario(args.scenario, args.rules)
    except HemsError as err:
        print(err, file=sys.stderr)
        return 2

    def show(at: float, decision: Decision) -> None:
        print(decision_line(at, decision), flush=False)

    try:
        outcome = run_scenario(scenario, show)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("simulate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`| head`): stop quietly, as other command-line tools do, and
        # keep Python from failing again on flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    for failure in outcome.failures:
        print(printable(f"FAILED {Path(args.scenario).name}: {failure}"), file=sys.stderr)
    return 0 if outcome.passed else 1


def _replay(args: argparse.Namespace) -> int:
    import json
    import sqlite3  # only replay needs SQLite, which a GX's Python may lack

    from hems_rules.history.recording import STEP, day_bounds
    from hems_rules.history.store import HistoryStore
    from hems_rules.ruleset.compiler import load_rules
    from hems_rules.simulate.replay import ReplayError, replay, report

    rules_dir: Path = args.rules or (GX_RULES if GX_RULES.is_dir() else examples())
    try:
        rules = load_rules(rules_dir)
    except HemsError as err:
        print(err, file=sys.stderr)
        return 2
    store = HistoryStore(args.history)
    try:
        store.open(create=False)
        days = store.days()
        day: date | None = args.day or (days[-1] if days else None)
        if day is None:
            print(f"{store.file}: nothing recorded yet", file=sys.stderr)
            return 1
        recording = store.read(*day_bounds(day), STEP)
    except sqlite3.Error as err:
        print(f"{store.file}: cannot read the history: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    try:
        comparison = replay(recording, rules)
    except ReplayError as err:
        known = ", ".join(str(d) for d in days[-7:]) or "none"
        print(f"{err} (recorded days: {known})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(comparison.as_json(), indent=2))
    else:
        print(report(comparison, str(rules_dir)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from hems_rules.demo.demo import run_demo

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        demo = run_demo(
            args.rules or examples(),
            args.speed,
            args.duration,
            bus_address=args.bus,
            meter_lag=args.meter_lag,
            history=None if args.no_history else args.history,
            port=None if args.no_page else args.port,
        )
        return asyncio.run(demo)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM, SIGHUP (run_demo)
        return 0
    except HemsError as err:
        print(err, file=sys.stderr)
        return 1


def examples() -> Path:
    """The example rules the package carries (what `demo` runs without --rules)."""
    return Path(__file__).with_name("examples")


def _setup_logging(directory: Path | None, verbose: bool = False) -> None:
    """stderr for multilog, plus rotated info and debug files when a directory is given."""
    import logging
    import logging.handlers

    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        logging.getLogger(__name__).warning("no log files: %s", err)
        return
    for name, level, size in (
        ("info.log", logging.INFO, 1_000_000),
        ("debug.log", logging.DEBUG, 2_000_000),
    ):
        handler = logging.handlers.RotatingFileHandler(
            directory / name, maxBytes=size, backupCount=3
        )
        handler.setLevel(level)
        handler.setFormatter(fmt)
        root.addHandler(handler)


class _StoppedBeforeTheLoop(BaseException):
    """SIGTERM or SIGINT before the event loop handles them (not an Exception: no
    `except Exception` on the way may take it for a failure)."""


def _stop_before_the_loop(signum: int, frame: object) -> None:
    raise _StoppedBeforeTheLoop


def _run(args: argparse.Namespace) -> int:
    """0 after SIGTERM/SIGINT, 1 when the rules or a component fail.

    The event loop handles the signals while it runs (app.py). Before it (imports and
    the rules load take seconds on a GX) a stop ends start-up with 0 and a reload has
    nothing to reload yet; after it (run_app ignores them then) there is nothing left
    to stop or reload. Left to their default actions, SIGTERM, SIGINT and even
    `svc -h` would kill the process.
    """
    import signal

    signal.signal(signal.SIGTERM, _stop_before_the_loop)
    signal.signal(signal.SIGINT, _stop_before_the_loop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return _start_and_run(args)
    except _StoppedBeforeTheLoop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return 0


def _start_and_run(args: argparse.Namespace) -> int:
    import logging

    from hems_rules import tls
    from hems_rules.ruleset.compiler import load_rules, signature

    _setup_logging(args.log_dir, args.verbose)
    log = logging.getLogger(__name__)
    # Taken before the load: the watcher starts seconds later, and reloads a save made
    # in between.
    seen = signature(args.rules)
    try:
        rules = load_rules(args.rules)
    except Exception as err:  # whatever the loader raised, nothing may run on it
        log.error("the rules cannot be used, nothing runs:\n%s", err)
        return 1
    # Decided before asyncio is imported, which would load OpenSSL (tls.py).
    needs = tls.needed_by(rules)
    if needs is not None:
        log.info("TLS loaded for %s", needs)
    elif tls.leave_out():
        log.info("TLS left out: no rule needs it")

    import asyncio

    from hems_rules.app import AppOptions, run_app

    options = AppOptions(
        rules_dir=args.rules,
        bus_address=args.bus,
        poll_interval=args.poll,
        day_state=args.day_state,
        rules_seen=seen,
    )
    return asyncio.run(run_app(options, rules))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hems-rules", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the appliance on the bus")
    run.add_argument("--rules", type=Path, default=GX_RULES)
    run.add_argument("--bus", help="D-Bus address (default: the system bus)")
    run.add_argument("--log-dir", type=Path, default=Path("/data/log/hems-rules"))
    run.add_argument("--poll", type=parse_duration, default=5.0, help="Shelly status polling")
    run.add_argument(
        "--day-state",
        type=Path,
        default=Path("/data/hems-rules/day-state.json"),
        help="where today's runtime and starts are kept across restarts",
    )
    run.add_argument("--verbose", action="store_true", help="debug output on stderr")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a rules directory, like nginx -t")
    check.add_argument("directory", type=Path)
    check.set_defaults(handler=_check)

    simulate = commands.add_parser("simulate", help="run a scenario in virtual time")
    simulate.add_argument("scenario", type=Path)
    simulate.add_argument("--rules", type=Path, help="rules directory instead of inline rules")
    simulate.set_defaults(handler=_simulate)

    replay_ = commands.add_parser(
        "replay", help="a recorded day again with other rules, beside what happened"
    )
    replay_.add_argument("history", type=Path, help="the history directory (or its history.db)")
    replay_.add_argument("--day", type=date.fromisoformat, help="YYYY-MM-DD (default: the last)")
    replay_.add_argument(
        "--rules", type=Path, help=f"the what-if rules (default: {GX_RULES}, else the examples)"
    )
    replay_.add_argument("--json", action="store_true", help="the figures as JSON")
    replay_.set_defaults(handler=_replay)

    demo = commands.add_parser("demo", help="the appliance on an accelerated solar day")
    demo.add_argument("--rules", type=Path, help="rules directory (default: the examples)")
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    demo.add_argument("--bus", help="D-Bus address (default: a private dbus-daemon)")
    demo.add_argument("--duration", type=parse_duration, help="stop after this long (e.g. 60s)")
    demo.add_argument(
        "--meter-lag",
        type=parse_duration,
        default=1.5,
        help="how late the simulated GX's meter shows a switched relay (simulated time)",
    )
    demo.add_argument(
        "--history", type=Path, default=Path("demo-history"), help="where the demo records its day"
    )
    demo.add_argument("--port", type=int, default=8089, help="the status page (0: any free port)")
    demo.add_argument("--no-history", action="store_true", help="record nothing")
    demo.add_argument("--no-page", action="store_true", help="serve no status page")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
