"""The soak shift: eight hours of an officer's day, generated from a seed.

A scenario too long to write by hand and meant to be different for every seed: visits to
workplaces spread over the shift, each an activity of several recordings with interruptions
between them (the officer stops and gives the reason with the marker button, then
resumes), the recorder switched off between visits, docked at midday and at the end of the
shift — and faults at random moments: GNSS lost or talking nonsense, the camera stalling or
delivering garbage, the microphone failing, the wall clock jumping either way, the battery
dropping, the storage filling, and the power cut while recording. The midday docking is cut
short (the officer lifts the recorder out mid-transfer) and at the end of the shift the
dock crashes after storing a file, before its receipt.

``build`` returns the scenario as the data of a scenario file (``simulator.harness.scenario``
parses it, so every check a written scenario gets applies); ``scenario`` parses it. The
same seed always gives the same shift. ``bodycam soak`` runs it with docking and verifies
the archive at the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from simulator.harness.scenario import Scenario, parse

SHIFT_S = 8 * 3600
START = "2026-11-30T08:30:00+08:00"
# Small and slow enough that eight hours run in about a minute; everything else — segments,
# sealing, the stamp, docking — as on a real device.
CONFIG: dict[str, Any] = {
    "video": {"width": 160, "height": 120, "fps": 5, "bitrate": 100_000},
    "audio": {"sample_rate": 8000, "block_ms": 100, "bitrate": 16_000},
    "recording": {"segment_seconds": 30, "pre_event_seconds": 5},
    "device": {"officer": "OFF-0417"},
}
# What a second of recording weighs, roughly (video and audio at CONFIG's bitrates): a
# docking fault is armed at a share of what that docking carries, so it always happens.
RECORDING_BYTES_PER_S = (CONFIG["video"]["bitrate"] + CONFIG["audio"]["bitrate"]) / 8
FAULT_AT_SHARE = 0.25  # of the recordings made since the last docking (encoders undershoot)
REASON_PRESSES = (1, 2, 3)  # weather, obstruction, other force majeure (policy.toml)
PROMPT_S = 9.0  # the spoken prompt before the officer answers with the marker button


@dataclass(frozen=True)
class SoakPlan:
    """What the generated shift holds, for the report and the test's expectations."""

    visits: int
    recordings: int
    dockings: int
    faults: dict[str, int]
    power_cuts: int


