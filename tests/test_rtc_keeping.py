"""The RTC in whole simulated shifts (the agent's ``RtcKeeper`` on the simulated RTC):
checked at boot, written once GNSS has corrected the clock, a refused write in the audit
log and the self-check, and the holdover across a real power cut — the child process is
killed, and at the next boot the simulator sets the system clock from the RTC (hctosys)."""

from __future__ import annotations

import json

import pytest

from bodycam.simulation import run_scenario, simulation
from firmware_py.evidence import audit
from simulator.harness import scenario as sc

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"pre_event_seconds": 2}}
START = "2026-11-29T09:00:00+08:00"

pytestmark = pytest.mark.req("R7.4")


def scenario(events, duration="40s", **tables):
    data = {"scenario": {"name": "rtc", "duration": duration, "start": START},
            "config": FAST, "event": events,
            "clock": {"initial_error_s": -95.0}, "gnss": {"time_to_first_fix": 5}}
    data.update(tables)
    return sc.parse(data, "rtc.toml")


def fields(entries, kind):
    return [e["fields"] for e in entries if e["kind"] == kind]


def test_gnss_time_is_written_to_the_rtc_and_it_keeps_it(tmp_path):
    sim = simulation(scenario([]), tmp_path)
    sim.start()
    sim.advance_to(30)
    world = sim.world
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    (checked,) = fields(entries, "rtc_checked")  # at boot the RTC is the system clock's source
    assert checked["difference_s"] == pytest.approx(0.0, abs=1.0)
    (corrected,) = fields(entries, "clock_corrected")
    (written,) = fields(entries, "rtc_written")  # once: then not again within the hour
    assert written["source"] == "gnss"
    assert written["error_before_s"] == pytest.approx(-95.0, abs=1.0)
    assert [e["kind"] for e in entries].index("clock_corrected") < \
        [e["kind"] for e in entries].index("rtc_written")
    assert world.rtc.read().midpoint_utc == pytest.approx(world.wall.true_utc(), abs=1.0)
    state = json.loads((tmp_path / "device" / "rtc.json").read_text())
    assert state["source"] == "gnss" and state["utc"] == pytest.approx(world.wall.true_utc(), abs=30)
    sim.finish()


def test_an_rtc_that_cannot_be_written_is_logged_once_and_named_in_the_self_check(tmp_path):
    s = scenario([{"at": 20, "action": "press", "button": "record"}])
    sim = simulation(s, tmp_path)
    sim.world.rtc.write_error = "RTC_SET_TIME refused (EACCES): needs CAP_SYS_TIME"
    sim.start()
    sim.advance_to(35)
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    (failed,) = fields(entries, "rtc_write_failed")
    assert "CAP_SYS_TIME" in failed["error"] and failed["source"] == "gnss"
    assert not fields(entries, "rtc_written")
    report = fields(entries, "selfcheck")[-1]  # before the first recording, after the fix
    (clock,) = [c for c in report["checks"] if c["name"] == "clock"]
    assert clock["status"] == "warn" and "RTC: RTC_SET_TIME refused" in clock["message"]
    assert clock["values"]["rtc_problem"].endswith("needs CAP_SYS_TIME")
    sim.finish()


def test_after_a_power_cut_the_rtc_holds_the_corrected_time_over(tmp_path):
    # GNSS corrects the clock and the RTC is written; the power is cut; GNSS is lost for
    # the rest of the shift, so only the RTC can tell the next boot the time.
    s = scenario([{"at": 25, "action": "fault", "kind": "gnss_lost", "duration": "60s"},
                  {"at": 28, "action": "power_cut", "off": "10s"}], duration="50s")
    run_scenario(s, tmp_path)
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    second_boot = [i for i, e in enumerate(entries) if e["kind"] == "boot"][1]
    after = entries[second_boot:]
    (resumed,) = fields(after, "clock_correction_resumed")  # +95 s, for a clock now right
    assert resumed["correction_s"] == pytest.approx(95.0, abs=1.0)
    (disagrees,) = fields(after, "rtc_disagrees")
    assert disagrees["used"] and disagrees["difference_s"] == pytest.approx(-95.0, abs=1.0)
    assert not fields(after, "clock_corrected")  # no GNSS after the cut
    # Every record after the boot carries a time within a second of the truth.
    start = sc.parse({"scenario": {"name": "x", "duration": "1s", "start": START}},
                     "x.toml").start_utc
    (last,) = [e for e in after if e["kind"] == "shutdown"]  # at the scenario's end, 50 s
    assert last["time"]["source"] == "rtc"
    assert last["time"]["utc"] - start == pytest.approx(50.0, abs=1.5)
