"""Whole shifts on the simulated recorder: the real agent, real backends where they run here.

Each test runs a scenario in virtual time and checks what the officer would see (the LEDs
on gpiozero's mock pins), what the agent wrote in its audit log, and what the command line
prints. A smaller picture keeps the suite quick; the pipeline is the same.
"""

from __future__ import annotations

import json

import pytest

from device.indicators import Output
from firmware_py.evidence import audit
from bodycam.cli import main
from firmware_py.agent.core import State
from simulator.harness import scenario as sc
from bodycam.simulation import simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15}}


def scenario(events, duration="2m", **tables):
    data = {"scenario": {"name": "test", "duration": duration,
                         "start": "2026-11-29T09:00:00+08:00"},
            "config": {**FAST, **tables.pop("config", {})}, "event": events}
    data.update(tables)
    return sc.parse(data, "test.toml")


def kinds(entries, kind):
    return [e for e in entries if e["kind"] == kind]


@pytest.mark.req("R7.4", "R8.1", "R9.2", "R11.1", "R11.2")
def test_shift_records_photographs_marks_and_docks(tmp_path):
    s = scenario([
        {"at": 20, "action": "press", "button": "record"},
        {"at": 30, "action": "press", "button": "photo"},
        {"at": 35, "action": "press", "button": "marker"},
        {"at": 40, "action": "long_press", "button": "marker"},
        {"at": 60, "action": "press", "button": "record"},
        {"at": 90, "action": "dock"},
    ], clock={"initial_error_s": 3.5}, gnss={"time_to_first_fix": 6})
    sim = simulation(s, tmp_path)
    leds = sim.world.buttons
    sim.start()
    sim.advance_to(5)
    assert sim.agent.state is State.READY
    assert leds.output_state(Output.LED_GREEN) is not None
    sim.advance_to(25)
    assert sim.agent.state is State.RECORDING
    assert leds.output_state(Output.LED_RED) is True  # R9.2: visible recording indicator
    assert leds.output_state(Output.LED_GREEN) is False
    sim.advance_to(95)
    assert sim.agent.state is State.DOCKED
    assert leds.output_state(Output.LED_BLUE) is True
    result = sim.finish()

    entries = audit.read(tmp_path / "device" / "audit.jsonl")  # chain intact
    boot_check = kinds(entries, "selfcheck")[0]["fields"]
    assert boot_check["reason"] == "boot" and boot_check["passed"] is True
    # The RTC was 3.5 s fast; GNSS time corrects it and the offset is logged (R7.4).
    correction = kinds(entries, "clock_corrected")[0]["fields"]
    assert correction["source"] == "gnss"
    assert correction["offset_before_s"] == pytest.approx(3.5, abs=0.15)
    first = kinds(entries, "selfcheck")[1]["fields"]
    assert first["reason"] == "first_recording"
    clock_check = next(c for c in first["checks"] if c["name"] == "clock")
    assert clock_check["status"] == "warn" and clock_check["values"]["corrected"] is True
    # One recording: 40 s after the press plus the pre-event buffer before it (the
    # device had been ready for 20 s, less than the 30 s buffer, all of it kept).
    started = kinds(entries, "recording_started")[0]["fields"]
    assert 20 <= started["pre_event_s"] <= 20.5  # recognised on release, 0.2 s later
    stopped = kinds(entries, "recording_stopped")[0]["fields"]
    assert stopped["duration_s"] == pytest.approx(40 + started["first_frame_age_s"], abs=0.1)
    assert stopped["frames"] == pytest.approx(stopped["duration_s"] * 15, abs=2)
    photo = kinds(entries, "photo")[0]["fields"]
    assert (photo["width"], photo["height"]) == (1280, 720) and photo["bytes"] > 10_000
    assert len(kinds(entries, "marker")) == 1 and len(kinds(entries, "incident_marker")) == 1
    assert kinds(entries, "docked")
    # Stamped with the device's corrected local time, in order.
    utc = [e["time"]["monotonic"] for e in entries]
    assert utc == sorted(utc)
    assert result.gnss_stats["malformed"] == 0 and result.gnss_stats["fixes"] > 80


@pytest.mark.req("R7.1")
def test_undocking_runs_the_self_check_again(tmp_path):
    s = scenario([{"at": 10, "action": "undock"}], duration="20s",
                 scenario={"name": "t", "duration": "20s", "docked_at_start": True})
    sim = simulation(s, tmp_path)
    sim.start()
    sim.advance_to(5)
    assert sim.agent.state is State.DOCKED
    sim.advance_to(20)
    sim.finish()
    reasons = [r.reason for r in sim.agent.reports]
    assert reasons == ["boot", "left_dock"]


