"""Scenario files: a simulated shift scripted in TOML, validated with clear errors.

A scenario sets the scene (start time, battery, storage, clock error, GNSS route),
overrides device configuration, and lists timed events::

    [scenario]
    name = "patrol"
    start = 2026-11-29T08:30:00+08:00
    duration = "10m"

    [config.recording]          # any device.toml table
    segment_seconds = 60

    [[event]]
    at = "1:05"                 # seconds, "m:ss", "h:mm:ss", or "90s" / "5m" / "1h"
    action = "press"            # press, long_press, hold, fault, recover, dock, undock,
    button = "record"           # power_cut, switch_off

    [[event]]                   # the power goes: the device process is killed (SIGKILL)
    at = "4:00"                 # and boots again on the same files ``off`` later
    action = "power_cut"
    off = "10s"                 # optional, 10 s by default

    [[event]]                   # a power cut at a random moment of a window, drawn
    action = "power_cut"        # from the scenario's seed (same seed, same moment)
    between = ["5:00", "6:00"]

    [[event]]                   # the officer switches the recorder off between visits:
    at = "20:00"                # a clean shutdown, and on again ``off`` later (virtual
    action = "switch_off"       # time skips the off time: nothing runs)
    off = "45m"

A docking can go wrong on purpose: ``fault`` is ``undock_mid_transfer`` (the officer lifts
the recorder out once ``after_mb`` have crossed; the rest goes at the next docking),
or ``dock_crash`` (the dock dies after storing its first file past that point, before the
receipt, and comes back on the same archive)::

    [[event]]
    at = "9:00"
    action = "dock"
    fault = "dock_crash"
    after_mb = 2

Fault kinds: camera_stopped, camera_garbage, microphone_stopped, microphone_silent,
gnss_lost (with ``duration``), gnss_garbage, storage_full, storage_fill (``mb``),
battery_drain (``percent``), clock_jump (``seconds``).

No other event may fall inside a power cut (from the cut until the power is back), and the
power must be back before the scenario ends. ``simulator.harness.run.run_scenario`` (and
``bodycam simulate``) runs a scenario with power cuts; see ``simulator.harness.powercut``.
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from device.inputs import Button

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

ACTIONS = ("press", "long_press", "hold", "fault", "recover", "dock", "undock", "power_cut",
           "switch_off")
# Both take the device away for ``off``: a power cut kills it, a switch-off shuts it down.
POWER_OFF_ACTIONS = ("power_cut", "switch_off")
# What can go wrong while docked, once ``after_mb`` have crossed (simulator.harness.dock does it).
DOCK_FAULTS = ("undock_mid_transfer", "dock_crash")
POWER_OFF_DEFAULT_S = 10.0
FAULTS = ("camera_stopped", "camera_garbage", "microphone_stopped", "microphone_silent",
          "gnss_lost", "gnss_garbage", "storage_full", "storage_fill", "battery_drain",
          "clock_jump")
RECOVERABLE = ("camera", "microphone", "gnss")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file and the place."""


@dataclass(frozen=True)
class ScenarioEvent:
    at: float
    action: str
    button: Button | None = None
    seconds: float = 0.0  # hold time, fault duration, clock jump
    fault: str = ""
    part: str = ""
    amount: float = 0.0  # percent (battery_drain) or MB (storage_fill)
    window: tuple[float, float] | None = None  # power_cut: ``at`` was drawn from this window

    def describe(self) -> str:
        if self.action in ("press", "long_press"):
            return f"{self.action.replace('_', ' ')} {self.button}"
        if self.action == "hold":
            return f"hold {self.button} for {self.seconds:g} s"
        if self.action == "fault":
            extra = {"gnss_lost": f" for {self.seconds:g} s", "clock_jump": f" by {self.seconds:+g} s",
                     "battery_drain": f" by {self.amount:g} %", "storage_fill": f" by {self.amount:g} MB"}
            return f"fault {self.fault}{extra.get(self.fault, '')}"
        if self.action == "recover":
            return f"recover {self.part}"
        if self.action == "power_cut":
            drawn = (f" (random moment in {self.window[0]:g}-{self.window[1]:g} s)"
                     if self.window else "")
            return f"power cut for {self.seconds:g} s{drawn}"
        if self.action == "switch_off":
            return f"switched off for {self.seconds:g} s"
        if self.action == "dock" and self.fault:
            return f"dock, then {self.fault.replace('_', ' ')} after {self.amount:g} MB"
        return self.action