def build(seed: int, *, visits: int = 10, recordings_per_visit: int = 4,
          dock_after: tuple[int, ...] = (4, 9),
          continuous_s: float = 0.0) -> tuple[dict[str, Any], SoakPlan]:
    """The scenario data for one soak shift, and its plan. ``continuous_s`` opens the shift
    with one recording that long, unbroken (a whole inspection filmed end to end: at 30 s
    segments an hour leaves 480 files to dock), and the visits after it move later."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    faults: dict[str, int] = {}
    cuts = 0
    slot = SHIFT_S / visits
    t = 0.0
    recorded_s = 0.0  # recording time since the last docking
    for visit in range(visits):
        begin = max(visit * slot, t + 20.0) if visit else 0.0
        docks = visit in dock_after
        if visit:
            # The recorder was switched off after the last visit; it is on again now.
            t = begin + 20.0
        else:
            t = 30.0  # boot, self-check and a first GNSS fix on the way to the first site
        spans: list[tuple[float, float]] = []
        faults_from = begin
        if visit == 0 and continuous_s > 0:
            # Unbroken: no fault or power cut is drawn inside it (they come after).
            events.append(_press(t, "record"))
            events.append(_press(t + continuous_s, "record"))
            recorded_s += continuous_s + CONFIG["recording"]["pre_event_seconds"]
            t += continuous_s + rng.uniform(40.0, 120.0)
            faults_from = t
        for n in range(recordings_per_visit):
            length = rng.uniform(40.0, 90.0)
            start = t
            events.append(_press(start, "record"))
            end = start + length
            # The shift always has a power cut: the last recording takes one if none has.
            last_of_shift = visit == visits - 1 and n == recordings_per_visit - 1
            if (rng.random() < 0.35 and not docks) or (last_of_shift and not cuts):
                # The power goes in the middle of this recording; the device boots again
                # and resumes by itself (power back within two minutes), and the officer
                # stops later than planned.
                cut_at = start + length * rng.uniform(0.3, 0.6)
                off = rng.uniform(5.0, 40.0)
                events.append({"at": _r(cut_at), "action": "power_cut", "off": _r(off)})
                cuts += 1
                end = max(end, cut_at + off + 30.0)
            spans.append((start, end))
            recorded_s += end - start + CONFIG["recording"]["pre_event_seconds"]
            last = n == recordings_per_visit - 1
            if last:
                events.append({"at": _r(end), "action": "long_press", "button": "record"})
                t = end + 15.0
            else:
                events.append(_press(end, "record"))
                presses = rng.choice(REASON_PRESSES)
                for k in range(presses):
                    events.append(_press(end + PROMPT_S + k * 0.6, "marker"))
                t = end + rng.uniform(40.0, 120.0)
        for kind, event in _faults(rng, spans, faults_from, t, events):
            events.extend(event)
            faults[kind] = faults.get(kind, 0) + 1
        if docks:
            # The midday docking is cut short by the officer; at the end of the shift the
            # dock crashes before a receipt and comes back: the rest must still arrive.
            # The fault is armed below what this docking carries, whatever the sizes.
            fault, after_mb = (("undock_mid_transfer", 5.0) if visit != visits - 1
                               else ("dock_crash", 3.0))
            carried_mb = recorded_s * RECORDING_BYTES_PER_S / 1e6
            after_mb = max(0.01, min(after_mb, FAULT_AT_SHARE * carried_mb))
            recorded_s = 0.0
            events.append({"at": _r(t), "action": "dock", "fault": fault, "after_mb": _r(after_mb)})
            t += 600.0
            if visit != visits - 1:
                events.append({"at": _r(t), "action": "undock"})
                t += 20.0
        if visit != visits - 1:
            nxt = max((visit + 1) * slot, t + 20.0)
            events.append({"at": _r(t), "action": "switch_off", "off": _r(nxt - t)})
    duration = max(SHIFT_S, t + 60.0)
    data = {"scenario": {"name": f"soak-{seed}", "start": START, "duration": _r(duration),
                         "seed": seed,
                         "description": f"an eight-hour shift: {visits} visits, "
                                        f"{visits * recordings_per_visit} recordings, random "
                                        f"faults, {len(dock_after)} dockings (seed {seed})"},
            "config": CONFIG, "battery": {"start_percent": 100}, "storage": {"quota_mb": 4000},
            "gnss": {"time_to_first_fix": "8s"}, "event": events}
    plan = SoakPlan(visits, visits * recordings_per_visit + (continuous_s > 0), len(dock_after),
                    faults, cuts)
    return data, plan


def scenario(seed: int, **kwargs: Any) -> tuple[Scenario, SoakPlan]:
    data, plan = build(seed, **kwargs)
    return parse(data, f"soak (seed {seed})"), plan


def _faults(rng: random.Random, spans: list[tuple[float, float]], begin: float, end: float,
            events: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """One or two faults at random moments of a visit, none inside a power cut."""
    cuts = [(e["at"], e["at"] + e["off"]) for e in events if e.get("action") == "power_cut"]
    chosen = []
    for _ in range(rng.choice((1, 2))):
        kind = rng.choice(("gnss_lost", "gnss_garbage", "camera_stopped", "camera_garbage",
                           "microphone_silent", "microphone_stopped", "clock_jump",
                           "battery_drain", "storage_fill"))
        start, stop = rng.choice(spans)
        at = rng.uniform(start + 3.0, max(start + 4.0, stop - 20.0))
        if any(a - 2.0 <= at <= b + 20.0 for a, b in cuts):
            continue  # the device is off then, or just booting
        fault: dict[str, Any] = {"at": _r(at), "action": "fault", "kind": kind}
        recover: list[dict[str, Any]] = []
        match kind:
            case "gnss_lost":
                fault["duration"] = _r(rng.uniform(20.0, 120.0))
            case "camera_stopped" | "camera_garbage":
                recover = [{"at": _r(at + rng.uniform(4.0, 15.0)), "action": "recover",
                            "part": "camera"}]
            case "microphone_silent" | "microphone_stopped":
                recover = [{"at": _r(at + rng.uniform(5.0, 15.0)), "action": "recover",
                            "part": "microphone"}]
            case "clock_jump":
                fault["seconds"] = _r(rng.choice((-1, 1)) * rng.uniform(30.0, 1800.0))
            case "battery_drain":
                fault["percent"] = _r(rng.uniform(3.0, 10.0))
            case "storage_fill":
                fault["mb"] = _r(rng.uniform(100.0, 400.0))
        if any(a - 2.0 <= r["at"] <= b + 20.0 for r in recover for a, b in cuts):
            continue
        chosen.append((kind, [fault, *recover]))
    return chosen


def _press(at: float, button: str) -> dict[str, Any]:
    return {"at": _r(at), "action": "press", "button": button}


def _r(value: float) -> float:
    return round(value, 2)
