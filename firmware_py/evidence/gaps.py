"""Gaps in the footage of an activity, and what explains them (Art. 8, Art. 12, R18.1).

The whole process of an activity is recorded; where the footage stops, Art. 12 wants the
reason on record. This module reads only sealed, verified manifests — never the unsealed
activity log — so what it finds is as trustworthy as the seals:

- **segments** of one activity, in chain order. Two neighbours of the same recording
  (same ``recording_origin_us``) are compared on the device's monotonic clock, which no
  wall-clock jump moves; neighbours from different recordings (the officer stopped, the
  power was cut, the battery ran out) on UTC, since a restart resets the monotonic clock.
- **work records** (one sealed per interruption, Art. 12): the span from ``stopped`` to
  ``resumed`` (``start`` and ``end`` of their manifest).

A gap is a stretch longer than the tolerance between the end of one segment and the start
of the next. It is explained when a work record of the same activity covers it: the
interruption began no later than the footage stopped (plus the tolerance) and had not
ended before the gap did. A pre-event buffer often fills the stretch of an interruption
shorter than the buffer; then there is no gap at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

TOLERANCE_S = 1.0  # frame timing and the 0.5 s flush of a cut segment stay well inside


@dataclass
class Gap:
    device: str
    activity: str
    after: str  # manifest of the segment before the gap
    before: str  # manifest of the segment after it
    start_utc_ms: int
    end_utc_ms: int
    seconds: float
    within_recording: bool  # footage missing inside one recording: never by design
    explained_by: list[dict[str, Any]] = field(default_factory=list)

    @property
    def explained(self) -> bool:
        return bool(self.explained_by)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "activity": self.activity, "after": self.after,
                "before": self.before, "start_utc_ms": self.start_utc_ms,
                "end_utc_ms": self.end_utc_ms, "seconds": round(self.seconds, 3),
                "within_recording": self.within_recording, "explained": self.explained,
                "explained_by": self.explained_by}


def find_gaps(items: Iterable[Any], tolerance_s: float = TOLERANCE_S) -> list[Gap]:
    """Every gap in the footage of every activity among ``items`` (verify's item reports:
    ``manifest``, ``status``, ``body``); only valid items count."""
    segments: dict[tuple[str, str], list[Any]] = {}
    records: dict[tuple[str, str], list[Any]] = {}
    for item in items:
        body = item.body
        if item.status != "valid" or not body or not body.get("activity"):
            continue
        key = (str(body.get("device")), str(body["activity"]))
        if body.get("kind") == "segment":
            segments.setdefault(key, []).append(item)
        elif body.get("kind") == "work_record":
            records.setdefault(key, []).append(item)
    gaps = []
    for key, items_ in segments.items():
        items_.sort(key=lambda i: i.body.get("sequence", 0))
        for prev, nxt in zip(items_, items_[1:]):
            gap = _gap(key, prev, nxt, tolerance_s)
            if gap is not None:
                gap.explained_by = [_why(r) for r in records.get(key, [])
                                    if _covers(r.body, gap, tolerance_s)]
                gaps.append(gap)
    return gaps


def _gap(key: tuple[str, str], prev: Any, nxt: Any, tolerance_s: float) -> Gap | None:
    a, b = prev.body, nxt.body
    end, start = dict(a.get("end") or {}), b.get("start") or {}
    if not end and a.get("cut_short"):
        # A segment sealed after a power cut knows only its last good chunk.
        end = {"utc_ms": a["cut_short"].get("last_good_chunk_utc_ms")}
    if end.get("utc_ms") is None or start.get("utc_ms") is None:
        return None  # nothing to measure from (a cut segment starts where its file began)
    same = (a.get("recording_origin_us") is not None
            and a.get("recording_origin_us") == b.get("recording_origin_us")
            and not a.get("cut_short"))
    if same and "monotonic_us" in end and "monotonic_us" in start:
        seconds = (start["monotonic_us"] - end["monotonic_us"]) / 1e6
    else:
        seconds = (start.get("utc_ms", 0) - end.get("utc_ms", 0)) / 1e3
    if seconds <= tolerance_s:
        return None
    return Gap(key[0], key[1], prev.manifest, nxt.manifest, int(end.get("utc_ms", 0)),
               int(start.get("utc_ms", 0)), seconds, same)


def _covers(record: dict[str, Any], gap: Gap, tolerance_s: float) -> bool:
    stopped = (record.get("start") or {}).get("utc_ms")
    resumed = (record.get("end") or {}).get("utc_ms")
    if stopped is None:
        return False
    resumed = max(resumed if resumed is not None else stopped, stopped)
    slack = tolerance_s * 1000
    # A wall-clock jump can move the recorded times of the stop and the gap's start apart,
    # never the order of stop and resume within one boot: the span must overlap the gap.
    return stopped <= gap.start_utc_ms + slack and resumed >= gap.start_utc_ms - slack


def _why(item: Any) -> dict[str, Any]:
    body = item.body
    return {"manifest": item.manifest, "interruption": body.get("interruption"),
            "reason": _reason(item), "stopped_utc_ms": (body.get("start") or {}).get("utc_ms"),
            "resumed_utc_ms": (body.get("end") or {}).get("utc_ms")}


def _reason(item: Any) -> str | None:
    """The reason key from the work record itself (a sealed plain file, its hash checked by
    verify), e.g. ``obstruction`` or ``device``; None if it cannot be read here."""
    for record in item.body.get("files", []):
        if record.get("role") == "record" and not record.get("encrypted"):
            try:
                data = json.loads((Path(item.path).parent / record["name"]).read_bytes())
                return str(data["reason"]["key"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None
