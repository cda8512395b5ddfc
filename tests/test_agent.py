"""The agent's edge as assembled: one handler per action the core can return."""

from __future__ import annotations

from typing import get_args

from firmware_py.agent.assembly import assemble
from firmware_py.agent.events import Action
from simulator import scenario as sc
from simulator.runner import Simulation


def test_every_action_has_a_handler(tmp_path):
    s = sc.parse({"scenario": {"name": "t", "duration": "5s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": {"video": {"width": 320, "height": 180, "fps": 15}}}, "t.toml")
    sim = Simulation(s, tmp_path)
    agent = assemble(sim.config, sim.world.hardware, sim.audit)
    assert set(agent._handlers) == set(get_args(Action))
    sim.finish()