@dataclass(frozen=True)
class Waypoint:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    start_utc: float
    duration_s: float
    seed: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    battery_percent: float = 90.0
    battery_capacity_wh: float = 18.5
    storage_quota_mb: float = 32_000.0
    clock_error_s: float = 0.0
    clock_drift_ppm: float = 0.0
    gnss_ttff_s: float = 5.0
    gnss_satellites: int = 9
    route: tuple[Waypoint, ...] = (Waypoint(33.8686, 113.0534),)
    speed_mps: float = 1.4
    docked_at_start: bool = False
    events: tuple[ScenarioEvent, ...] = ()
    source: str = ""


_DURATION = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_UNIT = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)$")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from 90, 90.5, "90s", "5m", "1h", "1:30" or "1:02:03"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ScenarioError(f"{where}: {value!r} is negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if m := _DURATION.match(text):
            hours, minutes, seconds = m.group(1), m.group(2), m.group(3)
            return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
        if m := _UNIT.match(text):
            scale = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
            return float(m.group(1)) * scale
        try:
            return parse_duration(float(text), where)
        except ValueError:
            pass
    raise ScenarioError(f"{where}: {value!r} is not a time (use seconds, \"m:ss\", "
                        "\"h:mm:ss\", or \"90s\"/\"5m\"/\"1h\")")


def _take(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
          default: Any = None, lo: float | None = None, hi: float | None = None) -> Any:
    if key not in table:
        if default is None:
            raise ScenarioError(f"{where}: missing key {key!r}")
        return default
    value = table.pop(key)
    if kind in (float, (int, float)) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ScenarioError(f"{where}.{key}: {value!r} has the wrong type")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ScenarioError(f"{where}.{key}: {value!r} is out of range {lo} to {hi}")
    return value


def _no_extra(table: dict[str, Any], where: str) -> None:
    if table:
        raise ScenarioError(f"{where}: unknown key {next(iter(table))!r}")


def _event(raw: Any, where: str, rng: random.Random) -> ScenarioEvent:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table")
    t = dict(raw)
    drawn = raw.get("action") in POWER_OFF_ACTIONS and "between" in t
    if "at" not in t and not drawn:
        _missing(where, "at")
    if "at" in t and drawn:
        raise ScenarioError(f"{where}: give either at or between, not both")
    at = parse_duration(t.pop("at"), f"{where}.at") if "at" in t else 0.0
    action = _take(t, "action", str, where)
    if action not in ACTIONS:
        raise ScenarioError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    event: ScenarioEvent
    if action in ("press", "long_press", "hold"):
        name = _take(t, "button", str, where)
        try:
            button = Button(name)
        except ValueError:
            raise ScenarioError(f"{where}.button: {name!r} is not one of "
                                f"{', '.join(b.value for b in Button)}") from None
        seconds = 0.0
        if action == "hold":
            if "seconds" not in t:
                _missing(where, "seconds")
            seconds = parse_duration(t.pop("seconds"), f"{where}.seconds")
        if action == "hold" and seconds <= 0:
            raise ScenarioError(f"{where}.seconds: a hold needs a positive time")
        event = ScenarioEvent(at, action, button=button, seconds=seconds)
    elif action == "fault":
        kind = _take(t, "kind", str, where)
        if kind not in FAULTS:
            raise ScenarioError(f"{where}.kind: {kind!r} is not one of {', '.join(FAULTS)}")
        seconds = amount = 0.0
        if kind == "gnss_lost":
            seconds = parse_duration(t.pop("duration", 60), f"{where}.duration")
        elif kind == "clock_jump":
            seconds = _take(t, "seconds", (int, float), where, lo=-86400 * 365, hi=86400 * 365)
        elif kind == "battery_drain":
            amount = _take(t, "percent", (int, float), where, lo=0, hi=100)
        elif kind == "storage_fill":
            amount = _take(t, "mb", (int, float), where, lo=0, hi=10_000_000)
        event = ScenarioEvent(at, action, fault=kind, seconds=float(seconds), amount=float(amount))
    elif action == "recover":
        part = _take(t, "part", str, where)
        if part not in RECOVERABLE:
            raise ScenarioError(f"{where}.part: {part!r} is not one of {', '.join(RECOVERABLE)}")
        event = ScenarioEvent(at, action, part=part)
    elif action in POWER_OFF_ACTIONS:
        event = _power_cut(t, at, where, rng, action)
    elif action == "dock" and "fault" in t:
        kind = _take(t, "fault", str, where)
        if kind not in DOCK_FAULTS:
            raise ScenarioError(f"{where}.fault: {kind!r} is not one of {', '.join(DOCK_FAULTS)}")
        after = _take(t, "after_mb", (int, float), where, lo=0, hi=10_000_000) \
            if "after_mb" in t else 1.0
        event = ScenarioEvent(at, action, fault=kind, amount=float(after))
    else:
        event = ScenarioEvent(at, action)
    _no_extra(t, where)
    return event


