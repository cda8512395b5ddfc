"""The simulator's runs, wired by the composition root.

The harness in ``simulator.harness`` may not import this package, so it is handed
``build_device``: every simulated recorder is assembled exactly as a real one, docking hook
included, and a scenario's dockings reach the simulated dock through the same ``DockLink``
a recorder on a Pi uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bodycam.wiring import build_device
from firmware_py.config import Config
from simulator.harness.dock import SimulatedDock
from simulator.harness.run import run_scenario as run_harness
from simulator.harness.runner import Simulation, SimulationResult, TimelineEntry, print_entry
from simulator.harness.scenario import Scenario

__all__ = ["simulation", "run_scenario", "run_docked", "print_entry"]


def simulation(scenario: Scenario, out: Path, config: Config | None = None,
               on_entry: Callable[[TimelineEntry], None] | None = None,
               **kwargs: Any) -> Simulation:
    """One simulated recorder in ``scenario``, built by ``build_device``."""
    return Simulation(scenario, out, config, on_entry, build_device=build_device, **kwargs)


def run_scenario(scenario: Scenario, out: Path, config: Config | None = None,
                 on_entry: Callable[[TimelineEntry], None] | None = None,
                 dock: SimulatedDock | None = None) -> SimulationResult:
    """Run ``scenario`` to its end (power cuts in processes of their own)."""
    return run_harness(scenario, out, config, on_entry, dock=dock, build_device=build_device)


def run_docked(scenario: Scenario, out: Path, config: Config | None = None,
               on_entry: Callable[[TimelineEntry], None] | None = None
               ) -> tuple[SimulationResult, list[dict[str, Any]]]:
    """Run ``scenario`` with a simulated dock whose archive is ``out/archive``; the result
    and one summary per sync session."""
    dock = SimulatedDock(Path(out) / "archive")
    try:
        result = run_scenario(scenario, out, config, on_entry, dock=dock)
    finally:
        dock.close()
    return result, dock.sessions
