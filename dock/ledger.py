"""The ledger of body-recorder use (Art. 4, R4.1–R4.3): who had which device, when, and what
was recorded meanwhile.

Check-out (``assign``) and check-in (``release``) are recorded at the dock with the officer,
the device and the time. What was recorded during an assignment is read from the seals
that arrived from the device — activities, segments, photos, work records (one per
interruption) — whose start falls inside it. ``rows`` serves the terminal and ``csv_text``
the export.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from dock.archive import Archive


class LedgerError(ValueError):
    """A check-out or check-in that contradicts the ledger (already out, not out)."""


@dataclass(frozen=True)
class LedgerRow:
    device: str
    officer: str
    assigned_at: str
    released_at: str | None
    activities: int
    segments: int
    photos: int
    interruptions: int


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def assign(archive: Archive, device: str, officer: str, at: float | None = None) -> None:
    open_row = archive.db.execute("SELECT officer FROM ledger WHERE device=? AND released_at IS NULL",
                                  (device,)).fetchone()
    if open_row is not None:
        raise LedgerError(f"{device} is checked out to {open_row[0]}; release it first")
    archive.db.execute("INSERT INTO ledger (device, officer, assigned_at) VALUES (?,?,?)",
                       (device, officer, time.time() if at is None else at))
    archive.db.commit()


def release(archive: Archive, device: str, at: float | None = None) -> str:
    row = archive.db.execute("SELECT id, officer FROM ledger WHERE device=? AND released_at IS NULL",
                             (device,)).fetchone()
    if row is None:
        raise LedgerError(f"{device} is not checked out")
    archive.db.execute("UPDATE ledger SET released_at=? WHERE id=?",
                       (time.time() if at is None else at, row[0]))
    archive.db.commit()
    return row[1]


@dataclass(frozen=True)
class DeviceEvent:
    """Something that happened to a device itself (its revocation, say), in the ledger."""

    device: str
    event: str
    at: str
    detail: str


def record_event(archive: Archive, device: str, event: str, detail: str,
                 at: float | None = None) -> None:
    archive.db.execute("INSERT INTO device_events (device, event, at, detail) VALUES (?,?,?,?)",
                       (device, event, time.time() if at is None else at, detail))
    archive.db.commit()


def events(archive: Archive, device: str | None = None) -> list[DeviceEvent]:
    query = "SELECT device, event, at, detail FROM device_events"
    args: tuple[str, ...] = ()
    if device is not None:
        query, args = query + " WHERE device=?", (device,)
    return [DeviceEvent(d, e, _iso(at) or "", detail)
            for d, e, at, detail in archive.db.execute(query + " ORDER BY at", args)]


def rows(archive: Archive) -> list[LedgerRow]:
    out = []
    for device, officer, assigned, released in archive.db.execute(
            "SELECT device, officer, assigned_at, released_at FROM ledger ORDER BY assigned_at"):
        end = released if released is not None else time.time()
        counts = dict(archive.db.execute(
            "SELECT kind, COUNT(*) FROM seals WHERE device=? AND start_ms BETWEEN ? AND ? "
            "GROUP BY kind", (device, int(assigned * 1000), int(end * 1000))).fetchall())
        out.append(LedgerRow(device, officer, _iso(assigned), _iso(released),
                             counts.get("activity", 0), counts.get("segment", 0),
                             counts.get("photo", 0), counts.get("work_record", 0)))
    return out


def csv_text(archive: Archive) -> str:
    buffer = io.StringIO()
    fields = list(LedgerRow.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows(archive):
        writer.writerow(asdict(row))
    return buffer.getvalue()
