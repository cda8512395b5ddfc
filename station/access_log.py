"""The access log (R14.2): every view, playback, download and export at the station, with
who, when, what and from where.

It is the device's audit log format (``firmware_py.evidence.audit``): one JSON line per
entry, each carrying the SHA-256 of the line before, fsynced as written — so
``bodycam log <archive>/station-access.jsonl --verify`` checks it like a recorder's log and
names the first entry altered, removed or reordered. The station only appends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.clock import DeviceClock
from firmware_py.evidence import audit

LOG_NAME = "station-access.jsonl"


class AccessLog:
    def __init__(self, archive_root: Path) -> None:
        self.path = Path(archive_root) / LOG_NAME
        # The dock's own wall clock (its time is what the dock's receipts carry too).
        self._log = audit.AuditLog(self.path, DeviceClock())

    def record(self, action: str, user: str, role: str, remote: str, **what: Any) -> None:
        """One access: ``action`` (view, play, photo, download, export, …) by ``user``
        from ``remote``, on ``what`` (device, activity, file, …)."""
        self._log.append(action, {"user": user, "role": role, "from": remote,
                                  **{k: v for k, v in what.items() if v is not None}})

    def entries(self) -> list[dict[str, Any]]:
        return audit.scan(self.path)[0]

    def for_activity(self, device: str, activity: str) -> list[dict[str, Any]]:
        return [e for e in self.entries()
                if e.get("fields", {}).get("device") == device
                and e.get("fields", {}).get("activity") == activity]

    def close(self) -> None:
        self._log.close()
