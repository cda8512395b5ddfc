"""The docking hook: the agent tells the dock sync when the device is docked and undocked."""

from __future__ import annotations

import pytest

from bodycam.wiring import Device
from firmware_py.agent.assembly import assemble
from firmware_py.evidence.audit import AuditLog
from firmware_py.agent.core import State
from firmware_py.paths import DeviceLayout
from simulator.harness import scenario as sc
from simulator.harness.runner import Simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15}}


class RecordingDocking:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def docked(self) -> None:
        self.calls.append("docked")
        if self.fail:
            raise ConnectionError("dock unreachable")

    def undocked(self) -> None:
        self.calls.append("undocked")


def simulation(tmp_path, docking: RecordingDocking) -> Simulation:
    s = sc.parse({"scenario": {"name": "dock", "duration": "40s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": FAST,
                  "event": [{"at": 10, "action": "dock"}, {"at": 20, "action": "undock"},
                            {"at": 30, "action": "dock"}]}, "test.toml")

    def build(config, hardware, root, find_dock):
        # The composition root's recorder, with the test's hook in place of the dock link.
        layout = DeviceLayout.from_config(root, config.device)
        audit = AuditLog(layout.audit_log, hardware.clock)
        return Device(assemble(config, hardware, audit, layout, docking=docking),
                      audit, layout, None)

    return Simulation(s, tmp_path, build_device=build)


@pytest.mark.req("R13.1")
def test_agent_calls_the_docking_hook(tmp_path):
    docking = RecordingDocking()
    sim = simulation(tmp_path, docking)
    sim.start()
    sim.advance_to(8)
    assert docking.calls == []
    sim.advance_to(15)
    assert docking.calls == ["docked"] and sim.agent.state is State.DOCKED
    sim.advance_to(25)
    assert docking.calls == ["docked", "undocked"]
    sim.advance_to(40)
    sim.finish()
    assert docking.calls == ["docked", "undocked", "docked"]


def test_a_failing_docking_hook_is_logged_and_the_agent_goes_on(tmp_path):
    docking = RecordingDocking(fail=True)
    sim = simulation(tmp_path, docking)
    logged: list[str] = []
    sim.agent.log_listeners.append(lambda kind, fields: logged.append(kind))
    sim.start()
    sim.advance_to(25)
    sim.finish()
    assert docking.calls == ["docked", "undocked"]
    assert "sync_error" in logged and "undocked" in logged
