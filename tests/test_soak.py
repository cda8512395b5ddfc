"""The soak shift (simulator/harness/soak.py): eight hours of an officer's day in virtual time — ten
visits, forty recordings with interruptions, the recorder switched off between visits,
random faults and power cuts, docked at midday (lifted out mid-transfer) and at the end
(the dock crashing before a receipt) — run through ``bodycam
soak``, which docks over the embedded broker and verifies the dock's archive.

At the end the archive verifies — every seal valid, no number missing from the chain, every
gap in the footage explained by a sealed interruption — the device holds nothing, and each
injected fault left its mark in the device's audit log.
"""

from __future__ import annotations

import json

import pytest

from firmware_py.evidence import audit
from bodycam.cli import main
from simulator.harness import soak

SEED = 2026
# What the agent writes into its audit log for each kind of injected fault.
LOGGED_AS = {"gnss_lost": "gnss_lost", "gnss_garbage": "gnss_garbage",
             "camera_stopped": "camera_stalled", "camera_garbage": "camera_garbage",
             "microphone_silent": "microphone_failed", "microphone_stopped": "microphone_failed",
             "clock_jump": "clock_jump"}


@pytest.fixture(scope="module")
def shift(tmp_path_factory):
    out = tmp_path_factory.mktemp("soak")
    code = main(["soak", "--seed", str(SEED), "--out", str(out), "--json"])
    return code, json.loads((out / "soak.json").read_text()), out


def test_the_plan_is_an_eight_hour_shift_with_forty_recordings_and_faults():
    scenario, plan = soak.scenario(SEED)
    assert scenario.duration_s >= 8 * 3600
    assert (plan.visits, plan.recordings, plan.dockings) == (10, 40, 2)
    assert plan.power_cuts >= 1 and sum(plan.faults.values()) >= 10
    assert soak.build(SEED)[0] == soak.build(SEED)[0], "one seed, one shift"
    assert soak.build(SEED)[0] != soak.build(SEED + 1)[0]


def test_a_soak_can_open_with_a_whole_shift_filmed_unbroken(capsys):
    """``--continuous``: one unbroken recording first (the whole-shift case that leaves
    thousands of files to dock); the visits after it move later and the faults and power
    cuts stay out of it."""
    scenario, plan = soak.scenario(SEED, continuous_s=4 * 3600)
    presses = [e for e in scenario.events if e.action == "press"]
    assert (presses[0].at, presses[1].at) == (30.0, 30.0 + 4 * 3600)
    assert plan.recordings == 41 and scenario.duration_s >= 8 * 3600
    inside = [e for e in scenario.events
              if 30.0 < e.at < 30.0 + 4 * 3600 and e.action != "press"]
    assert not inside, "nothing interrupts the unbroken recording"
    assert soak.build(SEED)[0] == soak.build(SEED, continuous_s=0)[0], "the default unchanged"
    assert main(["soak", "--continuous", "-1", "--out", "/nonexistent"]) == 2
    assert "--continuous must be 0 to 1440 minutes" in capsys.readouterr().err


@pytest.mark.req("R12.1", "R12.2", "R12.3", "R18.1")
def test_soak_ends_with_a_clean_verification_and_every_gap_explained(shift):
    code, report, _ = shift
    assert code == 0, {k: v for k, v in report.items() if k != "gaps"}
    assert report["simulated_seconds"] >= 8 * 3600
    assert report["recordings_started"] >= 40
    assert report["power_cuts"] == report["plan"]["power_cuts"] >= 1
    check = report["verify"]
    assert check["ok"] and set(check["counts"]) == {"valid"}
    assert not any(check["missing"].values())
    # Interruptions longer than the pre-event buffer leave gaps; each has its work record.
    assert check["gaps"] >= 20 and check["unexplained_gaps"] == 0
    assert all(g["explained_by"] and all(w["reason"] and w["reason"] != "pending"
                                         for w in g["explained_by"]) for g in report["gaps"])
    # The power cuts' gaps are explained by the device (Art. 12 reason 1).
    device_gaps = [g for g in report["gaps"]
                   if any(w["reason"] == "device" for w in g["explained_by"])]
    assert len(device_gaps) >= report["power_cuts"] - 1  # a cut inside the buffer leaves none


@pytest.mark.req("R13.1", "R13.2")
def test_soak_docks_twice_and_leaves_nothing_on_the_device(shift):
    _, report, out = shift
    midday, evening = report["dock_sessions"]
    # Lifted out mid-transfer at midday: what had no receipt stayed and went in the evening,
    # through a dock that crashed before one receipt and came back.
    assert midday["fault"] == "undock_mid_transfer" and midday["happened"]
    # (a seal receipted while files it covers still wait stays too: it leaves last)
    assert 0 < midday["deleted"] <= midday["receipted"] < midday["offered"]
    assert evening["fault"] == "dock_crash" and evening["happened"]
    # (after the crash a seal held back is offered again in a second round: receipted twice)
    assert evening["offered"] == evening["deleted"] <= evening["receipted"]
    assert evening["failed"] == 0
    assert report["left_on_device"] == []
    archived = [p for p in (out / "archive" / "BC-0001").rglob("*.ts.bce")]
    assert len(archived) >= 40


def test_every_injected_fault_is_in_the_audit_log(shift):
    _, report, out = shift
    logged = {e["kind"] for e in audit.read(out / "device" / "audit.jsonl")}
    for fault in report["plan"]["faults"]:
        if fault in LOGGED_AS:
            assert LOGGED_AS[fault] in logged, fault
    assert {"power_cut", "segment_recovered", "shutdown", "clock_corrected"} <= logged


def test_the_smallest_soak_still_has_both_docking_faults_and_a_power_cut(tmp_path):
    """Two visits of one recording: each docking carries little, yet its fault is armed
    below that (undock mid-transfer, dock crash before a receipt) and the shift has its
    power cut — what the README promises for every size."""
    _, plan = soak.scenario(7, visits=2, recordings_per_visit=1, dock_after=(0, 1))
    assert plan.power_cuts >= 1
    out = tmp_path / "small"
    code = main(["soak", "--seed", "7", "--visits", "2", "--recordings", "1", "--out", str(out),
                 "--json"])
    report = json.loads((out / "soak.json").read_text())
    assert code == 0, {k: v for k, v in report.items() if k != "gaps"}
    faults = [(s.get("fault"), s.get("happened")) for s in report["dock_sessions"]
              if s.get("fault")]
    assert faults == [("undock_mid_transfer", True), ("dock_crash", True)], report["dock_sessions"]
    assert report["power_cuts"] == report["plan"]["power_cuts"] >= 1