def _power_cut(t: dict[str, Any], at: float, where: str, rng: random.Random,
               action: str = "power_cut") -> ScenarioEvent:
    """``off`` (how long the power stays away) and, instead of ``at``, ``between``: a window
    the moment is drawn from, uniformly, with ``rng`` (seeded by the scenario's seed)."""
    off = parse_duration(t.pop("off", POWER_OFF_DEFAULT_S), f"{where}.off")
    if off <= 0:
        raise ScenarioError(f"{where}.off: the power must stay off for a positive time")
    window = None
    if "between" in t:
        raw = t.pop("between")
        if not isinstance(raw, list) or len(raw) != 2:
            raise ScenarioError(f"{where}.between: {raw!r} is not [from, to]")
        lo, hi = (parse_duration(v, f"{where}.between") for v in raw)
        if not 0 < lo < hi:
            raise ScenarioError(f"{where}.between: {raw!r} needs 0 < from < to")
        window = (lo, hi)
        at = rng.uniform(lo, hi)
    if at <= 0:
        raise ScenarioError(f"{where}.at: a {action.replace('_', ' ')} needs the device on "
                            "(after 0 s)")
    return ScenarioEvent(at, action, seconds=off, window=window)


def _check_power_cuts(events: tuple[ScenarioEvent, ...], duration: float, source: str) -> None:
    """The device is off during a cut: nothing else may happen to it, and it comes back."""
    for cut in (e for e in events if e.action in POWER_OFF_ACTIONS):
        back = cut.at + cut.seconds
        if back > duration:
            raise ScenarioError(f"{source}: power cut at {cut.at:g} s: the power is back at "
                                f"{back:g} s, after the end ({duration:g} s)")
        for other in events:
            if other is not cut and cut.at <= other.at < back:
                raise ScenarioError(f"{source}: event at {other.at:g} s ({other.describe()}) "
                                    f"falls in the power cut from {cut.at:g} s to {back:g} s")


def _missing(where: str, key: str) -> Any:
    raise ScenarioError(f"{where}: missing key {key!r}")


