"""The record of one activity (R5.2, R6.2): what happened in it, in order, and a summary.

``activity.jsonl`` in the activity's directory gets a line for each thing the activity
holds — recordings and their files, photos, markers, interruptions — as it happens, fsynced;
``activity.json`` sums it up when the officer ends the activity. Both sit beside the
evidence and travel to the dock with it.

Written (``ActivityLogWriter``) and read back (``ActivityLogContents``, ``read_activity_log``,
``find_open_activity``: an activity the officer had not ended when the device stopped goes
on after the restart, R8.3) here, in one module, so the format has one home.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.clock import Clock, Timestamp, TimeSource
from firmware_py.config import DeviceConfig, PolicyConfig
from firmware_py.evidence.store import ActivityDir, DurableFile
from firmware_py.fieldwork.interruptions import Interruption

log = logging.getLogger(__name__)


ACTIVITY_LOG = "activity.jsonl"


@dataclass
class ActivityLogContents:
    """An activity's ``activity.jsonl`` read back: what it holds and what was left open."""

    activity: ActivityDir
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


def read_activity_log(directory: Path) -> ActivityLogContents | None:
    """Read ``directory/activity.jsonl``; None when it has no opening line."""
    lines = _complete_lines(Path(directory) / ACTIVITY_LOG)
    if not lines or lines[0].get("kind") != "activity_opened":
        return None
    first = lines[0]
    header = {k: v for k, v in first.items() if k not in ("kind", "time")}
    opened = timestamp(first["time"])
    record = ActivityLogContents(ActivityDir(Path(directory).name, Path(directory), opened.utc), header,
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


def find_open_activity(evidence: Path) -> ActivityLogContents | None:
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


# --- writing -----------------------------------------------------------------------------

class ActivityLogWriter:
    """Writes one activity's ``activity.jsonl`` as things happen (fsynced line by line) and
    its ``activity.json`` summary when the officer ends it; keeps what it wrote for that
    summary."""

    def __init__(self, activity: ActivityDir, clock: Clock, device: DeviceConfig,
                 policy: PolicyConfig, matter: str | None = None) -> None:
        self.activity = activity
        self._clock = clock
        key = matter or policy.activity.default_matter
        kind = policy.activity.matters[key]
        officer = device.device.officer
        self.header = {"id": activity.id, "device": device.device.id, "unit": device.device.unit,
                       "officer": officer or None, "unassigned": not officer,
                       "matter": key, "matter_zh": kind.zh, "matter_en": kind.en,
                       "recording_required": kind.recording_required}
        self.recordings: list[dict[str, Any]] = []
        self.photos: list[str] = []
        self.markers = 0
        self.incidents = 0
        self.interruptions: list[dict[str, Any]] = []
        self.work_records: list[str] = []
        self._path = activity.path / ACTIVITY_LOG
        self._fh = open(self._path, "ab")
        self.opened = clock.now()
        self.append("activity_opened", self.header)

    @classmethod
    def reopen(cls, log: ActivityLogContents, clock: Clock) -> "ActivityLogWriter":
        """Go on with an activity the last run left open (only the officer ends one, R8.3):
        what its ``activity.jsonl`` holds is read back, and new lines are appended to it."""
        record = cls.__new__(cls)
        record.activity = log.activity
        record._clock = clock
        record.header = dict(log.header)
        record.recordings = list(log.recordings)
        record.photos = list(log.photos)
        record.markers, record.incidents = log.markers, log.incidents
        record.interruptions = list(log.interruptions)
        record.work_records = list(log.work_records)
        record._path = log.activity.path / ACTIVITY_LOG
        record._fh = open(record._path, "ab")
        record.opened = log.opened
        return record

    @property
    def id(self) -> str:
        return self.activity.id

    @property
    def path(self) -> Path:
        return self.activity.path

    def append(self, kind: str, fields: dict[str, Any]) -> None:
        line = {"kind": kind, "time": self._clock.now().to_json(), **fields}
        self._fh.write(json.dumps(line, ensure_ascii=False, default=str).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def suspend(self) -> None:
        """The device is shutting down with the activity still open: keep the log, close
        the file; the activity goes on after the restart."""
        if not self._fh.closed:
            self.append("device_shutdown", {})
            self._fh.close()

    def close(self) -> dict[str, Any]:
        closed = self._clock.now()
        summary = {**self.header, "opened": self.opened.to_json(), "closed": closed.to_json(),
                   "recordings": self.recordings, "photos": self.photos,
                   "markers": self.markers, "incidents": self.incidents,
                   "long_term": self.incidents > 0,
                   "interruptions": self.interruptions, "work_records": self.work_records}
        self.append("activity_ended", {"recordings": len(self.recordings),
                                       "interruptions": len(self.interruptions)})
        self._fh.close()
        out = DurableFile(self.activity.path / "activity.json")
        out.write(json.dumps(summary, ensure_ascii=False, indent=1).encode())
        out.close()
        return summary
