"""Run a scenario: the real agent on the simulated recorder, frame by frame in virtual time.

Each step advances the virtual clock by one frame interval, applies the scenario events
that are due, lets every simulated part catch up (``SimWorld.tick``: GNSS sentences into
the pty, a camera frame encoded, audio captured, the battery drained) and then runs one
pass of the agent's loop. Everything the agent logs becomes a line of the timeline.

A scenario with ``power_cut`` events cannot run in one process: the device really dies at
each cut. ``run_scenario`` (``simulator.harness.run``) hands it to
``simulator.harness.powercut``, which runs each stretch up to a cut in a child process
killed there and the rest on the same files, restarted with
``Simulation(..., restart=PowerOff(...))``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from firmware_py.config import Config, load as load_config
from firmware_py.agent.core import State
from firmware_py.evidence.keys import ENROLLMENT, enroll, require_enrolled
from firmware_py.agent.selfcheck import SelfCheckReport
from simulator.harness.dock import Arrival
from simulator.harness.scenario import Scenario, ScenarioEvent
from simulator.harness.world import PowerOff, SimWorld, build_world

log = logging.getLogger(__name__)

SYNC_LIMIT_S = 600.0  # wall seconds a docking's sync may hold virtual time


class SimDevice(Protocol):
    """The recorder the composition root builds (``bodycam.wiring.Device``): its agent, its
    audit log, its docking hook (``link``, None without a dock) and ``close``."""

    agent: Any
    audit: Any
    link: Any

    def close(self) -> None: ...


# (config, hardware, device root, find_dock or None) -> the assembled recorder
BuildDevice = Callable[[Config, Any, Path, Callable[[], Any] | None], SimDevice]


@dataclass(frozen=True)
class TimelineEntry:
    t: float  # virtual seconds since the start
    local: str  # device clock, local time
    source: str  # "scenario" or "agent"
    kind: str
    fields: dict[str, Any]

    def line(self) -> str:
        h, rest = divmod(int(self.t), 3600)
        m, s = divmod(rest, 60)
        facts = " ".join(f"{k}={_short(v)}" for k, v in self.fields.items()
                         if k not in ("checks", "at", "files"))
        marker = {"scenario": ">>", "dock": "<>"}.get(self.source, "  ")
        return f"{marker} +{h:d}:{m:02d}:{s:02d}  {self.local[11:19]}  {self.kind:<20} {facts}".rstrip()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


@dataclass
class SimulationResult:
    scenario: Scenario
    out: Path
    timeline: list[TimelineEntry] = field(default_factory=list)
    reports: list[SelfCheckReport] = field(default_factory=list)
    wall_seconds: float = 0.0
    simulated_seconds: float = 0.0
    final_state: str = ""
    powered_off: bool = False
    recordings: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    gnss_stats: dict[str, Any] = field(default_factory=dict)
    # One per power cut: when it came, how long the power was off (only the last stretch's
    # reports, recordings, frames and GNSS figures are here: the others died with their
    # process).
    power_cuts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def speed(self) -> float:
        return self.simulated_seconds / self.wall_seconds if self.wall_seconds else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name, "source": self.scenario.source, "out": str(self.out),
            "simulated_seconds": round(self.simulated_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3), "speed": round(self.speed, 2),
            "final_state": self.final_state, "powered_off": self.powered_off,
            "frames": self.frames, "recordings": self.recordings, "gnss": self.gnss_stats,
            "power_cuts": self.power_cuts,
            "selfchecks": [r.to_json() for r in self.reports],
            "timeline": [{"t": round(e.t, 3), "local": e.local, "source": e.source,
                          "kind": e.kind, "fields": e.fields} for e in self.timeline],
        }


class Simulation:
    """One scenario run; ``run`` drives it to the end (or until the battery dies).

    ``restart`` continues a scenario after a power cut on the files the dead run left, from
    the moment the power is back; ``on_power_cut`` is what a ``power_cut`` event does (the
    harness in ``simulator.harness.powercut`` kills the process). Without it a power cut is
    refused: use ``run_scenario`` (``simulator.harness.run``). A device not yet enrolled is
    enrolled with the simulated agency in ``enroll_with`` (default ``OUT/dock``); with
    ``enroll_with=None`` nothing enrols it, and an unenrolled one is refused
    (``NotEnrolledError``).
    """

    def __init__(self, scenario: Scenario, out: Path, config: Config | None = None,
                 on_entry: Callable[[TimelineEntry], None] | None = None, *,
                 build_device: BuildDevice, dock: Any = None,
                 find_dock: Callable[[], Any] | None = None, device_root: Path | None = None,
                 enroll_with: Path | None = Path("dock"),
                 restart: PowerOff | None = None,
                 on_power_cut: Callable[["Simulation", ScenarioEvent], None] | None = None) -> None:
        self.scenario = scenario
        self.out = Path(out)
        self.config = config or load_config(overrides=scenario.config,
                                            overrides_source=f"{scenario.source} [config]")
        self.restart = restart
        self._on_power_cut = on_power_cut
        # The device's own files: OUT/device beside the simulated dock's OUT/dock, or the
        # root a recorder run by hand was given.
        self.device_root = Path(device_root) if device_root is not None else self.out / "device"
        device = self.config.device.device
        enrolled = (self.device_root / ENROLLMENT).exists()
        if enroll_with is None and not enrolled:
            require_enrolled(self.device_root, device.id)  # refused before anything is made
        self.world: SimWorld = build_world(self.config.device, scenario, self.device_root,
                                           restart)
        # ``enroll_with``: the simulated agency's dock directory (relative: under ``out``);
        # None: the device must already be enrolled (``bodycam run``).
        self.dock_dir = self.out / (enroll_with or "dock")
        if not enrolled and enroll_with is not None:
            # The simulated device is enrolled with a simulated agency beside it, as a real
            # one would be at its dock before its first shift.
            enroll(self.device_root, self.dock_dir, device.id, device.unit)
        # The recorder is built by the composition root, as on real hardware; with a dock
        # (``simulator.harness.dock.SimulatedDock``) its docking hook syncs there.
        # A real dock on the network (``find_dock``) is synced with in real time; the
        # simulated dock holds virtual time while a session runs.
        if dock is not None and find_dock is not None:
            raise ValueError("a simulation docks into the simulated dock or a real one, not both")
        self._dock = dock
        self.device = build_device(self.config, self.world.hardware, self.device_root,
                                   self._find_dock if dock is not None else find_dock)
        self.audit = self.device.audit
        self.agent = self.device.agent
        self.agent.log_listeners.append(self._agent_logged)
        if dock is not None:
            link = self.device.link
            link.on_session.append(
                lambda session: dock.session_started(session, lambda: link.session is session))
        self.result = SimulationResult(scenario, self.out)
        self._on_entry = on_entry
        # After a power cut the scenario goes on with what came after the cut (nothing falls
        # inside a cut: the scenario parser sees to that).
        self._events = [e for e in scenario.events if restart is None or e.at > restart.lost_at]
        self.switched_off = False  # a switch_off event came: the officer turned it off
        self.docking: ScenarioEvent | None = None  # the latest dock event
        self._started = time.perf_counter()

    def _find_dock(self) -> Any:
        """The recorder's docking hook looks for its dock: there is one while the device
        sits in the cradle (on the link's thread, while virtual time waits)."""
        if self._dock is None or not self.world.battery.docked:
            return None
        device = self.config.device.device
        return self._dock.reach(Arrival(device.id, device.unit, self.device_root,
                                        self.dock_dir, self.docking, self.world.wall.true_utc))

    def _hold_for_sync(self) -> None:
        """A cradle holds the device while its sync session runs: virtual time waits."""
        link = self.device.link
        before = len(link.results)
        if not link.wait(SYNC_LIMIT_S):
            raise RuntimeError(f"a docking's sync did not end within {SYNC_LIMIT_S:g} s")
        result = link.results[before] if len(link.results) > before else None
        self._entry("dock", "synced", self._dock.session_ended(result))

    def _entry(self, source: str, kind: str, fields: dict[str, Any]) -> None:
        entry = TimelineEntry(self.world.clock.now, self.world.hardware.clock.now().isoformat(),
                              source, kind, fields)
        self.result.timeline.append(entry)
        if self._on_entry is not None:
            self._on_entry(entry)

    def _agent_logged(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "recording_stopped":  # what the pipeline said of each recording it ended
            self.result.recordings.append(fields)
        if kind != "button":  # the scenario line already says what was pressed
            self._entry("agent", kind, fields)

    def _apply(self, event: ScenarioEvent) -> None:
        w = self.world
        self._entry("scenario", event.describe(), {})
        long_press = self.config.device.buttons.long_press_s
        match event.action:
            case "press":
                w.hold(event.button, 0.2)
            case "long_press":
                w.hold(event.button, long_press + 0.3)
            case "hold":
                w.hold(event.button, event.seconds)
            case "dock":
                w.battery.dock()
                self.docking = event  # the simulated dock reads the docking's fault here
            case "undock":
                w.battery.undock()
            case "recover":
                {"camera": w.camera.recover, "microphone": w.microphone.recover,
                 "gnss": w.gnss.regain_fix}[event.part]()
            case "fault":
                self._fault(event)
            case "switch_off":
                # The officer's switch: the stretch ends here, and run_scenario shuts the
                # device down cleanly (``finish``) and boots it again ``off`` later.
                self.switched_off = True
            case "power_cut":
                if self._on_power_cut is None:
                    raise RuntimeError(
                        "a power_cut needs the device in a process of its own: "
                        "run the scenario with simulator.harness.run.run_scenario")
                self._on_power_cut(self, event)
        w.save_state()  # faults, ballast and clock jumps outlive a power cut

    def apply(self, event: ScenarioEvent) -> None:
        """Do ``event`` now, whatever its ``at`` (a button or a docking from the officer at
        the keyboard or the control socket of ``bodycam run``)."""
        if event.action in ("power_cut", "switch_off"):
            raise ValueError(f"{event.action} cannot be done to a running recorder: stop it")
        self._apply(event)

    def _fault(self, event: ScenarioEvent) -> None:
        w = self.world
        match event.fault:
            case "camera_stopped":
                w.camera.fail("stopped")
            case "camera_garbage":
                w.camera.fail("garbage")
            case "microphone_stopped":
                w.microphone.fail("stopped")
            case "microphone_silent":
                w.microphone.fail("silent")
            case "gnss_lost":
                w.gnss.lose_fix(until=w.clock.now + event.seconds)
            case "gnss_garbage":
                w.gnss.send_raw(b"$GPGGA,garbage*00\r\n\xff\xfe nonsense\r\n$GNRMC,1,2,3\r\n")
            case "storage_full":
                w.storage.fill_to(0)
            case "storage_fill":
                w.storage.fill(int(event.amount * 1e6))
            case "battery_drain":
                w.battery.drain(event.amount)
            case "clock_jump":
                w.wall.jump(event.seconds)

    def load_w(self) -> float:
        power = self.config.device.power
        state = self.agent.state
        if state is State.RECORDING:
            return power.recording_w
        if state is State.DOCKED:
            return 0.5
        return power.idle_w

    def start(self) -> None:
        """Power the device on: the agent boots at virtual time 0, or when the power is back."""
        self._started = time.perf_counter()
        self.world.tick()
        if self.restart is not None:
            self._entry("scenario", f"power back after {self.restart.off_s:g} s", {})
        self.agent.start()

    def advance_to(self, t: float) -> bool:
        """Run frame by frame until virtual time ``t``; False once the device is off."""
        w = self.world
        dt = 1.0 / self.config.device.video.fps
        while w.clock.now + dt / 2 < t and not self.result.powered_off and not self.switched_off:
            w.clock.advance(dt)
            while self._events and self._events[0].at <= w.clock.now:
                self._apply(self._events.pop(0))
            w.load_w = self.load_w()
            w.tick()
            if w.battery.dead:
                self._entry("scenario", "battery empty: device off", {})
                self.result.powered_off = True
                break
            self.agent.step()
            if self._dock is not None and self.device.link.busy:
                self._hold_for_sync()
        return not self.result.powered_off

    def finish(self) -> SimulationResult:
        """End the run: the agent shuts down (unless the battery died) and parts close."""
        w = self.world
        try:
            if not self.result.powered_off:
                self.device.close()
        finally:
            self.result.wall_seconds = time.perf_counter() - self._started
            self.result.simulated_seconds = w.clock.now
            self.result.final_state = str(self.agent.state)
            self.result.reports = list(self.agent.reports)
            tally = self.agent.pipeline
            self.result.frames = getattr(tally, "frames", 0)
            stats = w.hardware.gnss.stats
            self.result.gnss_stats = {"sentences": stats.sentences, "fixes": stats.fixes,
                                      "malformed": stats.malformed,
                                      "bad_checksum": stats.bad_checksum}
            if self.result.powered_off:
                self.audit.close()  # the agent died with the battery: nothing else to close
            w.close()
        return self.result

    def run(self) -> SimulationResult:
        self.start()
        try:
            self.advance_to(self.scenario.duration_s)
        finally:
            result = self.finish()
        return result


def print_entry(stream: TextIO) -> Callable[[TimelineEntry], None]:
    def show(entry: TimelineEntry) -> None:
        stream.write(entry.line() + "\n")
        if entry.kind == "selfcheck":
            stream.write(_indent(entry.fields) + "\n")
        stream.flush()
    return show


def _indent(report: dict[str, Any]) -> str:
    lines = []
    for c in report.get("checks", []):
        lines.append(f"{'':14}{c['status'].upper():4}  {c['name']:<10} {c['message']}")
    return "\n".join(lines)
