"""What the archive holds, as the station shows it: activities, their files and flags.

Read through the archive's index (``files`` and ``seals``, dock/archive.py) and the
activity summary each activity seals in the clear (``activity.json``), joined with the
station's own records (filing, matter corrections, holds, long-term). Nothing here
decrypts: see ``station.media`` for that.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dock.archive import Archive
from station.store import Store

log = logging.getLogger(__name__)

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class NotFound(LookupError):
    """No such device, activity or file in the archive."""


def check_name(value: str, what: str) -> str:
    """A device, activity or file name from a URL or form: plain, or NotFound."""
    if not isinstance(value, str) or not SAFE.match(value) or ".." in value:
        raise NotFound(f"{what} {value!r} is not a name the archive uses")
    return value


@dataclass
class Activity:
    device: str
    id: str
    officer: str
    unit: str
    matter: str
    matter_set_at_dock: bool
    opened_utc: float | None
    closed_utc: float | None
    utc_offset_s: int
    incident: bool
    long_term: bool
    unassigned: bool
    summary: dict[str, Any]
    files: int
    uploaded_at: float | None
    filing: str  # received | filed_pending | filed
    filed_by: str | None = None
    filed_at: float | None = None
    confirmed_by: str | None = None
    confirmed_at: float | None = None
    hold: bool = False
    overdue: bool = False
    purged: bool = False
    place: tuple[float, float] | None = None
    interruptions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.device, self.id


class Catalogue:
    def __init__(self, archive: Archive, store: Store) -> None:
        self.archive = archive
        self.store = store
        self.root = archive.root
        # The archive's one connection serves the server's threads: the catalogue, the
        # ledger and the overdue list take it in turn (``Station`` uses this lock too).
        self.lock = threading.RLock()

    def index(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.archive.db.execute(sql, args).fetchall()

    def folder(self, device: str, activity: str) -> Path:
        return self.root / check_name(device, "device") / check_name(activity, "activity")

    def summary(self, device: str, activity: str) -> dict[str, Any]:
        path = self.folder(device, activity) / "activity.json"
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}  # not arrived yet, or an activity cut by a power cut and not closed
        return value if isinstance(value, dict) else {}

    def keys(self) -> list[tuple[str, str]]:
        return [(d, a) for d, a in self.index(
            "SELECT DISTINCT device, activity FROM seals WHERE activity IS NOT NULL "
            "ORDER BY device, activity")]

    def activities(self, overdue: set[tuple[str, str]] | None = None) -> list[Activity]:
        return [self.activity(d, a, overdue) for d, a in self.keys()]

    def activity(self, device: str, activity: str,
                 overdue: set[tuple[str, str]] | None = None) -> Activity:
        check_name(device, "device")
        check_name(activity, "activity")
        seals = self.index("SELECT kind, officer, start_ms, end_ms FROM seals WHERE device=? "
                           "AND activity=?", (device, activity))
        purged = self.store.one("SELECT 1 FROM purged WHERE device=? AND activity=?",
                                (device, activity)) is not None
        if not seals and not purged:
            raise NotFound(f"no activity {activity} of {device} in the archive")
        summary = self.summary(device, activity)
        opened_at, closed_at = _mapping(summary.get("opened")), _mapping(summary.get("closed"))
        files, uploaded = self.index("SELECT COUNT(*), MAX(stored_at) FROM files WHERE "
                                     "device=? AND activity=? AND state='archived'",
                                     (device, activity))[0]
        starts = [s[2] for s in seals if s[2] is not None]
        ends = [s[3] for s in seals if s[3] is not None]
        opened = _number(opened_at.get("utc")) or (min(starts) / 1000 if starts else None)
        closed = _number(closed_at.get("utc")) or (max(ends) / 1000 if ends else None)
        officers = [s[1] for s in seals if s[1]]
        matter = summary.get("matter") if isinstance(summary.get("matter"), str) else "other"
        corrected = self.store.one("SELECT matter FROM matters WHERE device=? AND activity=? "
                                   "ORDER BY set_at DESC LIMIT 1", (device, activity))
        dock_long_term = self.store.one("SELECT 1 FROM long_term WHERE device=? AND activity=?",
                                        (device, activity)) is not None
        filing = self.store.one("SELECT filed_by, filed_at, confirmed_by, confirmed_at FROM "
                                "filings WHERE device=? AND activity=?", (device, activity))
        hold = self.store.one("SELECT 1 FROM holds WHERE device=? AND activity=? AND "
                              "released_at IS NULL", (device, activity)) is not None
        place = self.store.one("SELECT lat, lon FROM places WHERE device=? AND activity=?",
                               (device, activity))
        incidents = _number(summary.get("incidents")) or 0
        offset = _number(opened_at.get("utc_offset_s")) or 0
        item = Activity(
            device=device, id=activity,
            officer=str(summary.get("officer") or (officers[0] if officers else "")),
            unit=str(summary.get("unit") or ""),
            matter=corrected[0] if corrected else matter,
            matter_set_at_dock=corrected is not None,
            opened_utc=opened, closed_utc=closed,
            utc_offset_s=int(offset) if abs(offset) <= 14 * 3600 else 0,
            incident=bool(incidents), long_term=bool(summary.get("long_term")) or dock_long_term,
            unassigned=bool(summary.get("unassigned")), summary=summary, files=files,
            uploaded_at=uploaded,
            filing="received" if filing is None else ("filed" if filing[2] else "filed_pending"),
            hold=hold, overdue=(device, activity) in (overdue or set()), purged=purged,
            place=(place[0], place[1]) if place and place[0] is not None else None,
            interruptions=[i for i in _list(summary.get("interruptions")) if isinstance(i, dict)])
        if filing is not None:
            item.filed_by, item.filed_at, item.confirmed_by, item.confirmed_at = filing
        return item

    def files(self, device: str, activity: str) -> list[dict[str, Any]]:
        rows = self.index("SELECT name, kind, size, sha256, stored_at, verified, receipt "
                          "FROM files WHERE device=? AND activity=? AND state='archived' "
                          "ORDER BY name", (device, activity))
        return [{"name": r[0], "kind": r[1], "size": r[2], "sha256": r[3], "stored_at": r[4],
                 "verified": bool(r[5]), "receipt": json.loads(r[6]) if r[6] else None}
                for r in rows]

    def archived_file(self, device: str, activity: str, name: str) -> Path:
        """The path of a file the index says is archived in that activity, or NotFound."""
        check_name(name, "file")
        row = self.index("SELECT archive_path FROM files WHERE device=? AND activity=? AND "
                         "name=? AND state='archived'", (device, activity, name))
        if not row:
            raise NotFound(f"{name} is not an archived file of {device}/{activity}")
        path = self.folder(device, activity) / name
        if not path.is_file():
            raise NotFound(f"{name} is indexed but not on disk (purged?)")
        return path

    def events(self, device: str, activity: str) -> list[dict[str, Any]]:
        """The activity's own log (activity.jsonl, sealed in the clear): recordings,
        photos, markers, interruptions, with their times."""
        path = self.folder(device, activity) / "activity.jsonl"
        out = []
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def work_records(self, device: str, activity: str) -> list[dict[str, Any]]:
        found = []
        folder = self.folder(device, activity)
        for path in sorted(folder.glob("interruption-*.json")):
            if path.name.endswith(".manifest.json"):
                continue  # the work record's seal
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("kind") == "work_record":
                found.append({"name": path.name, **record})
        return found

    def audit_logs(self, device: str) -> list[Path]:
        return sorted((self.root / check_name(device, "device") / "audit").glob("audit-*.jsonl"))


# activity.json comes from a device: sealed, but every value is checked for its type
# before the station uses it (a wrong one is treated as missing, never trusted).
def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) < 1e12 else None  # no NaN, no inf
