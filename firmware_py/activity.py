"""The record of one activity (R5.2, R6.2): what happened in it, in order, and a summary.

``activity.jsonl`` in the activity's directory gets a line for each thing the activity
holds — recordings and their files, photos, markers, interruptions — as it happens, fsynced;
``activity.json`` sums it up when the officer ends the activity. Both sit beside the
evidence and travel to the dock with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.clock import Clock
from firmware_py.config import DeviceConfig, PolicyConfig
from firmware_py.store import Activity, DurableFile

if TYPE_CHECKING:
    from firmware_py.restart import ActivityLog


class ActivityRecord:
    def __init__(self, activity: Activity, clock: Clock, device: DeviceConfig,
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
        self._path = activity.path / "activity.jsonl"
        self._fh = open(self._path, "ab")
        self.opened = clock.now()
        self.append("activity_opened", self.header)

    @classmethod
    def reopen(cls, log: "ActivityLog", clock: Clock) -> "ActivityRecord":
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
        record._path = log.activity.path / "activity.jsonl"
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
