"""Scenario files: the shipped ones load; mistakes are named with file and place."""

from __future__ import annotations

import pytest

from device.inputs import Button
from simulator.harness import scenario as sc


@pytest.mark.parametrize("name", ["patrol", "cold-start", "faults", "obstruction"])
def test_shipped_scenarios_load(name):
    scenario = sc.load(name)
    assert scenario.name == name and scenario.duration_s > 0 and scenario.events
    assert [e.at for e in scenario.events] == sorted(e.at for e in scenario.events)


@pytest.mark.parametrize("text, seconds", [(90, 90.0), (1.5, 1.5), ("90s", 90.0), ("5m", 300.0),
                                           ("1h", 3600.0), ("1:30", 90.0), ("1:02:03", 3723.0),
                                           ("250ms", 0.25), ("12", 12.0)])
def test_durations(text, seconds):
    assert sc.parse_duration(text, "x") == seconds


def base(**extra) -> dict:
    data = {"scenario": {"name": "t", "duration": "1m"}}
    data.update(extra)
    return data


def test_event_fields_parsed():
    s = sc.parse(base(event=[{"at": "0:10", "action": "hold", "button": "marker", "seconds": 3},
                             {"at": 5, "action": "fault", "kind": "gnss_lost", "duration": "20s"},
                             {"at": 20, "action": "fault", "kind": "clock_jump", "seconds": -30}]),
                 "t.toml")
    assert [e.action for e in s.events] == ["fault", "hold", "fault"]
    assert s.events[0].seconds == 20.0 and s.events[1].button is Button.MARKER
    assert s.events[2].seconds == -30.0


@pytest.mark.parametrize("data, message", [
    ({"scenario": {"duration": "1m"}}, "missing key 'name'"),
    (base(event=[{"at": 5, "action": "jump"}]), "event 1.action: 'jump' is not one of"),
    (base(event=[{"at": 5, "action": "press", "button": "zoom"}]), "event 1.button: 'zoom'"),
    (base(event=[{"at": "soon", "action": "dock"}]), "event 1.at: 'soon' is not a time"),
    (base(event=[{"at": 120, "action": "dock"}]), "after the end"),
    (base(event=[{"action": "dock"}]), "event 1: missing key 'at'"),
    (base(event=[{"at": 1, "action": "dock", "colour": "red"}]), "unknown key 'colour'"),
    (base(event=[{"at": 1, "action": "fault", "kind": "meteor"}]), "'meteor' is not one of"),
    (base(event=[{"at": 1, "action": "hold", "button": "record"}]), "missing key 'seconds'"),
    (base(battery={"start_percent": 120}), "[battery].start_percent: 120.0 is out of range"),
    (base(route={"waypoints": [[95, 0]]}), "waypoints[0]: [95, 0] is not [latitude, longitude]"),
    (base(weather="rain"), "unknown key 'weather'"),
])
def test_mistakes_are_named(data, message):
    with pytest.raises(sc.ScenarioError) as info:
        sc.parse(data, "t.toml")
    assert message in str(info.value) and str(info.value).startswith("t.toml")


def test_unknown_scenario_lists_shipped_ones():
    with pytest.raises(sc.ScenarioError, match="shipped: cold-start, faults, obstruction, patrol"):
        sc.load("nonexistent")
