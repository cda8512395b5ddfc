"""Power cuts in a simulated shift: the device's process really dies, and boots again.
The officer's switch-offs go the same way, without the killing.

A scenario's ``power_cut`` event ends the device the way pulling its battery does. Each
stretch of the shift that ends in a cut runs in a child process (multiprocessing, "spawn":
a fresh interpreter, nothing shared but the files), which at the cut's virtual moment
sends itself SIGKILL — no segment closed, no line logged, nothing flushed beyond what the
agent had already written. The parent then carries on at virtual time cut + off with a
new ``Simulation(..., restart=PowerOff(cut, cut + off))`` on the same directory:

- the device's own files as the cut left them — evidence and ``.device-state.json``, the
  audit log, keys, the speech cache — which the restarted agent must make sense of
  (``firmware_py.agent.startup``);
- the world's: the sysfs battery tree (its charge and dock; no draw while off, a dock
  charges it meanwhile), the storage directory and the world's state file
  (``simulator.harness.world.WORLD_STATE``: card ballast, RTC jumps, broken parts);
- the clock: virtual time runs on through the cut, and the RTC with it.

A ``switch_off`` event ends a stretch run in this process with a clean shutdown (the agent
closes its segment and logs ``shutdown``), and the next boots ``off`` later on the same
files: virtual time skips the off time, so an eight-hour shift with the recorder switched
off between visits costs only the time it is on.

The last stretch (after the last cut) runs in this process, so its ``SimulationResult``
is the one returned; the timeline of the stretches before is streamed back over a pipe
as it happens, so ``bodycam simulate`` prints it live.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from firmware_py.config import Config, load as load_config
from simulator.harness.world import PowerOff
from simulator.harness.runner import BuildDevice, Simulation, SimulationResult, TimelineEntry
from simulator.harness.scenario import Scenario, ScenarioEvent

log = logging.getLogger(__name__)

OnEntry = Callable[[TimelineEntry], None]


class PowerCutError(RuntimeError):
    """A stretch's process did not end as a power cut does (it failed, or was not killed)."""


@dataclass(frozen=True)
class Stretch:
    """What a child process runs: the scenario from ``restart`` (or the start) to its cut."""

    scenario: Scenario
    out: Path
    config: Config
    restart: PowerOff | None
    cut: ScenarioEvent


def run_with_power_cuts(scenario: Scenario, out: Path, config: Config | None = None,
                        on_entry: OnEntry | None = None, *, build_device: BuildDevice,
                        dock: Any = None) -> SimulationResult:
    """Run ``scenario``, killing the device at each ``power_cut`` and booting it again."""
    started = time.perf_counter()
    config = config or load_config(overrides=scenario.config,
                                   overrides_source=f"{scenario.source} [config]")
    timeline: list[TimelineEntry] = []
    cuts: list[dict[str, Any]] = []
    restart: PowerOff | None = None

    def collect(entry: TimelineEntry) -> None:
        timeline.append(entry)
        if on_entry is not None:
            on_entry(entry)

    for cut in (e for e in scenario.events if e.action in ("power_cut", "switch_off")):
        begins = restart.lost_at if restart else -1.0
        if cut.action == "switch_off":
            ended = switched_off_at(Stretch(scenario, Path(out), config, restart, cut),
                                    collect, build_device, dock)
        else:
            docks = any(e.action == "dock" and begins < e.at < cut.at for e in scenario.events)
            ended = run_stretch(Stretch(scenario, Path(out), config, restart, cut), collect,
                                build_device, dock if docks else None)
        if ended is not None:  # the battery died before the cut came: the shift is over
            return _merge(ended, timeline, cuts, started)
        restart = PowerOff(cut.at, cut.at + cut.seconds)
        cuts.append({"at": round(cut.at, 3), "off_s": cut.seconds, "kind": cut.action,
                     "back_at": round(restart.back_at, 3),
                     "window": list(cut.window) if cut.window else None})
    result = Simulation(scenario, out, config, collect, build_device=build_device, dock=dock,
                        restart=restart).run()
    return _merge(result, timeline, cuts, started)


def _merge(result: SimulationResult, timeline: list[TimelineEntry], cuts: list[dict[str, Any]],
           started: float) -> SimulationResult:
    """The last stretch's result with the whole shift's timeline, cuts and wall time."""
    result.timeline = list(timeline)
    result.power_cuts = cuts
    result.wall_seconds = time.perf_counter() - started
    return result


def switched_off_at(stretch: Stretch, on_entry: OnEntry, build_device: BuildDevice,
                    dock: Any = None) -> SimulationResult | None:
    """Run one stretch in this process until the officer switches the device off, and shut
    it down cleanly there. Returns None, or the result when the battery died first."""
    sim = Simulation(stretch.scenario, stretch.out, stretch.config, on_entry,
                     build_device=build_device, dock=dock, restart=stretch.restart)
    sim.start()
    sim.advance_to(stretch.cut.at + 1.0)  # the switch_off event ends the stretch
    result = sim.finish()
    return result if result.powered_off else None


def run_stretch(stretch: Stretch, on_entry: OnEntry, build_device: BuildDevice,
                dock: Any = None) -> SimulationResult | None:
    """Run one stretch in a child process until its power cut kills it.

    Returns None after the cut (the child died of SIGKILL, as planned), or the child's
    result when the stretch ended before its cut (the battery ran flat first). Raises
    ``PowerCutError`` when the child failed or exited any other way.
    """
    try:
        pickle.dumps((build_device, dock))
    except Exception as exc:
        raise PowerCutError(f"the device runs in a process of its own until its power cut, "
                            f"so its builder and dock must be picklable: {exc}") from None
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_device_process, args=(send, stretch, build_device, dock),
                              name=f"simulated-device-until-{stretch.cut.at:g}s", daemon=True)
    process.start()
    send.close()  # the child holds the only write end: its death is our end of file
    ended: SimulationResult | None = None
    failure = ""
    try:
        while True:
            try:
                kind, payload = receive.recv()
            except EOFError:
                break
            if kind == "entry":
                on_entry(payload)
            elif kind == "ended":
                ended = payload
            elif kind == "error":
                failure = payload
    finally:
        receive.close()
        process.join()
    if failure:
        raise PowerCutError(f"the simulated device failed before its power cut at "
                            f"{stretch.cut.at:g} s:\n{failure}")
    if ended is None and process.exitcode != -signal.SIGKILL:
        raise PowerCutError(f"the simulated device's process ended with {process.exitcode}, "
                            f"not killed at its power cut ({stretch.cut.at:g} s)")
    return ended


def _device_process(send: Connection, stretch: Stretch, build_device: BuildDevice,
                    dock: Any) -> None:
    """The child: the device runs until the power cut, which is SIGKILL to itself."""

    def entry(e: TimelineEntry) -> None:
        send.send(("entry", e))  # written to the pipe before the call returns

    def cut(sim: Simulation, event: ScenarioEvent) -> None:
        # The power is gone: no cleanup, no flush, no atexit, no finally blocks.
        os.kill(os.getpid(), signal.SIGKILL)

    try:
        sim = Simulation(stretch.scenario, stretch.out, stretch.config, entry,
                         build_device=build_device, dock=dock, restart=stretch.restart,
                         on_power_cut=cut)
        sim.start()
        sim.advance_to(stretch.cut.at + 1.0)  # the cut kills us on the way
        result = sim.finish()  # only when the battery died first
    except BaseException:
        send.send(("error", traceback.format_exc()))
        raise SystemExit(1)
    result.timeline = []  # every entry has been streamed already
    send.send(("ended", result))