def _start_utc(value: Any, where: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ScenarioError(f"{where}: {value} needs a UTC offset (e.g. +08:00 or Z)")
        return value.timestamp()
    if isinstance(value, str):
        try:
            return _start_utc(datetime.fromisoformat(value), where)
        except ValueError:
            pass
    raise ScenarioError(f"{where}: {value!r} is not a date-time with offset")


def parse(data: dict[str, Any], source: str) -> Scenario:
    data = dict(data)
    head = dict(data.pop("scenario", None) or _missing(source, "[scenario]"))
    where = f"{source}: [scenario]"
    name = _take(head, "name", str, where)
    description = _take(head, "description", str, where, default="")
    start = _start_utc(head.pop("start", datetime(2026, 11, 29, 0, 30, tzinfo=timezone.utc)),
                       f"{where}.start")
    duration = parse_duration(head.pop("duration", None) or _missing(where, "duration"),
                              f"{where}.duration")
    if duration <= 0 or duration > 48 * 3600:
        raise ScenarioError(f"{where}.duration: {duration:g} s is out of range (0 to 48 h)")
    seed = _take(head, "seed", int, where, default=1)
    docked = _take(head, "docked_at_start", bool, where, default=False)
    _no_extra(head, where)

    config = data.pop("config", {})
    if not isinstance(config, dict):
        raise ScenarioError(f"{source}: [config] must be a table of device.toml tables")

    battery = dict(data.pop("battery", {}))
    w = f"{source}: [battery]"
    battery_percent = _take(battery, "start_percent", (int, float), w, 90.0, 0, 100)
    capacity = _take(battery, "capacity_wh", (int, float), w, 18.5, 0.1, 500)
    _no_extra(battery, w)

    storage = dict(data.pop("storage", {}))
    w = f"{source}: [storage]"
    quota = _take(storage, "quota_mb", (int, float), w, 32_000.0, 1, 10_000_000)
    _no_extra(storage, w)

    clock = dict(data.pop("clock", {}))
    w = f"{source}: [clock]"
    error = _take(clock, "initial_error_s", (int, float), w, 0.0, -86400 * 3650, 86400 * 3650)
    drift = _take(clock, "drift_ppm", (int, float), w, 0.0, -10_000, 10_000)
    _no_extra(clock, w)

    gnss = dict(data.pop("gnss", {}))
    w = f"{source}: [gnss]"
    ttff = parse_duration(gnss.pop("time_to_first_fix", 5.0), f"{w}.time_to_first_fix")
    satellites = _take(gnss, "satellites", int, w, 9, 0, 64)
    _no_extra(gnss, w)

    route_table = dict(data.pop("route", {}))
    w = f"{source}: [route]"
    speed = _take(route_table, "speed_mps", (int, float), w, 1.4, 0, 100)
    points = route_table.pop("waypoints", [[33.8686, 113.0534]])
    _no_extra(route_table, w)
    route = []
    for i, point in enumerate(points if isinstance(points, list) else [None]):
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
                or not -90 <= point[0] <= 90 or not -180 <= point[1] <= 180):
            raise ScenarioError(f"{w}.waypoints[{i}]: {point!r} is not [latitude, longitude]")
        route.append(Waypoint(float(point[0]), float(point[1])))
    if not route:
        raise ScenarioError(f"{w}.waypoints: needs at least one point")

    raw_events = data.pop("event", [])
    if not isinstance(raw_events, list):
        raise ScenarioError(f"{source}: event must be an array of tables ([[event]])")
    # Each event draws from its own stream, so adding an event leaves the others' moments.
    events = tuple(sorted((_event(e, f"{source}: event {i + 1}", random.Random(f"{seed}/{i}"))
                           for i, e in enumerate(raw_events)), key=lambda e: e.at))
    for e in events:
        if e.at > duration:
            raise ScenarioError(f"{source}: event at {e.at:g} s is after the end ({duration:g} s)")
    _check_power_cuts(events, duration, source)
    _no_extra(data, source)
    return Scenario(name, description, start, duration, seed, config, float(battery_percent),
                    float(capacity), float(quota), float(error), float(drift), ttff, satellites,
                    tuple(route), float(speed), docked, events, source)


def shipped() -> list[str]:
    """The names of the scenarios shipped in ``scenarios/``."""
    return sorted(s.stem for s in SCENARIO_DIR.glob("*.toml"))


def load(path: str | Path) -> Scenario:
    """Load a scenario by path, or by the name of a shipped one (``patrol``).

    A shipped name wins unless the argument is an existing file or ends in ``.toml``, so a
    folder of the same name (``simulate cold-start --out cold-start``) does not shadow it.
    """
    p = Path(path)
    if not p.is_file() and p.suffix != ".toml" and str(path) in shipped():
        p = SCENARIO_DIR / f"{path}.toml"
    if p.is_dir():
        raise ScenarioError(f"{path}: is a directory, not a scenario file (shipped: "
                            f"{', '.join(shipped())})")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file (shipped: "
                            f"{', '.join(shipped())})") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{p}: not a text file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read it: {exc.strerror}") from None
    return parse(data, str(p))


# What a running recorder can be told from outside (``bodycam run``'s keyboard and control
# socket): the officer's buttons, the dock, faults and recovery. Power cuts and docking
# faults belong to scripted runs.
LIVE_ACTIONS = ("press", "long_press", "hold", "fault", "recover", "dock", "undock")


def live_event(raw: Any, where: str = "command") -> ScenarioEvent:
    """One event for a running simulation, checked as a scenario's ``[[event]]`` table is
    (without ``at``: it happens now). Raises ``ScenarioError`` naming what is wrong."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table")
    if "at" in raw:
        raise ScenarioError(f"{where}: a live event has no 'at': it happens now")
    action = raw.get("action")
    if action not in LIVE_ACTIONS:
        raise ScenarioError(f"{where}.action: {action!r} is not one of {', '.join(LIVE_ACTIONS)}")
    if action == "dock" and "fault" in raw:
        raise ScenarioError(f"{where}: docking faults are for scripted runs")
    return _event({**raw, "at": 0}, where, random.Random(0))
