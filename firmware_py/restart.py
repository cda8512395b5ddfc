"""What the agent finds when it starts: an activity left open, and a power cut (Art. 12).

**An open activity goes on.** Only the officer ends an activity (R8.3), so one whose
``activity.jsonl`` has no ``activity_ended`` line (and no ``activity.json`` summary) is
still open when the device starts — after a shutdown in order or after losing its power —
and the agent carries on with it: its record is read back (``read_activity_log``) with
its recordings, photos, markers, interruptions and the one still open, if any.

**A power cut.** A run that ends in order writes ``shutdown`` into the audit log. When the
previous run's last entry is anything else, its power went: a pulled or flat battery, a
crash. The restarted agent logs the cut; when a recording was running in an open
activity, that is an automatic interruption with reason (1), device fault, from the
last sign of life to the restart.

**The last sign of life** is the latest time any file shows the device alive: the last
good chunk of a segment the cut left open (flushed every half second while recording),
the last line of the audit log, the last line of the activity's log. The footage ends
there; what came after it (at most the unflushed half second) went with the power.
Times are wall time (UTC): the monotonic clock starts again at a real boot.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.clock import Timestamp, TimeSource
from firmware_py.interruptions import Interruption
from firmware_py.seal import MANIFEST
from firmware_py.store import Activity

log = logging.getLogger(__name__)

ACTIVITY_LOG = "activity.jsonl"


@dataclass
class ActivityLog:
    """An activity's ``activity.jsonl`` read back: what it holds and what was left open."""

    activity: Activity
    header: dict[str, Any]
    opened: Timestamp
    recordings: list[dict[str, Any]] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)
    markers: int = 0
    incidents: int = 0
    interruptions: list[dict[str, Any]] = field(default_factory=list)  # closed ones
    work_records: list[str] = field(default_factory=list)
    # The interruption not yet closed (the officer had stopped and not resumed), as last
    # logged, with the time of that line (its monotonic clock is the previous run's).
    open_interruption: tuple[dict[str, Any], dict[str, Any]] | None = None
    last_number: int = 0  # the highest interruption number so far
    recording: bool = False  # a recording started and never stopped: the power went
    ended: bool = False
    last_time: dict[str, Any] | None = None  # time record of the last line

    def interruption_now(self, now: Timestamp) -> Interruption | None:
        """The open interruption with its stop moved onto this run's monotonic clock."""
        if self.open_interruption is None:
            return None
        facts, logged = self.open_interruption
        stopped_utc = logged["utc"] - (logged["monotonic"] - facts["stopped_at"])
        return Interruption(self.activity.id, int(facts["number"]),
                            now.monotonic - (now.utc - stopped_utc), facts["reason"],
                            facts["chosen_by"], facts.get("detail", ""))


def timestamp(record: dict[str, Any]) -> Timestamp:
    """A time as logged (``Timestamp.to_json``) back into a ``Timestamp``."""
    return Timestamp(float(record["utc"]), int(record["utc_offset_s"]),
                     float(record["monotonic"]), TimeSource(record["source"]))


def read_activity_log(directory: Path) -> ActivityLog | None:
    """Read ``directory/activity.jsonl``; None when it has no opening line."""
    lines = _complete_lines(Path(directory) / ACTIVITY_LOG)
    if not lines or lines[0].get("kind") != "activity_opened":
        return None
    first = lines[0]
    header = {k: v for k, v in first.items() if k not in ("kind", "time")}
    opened = timestamp(first["time"])
    record = ActivityLog(Activity(Path(directory).name, Path(directory), opened.utc), header,
                         opened, last_time=lines[-1].get("time"))
    pending: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for line in lines[1:]:
        facts = {k: v for k, v in line.items() if k not in ("kind", "time")}
        match line.get("kind"):
            case "recording_started":
                record.recording = True
            case "recording_stopped":
                record.recording = False
                record.recordings.append(facts)
            case "photo":
                record.photos.append(facts["file"])
            case "marker":
                if facts.get("incident"):
                    record.incidents += 1
                else:
                    record.markers += 1
            case "interruption" | "interruption_reason":
                pending[int(facts["number"])] = (facts, line["time"])
                record.last_number = max(record.last_number, int(facts["number"]))
            case "interruption_closed":
                pending.pop(int(facts["number"]), None)
                record.last_number = max(record.last_number, int(facts["number"]))
                record.work_records.append(facts.pop("work_record"))
                record.interruptions.append(facts)
            case "activity_ended":
                record.ended = True
    if pending:
        record.open_interruption = pending[max(pending)]
    return record


