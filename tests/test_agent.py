"""The agent's edge as assembled: one handler per action the core can return."""

from __future__ import annotations

from typing import get_args

from bodycam.simulation import simulation
from firmware_py.agent.events import Action
from simulator.harness import scenario as sc


def test_every_action_has_a_handler(tmp_path):
    s = sc.parse({"scenario": {"name": "t", "duration": "5s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": {"video": {"width": 320, "height": 180, "fps": 15}}}, "t.toml")
    sim = simulation(s, tmp_path)  # the agent as the composition root assembles it
    try:
        assert set(sim.agent._handlers) == set(get_args(Action))
    finally:
        sim.finish()
