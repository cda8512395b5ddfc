"""Power cuts in a simulated shift (Art. 12, R18.1): the device's process is really killed.

Each scenario runs through ``run_scenario``: the stretch up to a ``power_cut`` runs in a
child process that SIGKILLs itself at the cut, and the device boots again on the same
files when the power is back. Everything is measured from what is on disk afterwards: the
audit log, the activity's log, the seals (``bodycam verify``) and the decrypted footage.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime

import av
import pytest

from conftest import export_plain
from firmware_py.evidence import audit
from bodycam.cli import main
from firmware_py.config import load as load_config
from simulator.harness import scenario as sc
from bodycam.simulation import run_scenario
from bodycam.simulation import simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 60, "pre_event_seconds": 2}}
START = "2026-11-29T09:00:00+08:00"
START_UTC = datetime.fromisoformat(START).timestamp()
FPS = 15


def scenario(events, duration="40s", seed=1):
    return sc.parse({"scenario": {"name": "cut", "duration": duration, "start": START, "seed": seed},
                     "config": FAST, "event": events}, "cut.toml")


def kinds(entries, kind):
    return [e["fields"] for e in entries if e["kind"] == kind]


def segment_frames(plain, media_name):
    """Virtual capture times of the frames in an exported segment (same clock as the scenario:
    file PTS = 0.7 s + time since the recording's first frame, the metadata says when)."""
    ts = next(plain.glob(f"*/{media_name[:-len('.bce')]}"))
    with av.open(str(ts)) as container:
        stream = container.streams.video[0]
        pts = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    header = json.loads(ts.with_name(ts.name.replace(".ts", ".meta.jsonl")).read_text().splitlines()[0])
    return [header["recording_origin_us"] / 1e6 + p - 0.7 for p in pts]


def verify_cli(out):
    proc = subprocess.run([sys.executable, "-m", "bodycam", "verify",
                           str(out / "device" / "evidence"), "--trust", str(out / "dock"),
                           "--key", str(out / "dock"), "--json"], capture_output=True, text=True)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.req("R12.2", "R12.3", "R18.1")
def test_sigkill_while_recording_loses_under_a_second_and_the_activity_goes_on(tmp_path):
    cut_at = 20.75  # just before a flush of the open segment (every 0.5 s of media): the worst case
    result = run_scenario(scenario([{"at": 5, "action": "press", "button": "record"},
                                    {"at": cut_at, "action": "power_cut", "off": "5s"}]), tmp_path)
    assert result.power_cuts == [{"at": cut_at, "off_s": 5.0, "kind": "power_cut", "back_at": 25.75, "window": None}]
    assert result.final_state == "recording"  # resumed by itself, to the end of the shift

    entries = audit.read(tmp_path / "device" / "audit.jsonl")  # one intact chain across the cut
    boots = [i for i, e in enumerate(entries) if e["kind"] == "boot"]
    assert len(boots) == 2
    # SIGKILL: nothing of a shutdown before the second boot, no segment closed in order.
    assert "shutdown" not in [e["kind"] for e in entries[:boots[1]]]
    (recovered,) = kinds(entries, "segment_recovered")
    assert recovered["empty"] is False
    (cut,) = kinds(entries, "power_cut")
    assert cut["recording"] is True and cut["last_alive_from"] == "segment"
    assert cut["last_alive_utc"] == pytest.approx(recovered["last_good_chunk_utc_ms"] / 1000, abs=1e-3)
    assert cut["off_s"] == pytest.approx(5.0, abs=1.0)
    # Art. 12 (1): an automatic interruption with the device's reason, closed by the resumption.
    (opened,) = kinds(entries, "interruption")
    reasons = load_config().policy.interruption.reasons
    assert opened["automatic"] is True and opened["chosen_by"] == "device"
    assert reasons[opened["reason"]].code == 1
    assert "power lost" in opened["detail"]
    (closed,) = kinds(entries, "interruption_closed")
    assert closed["closed_by"] == "resumed_by_device" and closed["work_record"] == "interruption-01.json"
    # The activity was not lost: the same one goes on, and holds the interruption.
    (activity,) = kinds(entries, "activity_opened")
    (resumed,) = kinds(entries, "activity_resumed")
    assert resumed["activity"] == activity["activity"] == opened["activity"]
    started = kinds(entries, "recording_started")
    assert [s["resumed"] for s in started] == [False, True]

    # Every seal valid, the chain continuous, the cut segment sealed as cut short.
    code, report = verify_cli(tmp_path)
    assert code == 0 and report["ok"], report
    assert [i["sequence"] for i in report["items"]] == list(range(1, len(report["items"]) + 1))
    assert all(i["status"] == "valid" for i in report["items"])
    (short,) = [i for i in report["items"] if i["cut_short"]]
    assert short["kind"] == "segment" and short["sequence"] == recovered["chain"]
    assert "work_record" in [i["kind"] for i in report["items"]]

    # Footage lost: from the last frame in the recovered segment to the cut moment.
    folder = tmp_path / "device" / "evidence" / activity["activity"]
    cut_files = cut["files"]  # the pre-event file and the live segment the cut left open
    assert len(cut_files) == 2
    assert cut_files[-1].replace(".ts.bce", ".manifest.json") == recovered["manifest"]
    plain = export_plain(tmp_path)
    last_frame = segment_frames(plain, cut_files[-1])[-1]
    lost = cut_at - last_frame
    print(f"\nfootage lost to the power cut: {lost:.3f} s")
    assert 0.0 <= lost <= 1.0
    # The gap is explained: the interruption runs from the last frame to the next recording.
    record = json.loads((folder / "interruption-01.json").read_text())
    assert record["reason"]["code"] == 1 and record["reason"]["automatic"] is True
    stopped = record["stopped"]["utc"] - START_UTC
    resumed_at = record["resumed"]["utc"] - START_UTC
    later = [json.loads(line) for line in (folder / "activity.jsonl").read_text().splitlines()]
    next_files = [x for x in later if x["kind"] == "recording_stopped"][-1]["files"]
    next_first = segment_frames(plain, next_files[0])[0]
    assert abs(stopped - last_frame) <= 0.5 + 1 / FPS
    assert 0.0 <= next_first - resumed_at <= 0.5
    assert record["off_s"] == pytest.approx(next_first - last_frame, abs=1.0)
    # The activity's own log says the recording was cut by the power and names its file.
    stops = [x for x in later if x["kind"] == "recording_stopped"]
    assert stops[0]["reason"] == "power_cut" and stops[0]["files"] == cut_files


@pytest.mark.req("R12.1")
def test_cut_while_stopped_keeps_the_activity_and_its_open_interruption(tmp_path):
    result = run_scenario(scenario([{"at": 3, "action": "press", "button": "record"},
                                    {"at": 5, "action": "press", "button": "record"},
                                    {"at": 6, "action": "press", "button": "record"},
                                    {"at": 8, "action": "press", "button": "record"},
                                    {"at": 12, "action": "power_cut", "off": "3s"},
                                    {"at": 20, "action": "press", "button": "record"},
                                    {"at": 25, "action": "long_press", "button": "record"}],
                                   duration="30s"), tmp_path)
    assert result.power_cuts[0]["at"] == 12
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    (cut,) = kinds(entries, "power_cut")
    assert cut["recording"] is False and cut["activity"] is not None
    # Nothing was open: the sealed work record of interruption 1 is not "recovered" again.
    assert kinds(entries, "segment_recovered") == []
    # No new interruption: the officer's stop at 8 s is the one, still open after the restart.
    first, second = kinds(entries, "interruption")
    assert second["number"] == 2 and second["chosen_by"] == "pending"
    closed = kinds(entries, "interruption_closed")
    assert [c["number"] for c in closed] == [1, 2] and closed[1]["closed_by"] == "resumed"
    assert closed[1]["off_s"] == pytest.approx(12.0, abs=0.5)  # 8 s to 20 s, across the cut
    assert len(kinds(entries, "activity_opened")) == 1
    (ended,) = kinds(entries, "activity_ended")
    assert ended["recordings"] == 3 and ended["interruptions"] == 2
    code, report = verify_cli(tmp_path)
    assert code == 0 and not [i for i in report["items"] if i["cut_short"]]
    assert [i["sequence"] for i in report["items"]] == list(range(1, len(report["items"]) + 1))


def test_cut_before_any_activity_is_logged_and_nothing_else(tmp_path):
    run_scenario(scenario([{"at": 4, "action": "power_cut", "off": "2s"}], duration="10s"),
                 tmp_path)
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    (cut,) = kinds(entries, "power_cut")
    assert cut["recording"] is False and cut["activity"] is None
    # Idle, nothing is written regularly: the last sign of life is the last audit entry
    # before the cut (the boot self-check), so the cut is known only to lie after it.
    second_boot = [i for i, e in enumerate(entries) if e["kind"] == "boot"][1]
    last = [e for e in entries[:second_boot] if e["kind"] != "checkpoint"][-1]
    assert cut["last_alive_from"] == "audit_log"
    assert cut["last_alive_utc"] == pytest.approx(last["time"]["utc"], abs=1e-3)
    assert cut["last_alive_utc"] - START_UTC <= 4.0
    assert not kinds(entries, "interruption") and not kinds(entries, "activity_resumed")
    assert entries[-2]["kind"] == "shutdown"  # the second run ends in order


@pytest.mark.req("R12.2")
def test_random_moment_cut_through_the_command_line(tmp_path, capsys):
    window = {"action": "power_cut", "between": ["12s", "18s"], "off": "4s"}
    events = [{"at": 5, "action": "press", "button": "record"}, window]
    drawn = [e.at for e in scenario(events, seed=7).events if e.action == "power_cut"]
    assert drawn == [e.at for e in scenario(events, seed=7).events if e.action == "power_cut"]
    assert drawn != [e.at for e in scenario(events, seed=8).events if e.action == "power_cut"]
    at = drawn[0]
    assert 12 <= at <= 18
    path = tmp_path / "random.toml"
    path.write_text(f'[scenario]\nname = "random"\nduration = "30s"\nseed = 7\nstart = {START}\n'
                    '[config.video]\nwidth = 320\nheight = 180\nfps = 15\n'
                    '[config.recording]\npre_event_seconds = 2\n'
                    '[[event]]\nat = 5\naction = "press"\nbutton = "record"\n'
                    '[[event]]\naction = "power_cut"\nbetween = ["12s", "18s"]\noff = "4s"\n')
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "power cut for 4 s (random moment in 12-18 s)" in printed and "power_cut" in printed
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["power_cuts"] == [{"at": round(at, 3), "off_s": 4.0, "kind": "power_cut",
                                      "back_at": round(at + 4, 3), "window": [12.0, 18.0]}]
    entries = audit.read(out / "device" / "audit.jsonl")
    (cut,) = kinds(entries, "power_cut")
    # The device died at the drawn moment: its last sign of life is within a second before.
    assert 0.0 <= at - (cut["last_alive_utc"] - START_UTC) <= 1.0
    (opened,) = kinds(entries, "interruption")
    assert opened["automatic"] and opened["reason"] == "device"
    last_frame = segment_frames(export_plain(out), cut["files"][-1])[-1]
    print(f"\nrandom cut at {at:.3f} s: footage lost {at - last_frame:.3f} s")
    assert 0.0 <= at - last_frame <= 1.0


def test_a_long_outage_waits_for_the_officer(tmp_path):
    run_scenario(scenario([{"at": 5, "action": "press", "button": "record"},
                           {"at": 10, "action": "power_cut", "off": "3m"},
                           {"at": "3:15", "action": "press", "button": "record"}],
                          duration="3:20"), tmp_path)
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    (not_resumed,) = kinds(entries, "recording_not_resumed")
    assert "officer resumes" in not_resumed["why"]
    (closed,) = kinds(entries, "interruption_closed")
    assert closed["closed_by"] == "resumed" and closed["reason"] == "device"
    assert closed["off_s"] == pytest.approx(185.0, abs=1.0)  # from the cut to the press
    assert math.isclose(closed["stopped_at"], 10.0, abs_tol=0.6)


def test_the_unit_can_turn_the_resume_after_a_power_cut_off(tmp_path):
    """``stops.power_cut_resume_within_s = 0``: even a 5 s cut waits for the officer."""
    events = [{"at": 5, "action": "press", "button": "record"},
              {"at": 10, "action": "power_cut", "off": "5s"}]
    from firmware_py.config import CONFIG_DIR
    policy = tmp_path / "policy.toml"
    policy.write_text((CONFIG_DIR / "policy.toml").read_text().replace(
        "power_cut_resume_within_s = 120.0", "power_cut_resume_within_s = 0"))
    cut = sc.parse({"scenario": {"name": "cut", "duration": "30s", "start": START},
                    "config": FAST, "event": events}, "cut.toml")
    run_scenario(cut, tmp_path / "run", load_config(policy_path=policy, overrides=cut.config))
    entries = audit.read(tmp_path / "run" / "device" / "audit.jsonl")
    (not_resumed,) = kinds(entries, "recording_not_resumed")
    assert "within 0 s" in not_resumed["why"]
    assert len(kinds(entries, "recording_started")) == 1


def test_power_cut_needs_its_own_process():
    with pytest.raises(sc.ScenarioError, match="falls in the power cut"):
        scenario([{"at": 10, "action": "power_cut", "off": "10s"},
                  {"at": 15, "action": "press", "button": "record"}])
    with pytest.raises(sc.ScenarioError, match="after the end"):
        scenario([{"at": 35, "action": "power_cut", "off": "10s"}])
    with pytest.raises(sc.ScenarioError, match="either at or between"):
        scenario([{"at": 5, "action": "power_cut", "between": [1, 2]}])


def test_in_process_simulation_refuses_a_power_cut(tmp_path):
    sim = simulation(scenario([{"at": 0.5, "action": "power_cut"}], duration="15s"), tmp_path)
    sim.start()
    try:
        with pytest.raises(RuntimeError, match="run_scenario"):
            sim.advance_to(1.0)
    finally:
        sim.finish()


# --- the core's decision after a power cut (pure: events in, actions out) ------------------

def _restarted_core(open_interruption=None):
    from firmware_py.agent.core import AgentCore
    from firmware_py.agent.events import ActivityContinued, Booted

    core = AgentCore(load_config())
    core.handle(Booted(100.0))
    core.handle(ActivityContinued(100.0, 1 if open_interruption else 0, open_interruption))
    return core


def _reading(percent=60.0, docked=False):
    from device.power import ChargeStatus, PowerReading

    status = ChargeStatus.CHARGING if docked else ChargeStatus.DISCHARGING
    return PowerReading(percent, status, docked)


@pytest.mark.parametrize("reading, resumes", [(_reading(), True), (None, True),
                                              (_reading(docked=True), False),
                                              (_reading(percent=2.0), False)])
def test_core_resumes_only_in_the_field_with_charge(reading, resumes):
    from firmware_py.agent.events import CloseInterruption as InterruptionClosed
    from firmware_py.agent.events import PowerRestored, StartRecording
    from firmware_py.agent.events import RecordInterruption as InterruptionOpened

    core = _restarted_core()
    actions = core.handle(PowerRestored(100.0, 92.0, 8.0, True, reading))
    (opened,) = [a.interruption for a in actions if isinstance(a, InterruptionOpened)]
    assert opened.reason == "device" and opened.automatic and opened.stopped_at == 92.0
    assert any(isinstance(a, StartRecording) for a in actions) is resumes
    closed = [a.interruption for a in actions if isinstance(a, InterruptionClosed)]
    assert [c.closed_by for c in closed] == (["resumed_by_device"] if resumes else [])
    assert (core.state == "recording") is resumes


def test_core_closes_a_picture_gap_the_cut_ended():
    from firmware_py.agent.events import CloseInterruption as InterruptionClosed, PowerRestored
    from firmware_py.agent.events import RecordInterruption as InterruptionOpened
    from firmware_py.fieldwork.interruptions import DEVICE, Interruption

    gap = Interruption("", 1, 80.0, "device", DEVICE, "camera: no frames for 3 s; sound recorded on")
    core = _restarted_core(gap)
    actions = core.handle(PowerRestored(100.0, 92.0, 8.0, True, _reading()))
    closed = [a.interruption for a in actions if isinstance(a, InterruptionClosed)]
    assert (closed[0].number, closed[0].closed_by, closed[0].resumed_at) == (1, "recording_stopped", 92.0)
    (opened,) = [a.interruption for a in actions if isinstance(a, InterruptionOpened)]
    assert opened.number == 2 and opened.detail.startswith("power lost")


@pytest.mark.req("R7.4")
def test_the_clock_correction_survives_the_cut(tmp_path):
    """The RTC jumps 15 minutes ahead, GNSS corrects the clock, then the power is cut while
    recording. The correction is kept across the reboot (``.clock.json``): before the next
    GNSS fix the device already tells the right time, so the cut's off time is the real 5 s,
    the recording resumes by itself (power back within the limit), and the interruption's
    stop in its sealed work record is the real moment of the cut."""
    events = [{"at": 2, "action": "fault", "kind": "clock_jump", "seconds": 900},
              {"at": 15, "action": "press", "button": "record"},
              {"at": 30, "action": "power_cut", "off": "5s"}]
    run_scenario(sc.parse({"scenario": {"name": "cut", "duration": "60s", "start": START},
                           "config": FAST, "gnss": {"time_to_first_fix": "5s"},
                           "event": events}, "cut.toml"), tmp_path)
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    assert kinds(entries, "clock_corrected"), "GNSS corrected the jump before the cut"
    (resumed,) = kinds(entries, "clock_correction_resumed")
    assert resumed["correction_s"] == pytest.approx(-900, abs=1)
    (cut,) = kinds(entries, "power_cut")
    assert cut["off_s"] == pytest.approx(5.0, abs=1.0) and cut["recording"] is True
    assert len(kinds(entries, "recording_started")) == 2, "resumed by itself after the cut"
    record = next((tmp_path / "device" / "evidence").rglob("interruption-01.json"))
    stopped = json.loads(record.read_text())["stopped"]["utc"]
    assert stopped == pytest.approx(START_UTC + 30, abs=1.0)


def test_a_cut_while_idle_is_placed_by_the_heartbeat(tmp_path):
    """Nothing else is written while the recorder waits: the heartbeat (``.alive``, every
    10 s) places a cut that comes a minute after the last event to within one period,
    where the audit log alone would say a minute more."""
    run_scenario(scenario([{"at": 2, "action": "press", "button": "photo"},
                           {"at": 70, "action": "power_cut", "off": "5s"}], duration="80s"),
                 tmp_path)
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    (cut,) = kinds(entries, "power_cut")
    assert cut["last_alive_from"] == "heartbeat" and cut["recording"] is False
    assert 5.0 <= cut["off_s"] <= 5.0 + 10.5
    last_entry_before = max(e["time"]["utc"] for e in entries if e["kind"] != "power_cut"
                            and e["time"]["utc"] < START_UTC + 70)
    assert cut["last_alive_utc"] - last_entry_before > 40  # the heartbeat saw more