@pytest.mark.req("R7.2", "R7.3", "R7.4", "R7.6")
def test_cold_start_fails_checks_but_never_blocks_recording(tmp_path):
    s = sc.load("cold-start")
    s = sc.parse({**_raw("cold-start"), "config": FAST}, s.source)
    result = simulation(s, tmp_path).run()
    boot = result.reports[0]
    failed = {c.name for c in boot.failed}
    assert {"battery", "storage"} <= failed
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    assert kinds(entries, "recording_started")  # recorded anyway
    correction = kinds(entries, "clock_corrected")[0]["fields"]
    # 47 s initial error plus 150 ppm over the ~40 s before the first fix.
    assert correction["offset_before_s"] == pytest.approx(47.0, abs=0.2)
    assert kinds(entries, "battery_low") == []  # 22 % is above the 15 % warning


@pytest.mark.req("R12.1", "R12.2")
def test_faults_are_logged_and_the_agent_keeps_going(tmp_path):
    s = sc.parse({**_raw("faults"), "config": {**FAST, "recording": {"segment_seconds": 30}}},
                 "faults.toml")
    result = simulation(s, tmp_path).run()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    assert kinds(entries, "gnss_lost") and kinds(entries, "gnss_fix")
    assert kinds(entries, "battery_low")[0]["fields"]["percent"] < 15
    assert kinds(entries, "storage_low")
    assert result.gnss_stats["malformed"] + result.gnss_stats["bad_checksum"] >= 2
    # The camera stall does not stop the recording (sound goes on): the gap in the picture
    # is an automatic interruption that closes when frames return; the officer's stops are
    # interruptions awaiting a reason.
    stops = [e["fields"]["reason"] for e in kinds(entries, "recording_stopped")]
    assert stops == ["stop", "stop"]
    closed = [e["fields"] for e in kinds(entries, "interruption_closed")]
    assert closed[0]["automatic"] and closed[0]["detail"].startswith("camera")
    assert closed[0]["closed_by"] == "resumed_by_device" and 10 <= closed[0]["off_s"] <= 11.1
    assert kinds(entries, "microphone_failed")[0]["fields"]["fault"] == "silent"
    assert kinds(entries, "microphone_recovered") and kinds(entries, "gnss_garbage")
    assert kinds(entries, "clock_jump")[0]["fields"]["jump_s"] == pytest.approx(-3600, abs=0.01)
    assert closed[1]["reason"] == "pending" and closed[1]["off_s"] == pytest.approx(60, abs=1)
    assert result.final_state == "ready"


def _raw(name):
    import tomllib
    return tomllib.loads((sc.SCENARIO_DIR / f"{name}.toml").read_text())


def test_cli_simulate_json(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("""
[scenario]
name = "short"
duration = "30s"
[config.video]
width = 320
height = 180
fps = 15
[[event]]
at = 5
action = "press"
button = "record"
""")
    assert main(["simulate", str(path), "--out", str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"] == "short" and data["simulated_seconds"] == pytest.approx(30, abs=0.1)
    assert [e["kind"] for e in data["timeline"]][:2] == ["boot", "state"]
    assert (tmp_path / "out" / "timeline.txt").read_text().count("recording_started") == 1
    assert json.loads((tmp_path / "out" / "simulation.json").read_text())["frames"] > 400


def test_cli_selfcheck_exit_codes(tmp_path, capsys):
    assert main(["selfcheck", "--hardware", "sim", "--out", str(tmp_path / "a")]) == 0
    assert "SELF-CHECK PASSED" in capsys.readouterr().out
    assert main(["selfcheck", "--hardware", "sim", "--scenario", "cold-start", "--json",
                 "--out", str(tmp_path / "b")]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert {c["name"] for c in report["checks"] if c["status"] == "fail"} >= {"battery", "storage"}


def test_bad_scenario_is_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[scenario]\nname = "x"\nduration = "1m"\n[[event]]\nat = 5\naction = "fly"\n')
    assert main(["simulate", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "event 1.action: 'fly'" in capsys.readouterr().err


def test_gnss_loss_and_recovery_are_logged(tmp_path):
    s = scenario([{"at": 10, "action": "fault", "kind": "gnss_lost", "duration": "10m"},
                  {"at": 40, "action": "recover", "part": "gnss"}], duration="50s")
    simulation(s, tmp_path).run()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    lost = kinds(entries, "gnss_lost")
    fixes = kinds(entries, "gnss_fix")
    assert len(lost) == 1 and 20 <= lost[0]["time"]["monotonic"] <= 22  # 10 s policy age
    assert len(fixes) == 2 and 40 <= fixes[1]["time"]["monotonic"] <= 42
