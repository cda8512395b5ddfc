"""The officer's day (Art. 5, 8, 9, 12, 18): activities, announcement, interruptions, audit.

The shipped ``obstruction`` scenario runs once: the party obstructs (the officer stops and
gives the reason with two marker presses), the battery reaches its cut-off (the device
stops by itself), and after a charge the officer resumes and ends the activity.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import av
import numpy as np
import pytest

from conftest import export_plain
from firmware_py.evidence import audit
from firmware_py.recording import metadata
from firmware_py.fieldwork.speech import PhraseRenderer
from simulator.harness import scenario as sc
from bodycam.simulation import simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15}}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("day")
    raw = sc.load("obstruction")
    data = __import__("tomllib").loads((sc.SCENARIO_DIR / "obstruction.toml").read_text())
    data["config"] = {**data.get("config", {}), **FAST}
    scenario = sc.parse(data, raw.source)
    sim = simulation(scenario, out)
    result = sim.run()
    activities = [p for p in export_plain(out).iterdir() if p.is_dir()]
    return sim, result, out, activities


def kinds(entries, kind):
    return [e["fields"] for e in entries if e["kind"] == kind]


@pytest.mark.req("R5.2", "R6.2", "R12.1", "R12.2", "R12.3")
def test_one_activity_two_interruptions_two_work_records(day):
    sim, result, out, activities = day
    assert len(activities) == 1
    folder = activities[0]
    summary = json.loads((folder / "activity.json").read_text())
    assert summary["officer"] == "OFF-0417" and summary["matter"] == "on_site_enforcement"
    assert summary["matter_zh"] == "现场执法" and summary["recording_required"] is True
    assert len(summary["recordings"]) == 3
    first, second = summary["interruptions"]
    # Chosen by the officer with two marker presses: obstruction (Art. 12 (3)).
    assert (first["reason"], first["chosen_by"], first["automatic"]) == ("obstruction", "OFF-0417", False)
    assert first["off_s"] == pytest.approx(30, abs=0.5) and first["closed_by"] == "resumed"
    # Found by the device itself at the battery cut-off (Art. 12 (1)).
    assert (second["reason"], second["chosen_by"], second["automatic"]) == ("device", "device", True)
    assert "battery at 3 %" in second["detail"]
    assert second["off_s"] == pytest.approx(130, abs=2)
    records = sorted(p for p in folder.glob("interruption-*.json") if ".manifest." not in p.name)
    assert [p.name for p in records] == ["interruption-01.json", "interruption-02.json"]
    one = json.loads(records[0].read_text())
    assert one["reason"]["code"] == 3 and one["review"]["state"] == "pending"
    assert one["basis"].endswith("第十二条（3）")
    two_text = (folder / "interruption-02.txt").read_text()
    assert "设备自动记录" in two_text and "device fault, damage, low battery" in two_text
    # Every segment of the activity belongs to it and every recording's files exist.
    files = {f for r in summary["recordings"] for f in r["files"]}
    assert files == {p.name + ".bce" for p in folder.glob("*.ts")}


@pytest.mark.req("R7.1", "R8.3", "R12.1")
def test_audit_log_tells_the_same_story(day):
    sim, result, out, activities = day
    entries = audit.read(out / "device" / "audit.jsonl")
    story = [(e["kind"], e["fields"].get("reason")) for e in entries if e["kind"] in (
        "activity_opened", "recording_started", "recording_stopped", "interruption",
        "interruption_reason", "interruption_closed", "power_save", "docked", "undocked",
        "activity_ended")]
    assert story == [
        ("activity_opened", None), ("recording_started", None),
        ("recording_stopped", "stop"), ("interruption", "pending"),
        ("interruption_reason", "obstruction"), ("recording_started", None),
        ("interruption_closed", "obstruction"),
        ("recording_stopped", "battery_cutoff"), ("interruption", "device"), ("power_save", None),
        ("docked", None), ("undocked", None),
        ("recording_started", None), ("interruption_closed", "device"),
        ("recording_stopped", "activity_end"), ("activity_ended", None)]
    spoken = [f["script"] for f in kinds(entries, "spoken")]
    assert spoken == ["announcement", "prompt", "reason:obstruction", "announcement", "announcement"]
    selfchecks = [f["reason"] for f in kinds(entries, "selfcheck")]
    assert selfchecks == ["boot", "first_recording", "left_dock"]


def decoded_audio(path):
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks, first = [], None
        for frame in container.decode(stream):
            if first is None:
                first = float(frame.pts * stream.time_base)
            chunks.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float64), first


@pytest.mark.req("R8.4", "R9.1")
def test_announcement_is_in_the_recorded_audio(day):
    sim, result, out, activities = day
    folder = activities[0]
    segments = sorted(folder.glob("*.ts"))
    with_speech = []
    for path in segments:
        records = metadata.read(path.with_suffix(".meta.jsonl"))
        notes = [r for r in records if r["kind"] == "announcement"]
        if notes:
            with_speech.append((path, records[0], notes[0]))
    assert len(with_speech) == 3  # every start, resumptions included (Art. 9)
    path, header, note = with_speech[0]
    policy = sim.config.policy
    clip = PhraseRenderer(out / "device" / "speech-cache", 16000).script(
        policy.announcement.phrases, policy.announcement.gap_s)
    audio, first_pts = decoded_audio(path)
    # Where the announcement should be: its start time, on the file's audio clock.
    expected = (note["time"]["monotonic"] - header["recording_origin_us"] / 1e6 + 0.7) - first_pts
    template = clip.samples.astype(np.float64) / 32768.0
    n = len(audio) + len(template)
    corr = np.fft.irfft(np.fft.rfft(audio, n) * np.conj(np.fft.rfft(template, n)), n)[:len(audio) - len(template)]
    energy = np.sqrt(np.convolve(audio ** 2, np.ones(len(template)), "valid")[:len(corr)])
    ncc = corr / (energy * np.linalg.norm(template) + 1e-12)
    lag = int(np.argmax(ncc))
    assert ncc[lag] > 0.5  # the clip itself, heard by the microphone through AAC
    assert abs(lag / 16000 - expected) < 0.25
    # And loud: the announcement stands well above the room before the press.
    during = audio[lag:lag + len(template)]
    before = audio[max(0, lag - 16000 * 3):lag]
    assert np.sqrt(np.mean(during ** 2)) > 5 * np.sqrt(np.mean(before ** 2))
    # The statement window follows it (R8.4).
    window = next(r for r in metadata.read(path.with_suffix(".meta.jsonl")) if r["kind"] == "statement_window")
    assert window["start_utc"] == pytest.approx(note["time"]["utc"] + clip.duration_s, abs=0.01)
    assert window["end_utc"] - window["start_utc"] == policy.announcement.statement_window_s


def bodycam(*args):
    return subprocess.run([sys.executable, "-m", "bodycam", *args], capture_output=True,
                          text=True)


@pytest.mark.req("R18.2")
@pytest.mark.parametrize("tamper", ["remove", "edit", "swap", "truncate_middle"])
def test_log_verify_detects_any_removed_or_edited_line(day, tmp_path, tamper):
    sim, result, out, activities = day
    lines = (out / "device" / "audit.jsonl").read_bytes().splitlines(keepends=True)
    ok = tmp_path / "intact.jsonl"
    ok.write_bytes(b"".join(lines))
    proc = bodycam("log", str(ok), "--verify")
    assert proc.returncode == 0 and f"{len(lines)} entries" in proc.stdout
    victim = len(lines) // 2
    if tamper == "remove":
        del lines[victim]
    elif tamper == "edit":
        entry = json.loads(lines[victim])
        entry["time"]["utc"] += 60  # move one event by a minute
        lines[victim] = json.dumps(entry, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode() + b"\n"
    elif tamper == "swap":
        lines[victim], lines[victim + 1] = lines[victim + 1], lines[victim]
    else:
        lines[victim] = lines[victim][:20] + b"\n"
    bad = tmp_path / "audit.jsonl"
    bad.write_bytes(b"".join(lines))
    proc = bodycam("log", str(tmp_path), "--verify")
    assert proc.returncode == 1 and "AUDIT LOG BROKEN" in proc.stdout
    proc = bodycam("log", str(bad), "--verify", "--json")
    assert json.loads(proc.stdout)["intact"] is False


def test_log_prints_entries(day):
    sim, result, out, activities = day
    proc = bodycam("log", str(out))
    assert proc.returncode == 0
    assert "interruption_reason" in proc.stdout and "chain intact" in proc.stdout
    data = json.loads(bodycam("log", str(out), "--json").stdout)
    assert data["intact"] and data["entries"][0]["kind"] == "boot"


@pytest.mark.req("R5.2")
def test_unassigned_use_is_flagged(tmp_path):
    data = {"scenario": {"name": "unassigned", "duration": "20s"}, "config": FAST,
            "event": [{"at": 5, "action": "press", "button": "record"}]}
    simulation(sc.parse(data, "u.toml"), tmp_path).run()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    assert kinds(entries, "boot")[0]["unassigned"] is True
    opened = kinds(entries, "activity_opened")[0]
    assert opened["unassigned"] is True and opened["officer"] is None
    header = metadata.read(next(export_plain(tmp_path).glob("*/*.meta.jsonl")))[0]
    assert header["officer"] is None