def find_open_activity(evidence: Path) -> ActivityLog | None:
    """The newest activity the officer has not ended, if any."""
    found = []
    for log_path in Path(evidence).glob(f"*/{ACTIVITY_LOG}"):
        if (log_path.parent / "activity.json").exists():
            continue
        record = read_activity_log(log_path.parent)
        if record is not None and not record.ended:
            found.append(record)
    if len(found) > 1:
        log.warning("%d activities left open; continuing the newest", len(found))
    return max(found, key=lambda r: r.opened.utc, default=None)


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The whole lines of a JSON-lines log. A line torn by a power cut is set aside into
    ``<name>.torn`` (as the audit log does) so that what is appended next stays readable."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path.with_name(path.name + ".torn"), "ab") as fh:
            fh.write(data[keep:] + b"\n")
        with open(path, "r+b") as fh:
            fh.truncate(keep)
        data = data[:keep]
    lines = []
    for raw in data.splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            log.warning("%s: a line that is not JSON left out", path)
    return lines


# --- the power cut ---------------------------------------------------------------------

@dataclass(frozen=True)
class PowerCut:
    """The previous run lost its power: when it was last alive, and when it came back."""

    last_alive_utc: float
    last_alive_from: str  # "segment", "audit_log" or "activity_log"
    back: Timestamp
    recording: bool  # a recording was running in the open activity
    activity: str | None

    @property
    def off_s(self) -> float:
        return max(0.0, self.back.utc - self.last_alive_utc)

    @property
    def lost_at(self) -> float:
        """The last sign of life on this run's monotonic clock (before its boot on a device
        whose monotonic clock starts at zero: then negative)."""
        return self.back.monotonic - self.off_s

    def to_json(self) -> dict[str, Any]:
        last = Timestamp(self.last_alive_utc, self.back.utc_offset_s, self.lost_at,
                         self.back.source)
        return {"last_alive": last.isoformat(), "last_alive_utc": round(self.last_alive_utc, 3),
                "last_alive_from": self.last_alive_from, "back": self.back.isoformat(),
                "off_s": round(self.off_s, 3), "recording": self.recording,
                "activity": self.activity}


def power_cut(previous_end: dict[str, Any] | None, activity: ActivityLog | None,
              now: Timestamp, heartbeat_utc: float | None = None) -> PowerCut | None:
    """The power cut that ended the previous run, or None when it shut down in order
    (``previous_end``: its last audit entry other than a checkpoint; None on a first boot).
    ``heartbeat_utc`` is the last beat the previous run wrote (``HEARTBEAT``): while idle it
    is the latest sign of life there is."""
    if previous_end is None or previous_end.get("kind") == "shutdown":
        return None
    signs = [(float(previous_end["time"]["utc"]), "audit_log")]
    if heartbeat_utc is not None:
        signs.append((heartbeat_utc, "heartbeat"))
    if activity is not None:
        if activity.last_time is not None:
            signs.append((float(activity.last_time["utc"]), "activity_log"))
        chunk = last_good_chunk_utc(activity.activity.path)
        if chunk is not None:
            signs.append((chunk, "segment"))
    utc, source = max(signs)
    return PowerCut(utc, source, now, bool(activity and activity.recording),
                    activity.activity.id if activity else None)


def _manifests(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(Path(directory).glob(f"*{MANIFEST}")):
        try:
            found.append(json.loads(path.read_bytes()))
        except (OSError, json.JSONDecodeError):
            continue
    return found


def last_good_chunk_utc(directory: Path) -> float | None:
    """The newest last-good-chunk time of the cut-short segments sealed in ``directory``."""
    times = [m["cut_short"]["last_good_chunk_utc_ms"] / 1000 for m in _manifests(directory)
             if isinstance(m.get("cut_short"), dict)
             and m["cut_short"].get("last_good_chunk_utc_ms") is not None]
    return max(times, default=None)


def cut_recording_files(activity: ActivityLog) -> list[str]:
    """The segment files of the recording the power cut ended: sealed in the activity's
    directory and named by no recording its log closed."""
    listed = {name for r in activity.recordings for name in r.get("files", [])}
    files = []
    for manifest in _manifests(activity.activity.path):
        if manifest.get("kind") != "segment":
            continue
        for f in manifest.get("files", []):
            if f.get("role") == "media" and f["name"] not in listed:
                files.append((manifest["sequence"], f["name"]))
    return [name for _, name in sorted(files)]


HEARTBEAT = ".alive"  # in the evidence directory: the UTC of the latest beat, as text
HEARTBEAT_WIDTH = 20  # bytes, rewritten in place: no rename, no new block


def write_heartbeat(evidence: Path, utc: float) -> None:
    """Overwrite the beat in place and fsync it: one small block a beat, so a power cut
    while idle is known to within one period, not from the last audit entry."""
    fd = os.open(Path(evidence) / HEARTBEAT, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, f"{utc:<{HEARTBEAT_WIDTH}.3f}".encode()[:HEARTBEAT_WIDTH], 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_heartbeat(evidence: Path) -> float | None:
    try:
        value = float((Path(evidence) / HEARTBEAT).read_bytes()[:HEARTBEAT_WIDTH])
    except (OSError, ValueError):
        return None
    return value if math.isfinite(value) else None
