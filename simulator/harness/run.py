"""Run a scenario to its end, in this process or, with power cuts, across processes.

``run_scenario`` sits above both ways of running: ``runner.Simulation`` (one stretch, in
this process) and ``powercut.run_with_power_cuts`` (each stretch up to a ``power_cut`` in a
child process killed there), so neither of those imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from firmware_py.config import Config
from simulator.harness.powercut import run_with_power_cuts
from simulator.harness.runner import BuildDevice, Simulation, SimulationResult, TimelineEntry
from simulator.harness.scenario import Scenario


def run_scenario(scenario: Scenario, out: Path, config: Config | None = None,
                 on_entry: Callable[[TimelineEntry], None] | None = None, *,
                 build_device: BuildDevice, dock: Any = None) -> SimulationResult:
    """Run ``scenario`` to its end; with power cuts, through ``simulator.harness.powercut``.
    ``build_device`` assembles the recorder (the composition root's); ``dock`` is the
    simulated dock its dockings sync to (``simulator.harness.dock.SimulatedDock``)."""
    if any(e.action in ("power_cut", "switch_off") for e in scenario.events):
        return run_with_power_cuts(scenario, out, config, on_entry, build_device=build_device,
                                   dock=dock)
    return Simulation(scenario, out, config, on_entry, build_device=build_device,
                      dock=dock).run()
