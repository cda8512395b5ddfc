"""Retention (R15, R16.1): keep by the schedule, purge only what has expired, never what
is held or kept long-term, and only by two custodians.

The schedule is per matter type (36 months by default, Art. 15), counted from the end of
the activity. A purge is requested by one custodian and carried out when a second, other
custodian confirms; each step re-checks every rule, so a hold placed between the request
and the confirmation still stops it. What was purged (every file name and SHA-256) is
recorded.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from station.accounts import Session
from station.catalogue import Activity, Catalogue
from station.filing import Refused
from station.store import Store, new_id

log = logging.getLogger(__name__)

DEFAULT_MONTHS = 36
SOON_DAYS = 30


def add_months(ts: float, months: int) -> float:
    when = datetime.fromtimestamp(ts, timezone.utc)
    month = when.month - 1 + months
    year, month = when.year + month // 12, month % 12 + 1
    day = min(when.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
                         31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1])
    return when.replace(year=year, month=month, day=day).timestamp()


def months_for(store: Store, matter: str) -> int:
    row = store.one("SELECT months FROM retention WHERE matter=?", (matter,))
    return int(row[0]) if row else DEFAULT_MONTHS


def set_months(store: Store, matter: str, months: int) -> None:
    if not 1 <= months <= 1200:
        raise Refused(f"retention of {months} months: 1 to 1200")
    with store.tx() as db:
        db.execute("DELETE FROM retention WHERE matter=?", (matter,))
        db.execute("INSERT INTO retention VALUES (?,?)", (matter, months))


def expires_at(store: Store, activity: Activity) -> float | None:
    end = activity.closed_utc or activity.opened_utc
    return None if end is None else add_months(end, months_for(store, activity.matter))


def why_not_purge(store: Store, activity: Activity, now: float) -> list[str]:
    """Every rule that stops a purge of ``activity`` now (empty: it may be purged)."""
    reasons = []
    if activity.purged:
        reasons.append("purged already")
    if activity.hold:
        reasons.append("on hold (R15.2)")
    if activity.long_term:
        reasons.append("kept long-term (R16.1): never purged")
    expiry = expires_at(store, activity)
    if expiry is None or expiry > now:
        when = "unknown" if expiry is None else datetime.fromtimestamp(
            expiry, timezone.utc).date().isoformat()
        reasons.append(f"retention has not expired (until {when}, "
                       f"{months_for(store, activity.matter)} months for {activity.matter})")
    return reasons


def place_hold(store: Store, activity: Activity, reason: str, session: Session) -> None:
    if not reason.strip():
        raise Refused("say why the hold is placed")
    if activity.hold:
        raise Refused(f"{activity.id} is on hold already")
    with store.tx() as db:
        db.execute("INSERT INTO holds (id, device, activity, placed_by, placed_at, reason) "
                   "VALUES (?,?,?,?,?,?)", (new_id(), *activity.key, session.user.name,
                                            time.time(), reason.strip()[:500]))


def release_hold(store: Store, activity: Activity, session: Session) -> None:
    with store.tx() as db:
        changed = db.execute("UPDATE holds SET released_by=?, released_at=? WHERE device=? "
                             "AND activity=? AND released_at IS NULL",
                             (session.user.name, time.time(), *activity.key)).rowcount
    if not changed:
        raise Refused(f"{activity.id} is not on hold")


def request_purge(store: Store, activity: Activity, session: Session, now: float) -> str:
    reasons = why_not_purge(store, activity, now)
    if reasons:
        raise Refused("purge refused: " + "; ".join(reasons))
    with store.tx() as db:
        if db.execute("SELECT 1 FROM purge_requests WHERE device=? AND activity=? AND "
                      "state='requested'", activity.key).fetchone():
            raise Refused("a purge is requested already: a second custodian confirms it")
        request = new_id()
        db.execute("INSERT INTO purge_requests (id, device, activity, requested_by, "
                   "requested_at, state) VALUES (?,?,?,?,?, 'requested')",
                   (request, *activity.key, session.user.name, now))
    return request


def confirm_purge(store: Store, catalogue: Catalogue, activity: Activity, session: Session,
                  now: float) -> list[dict[str, str]]:
    """Carry out a requested purge; returns what was purged (name and SHA-256 per file)."""
    row = store.one("SELECT id, requested_by FROM purge_requests WHERE device=? AND "
                    "activity=? AND state='requested'", activity.key)
    if row is None:
        raise Refused("no purge is requested for this activity")
    request, requested_by = row
    if requested_by == session.user.name:
        raise Refused(f"a second custodian confirms the purge, not {requested_by} who asked")
    reasons = why_not_purge(store, activity, now)
    if reasons:
        with store.tx() as db:
            db.execute("UPDATE purge_requests SET state='refused', confirmed_by=?, "
                       "confirmed_at=? WHERE id=?", (session.user.name, now, request))
        raise Refused("purge refused: " + "; ".join(reasons))
    folder = catalogue.folder(*activity.key)
    files = [{"name": f["name"], "sha256": f["sha256"]}
             for f in catalogue.files(*activity.key)]
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_file():
            path.chmod(0o600)  # the archive keeps files read-only
            path.unlink()
    if folder.is_dir():
        folder.rmdir()
    with store.tx() as db:
        db.execute("UPDATE purge_requests SET state='done', confirmed_by=?, confirmed_at=? "
                   "WHERE id=?", (session.user.name, now, request))
        db.execute("INSERT INTO purged VALUES (?,?,?,?,?,?)",
                   (*activity.key, now, requested_by, session.user.name, json.dumps(files)))
    log.info("purged %s/%s: %d files", *activity.key, len(files))
    return files


def purgeable_soon(store: Store, activities: list[Activity], now: float,
                   days: int = SOON_DAYS) -> list[tuple[Activity, float]]:
    """Activities whose retention ends within ``days`` (or has ended) and that nothing
    keeps: what a custodian will be asked to purge."""
    out = []
    for a in activities:
        expiry = expires_at(store, a)
        if (expiry is not None and expiry <= now + days * 86400 and not a.hold
                and not a.long_term and not a.purged):
            out.append((a, expiry))
    return sorted(out, key=lambda p: p[1])
