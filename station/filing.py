"""Filing by two custodians (R13.3) and what custodians set at the dock: the matter type
(R6.2) and the long-term flag (R16.1).

An activity that arrived is *received*. A first custodian files it; a second, different
custodian in a session of their own confirms, and only then is it *filed*. Both are kept
with their time.
"""

from __future__ import annotations

import time

from station.accounts import Session
from station.catalogue import Activity
from station.store import Store, new_id


class Refused(ValueError):
    """A step the rules do not allow now; the message says why."""


def file_activity(store: Store, activity: Activity, session: Session) -> None:
    with store.tx() as db:
        if db.execute("SELECT 1 FROM filings WHERE device=? AND activity=?",
                      activity.key).fetchone():
            raise Refused(f"{activity.id} is already filed; a second custodian confirms it")
        db.execute("INSERT INTO filings (device, activity, filed_by, filed_at, filed_session) "
                   "VALUES (?,?,?,?,?)", (*activity.key, session.user.name, time.time(),
                                          session.token_hash))


def confirm_filing(store: Store, activity: Activity, session: Session) -> None:
    with store.tx() as db:
        row = db.execute("SELECT filed_by, filed_session, confirmed_by FROM filings WHERE "
                         "device=? AND activity=?", activity.key).fetchone()
        if row is None:
            raise Refused(f"{activity.id} is not filed yet: a custodian files it first")
        filed_by, filed_session, confirmed_by = row
        if confirmed_by is not None:
            raise Refused(f"{activity.id} was confirmed by {confirmed_by} already")
        if filed_by == session.user.name or filed_session == session.token_hash:
            raise Refused("the filing must be confirmed by a second custodian, not the one "
                          f"who filed it ({filed_by})")
        db.execute("UPDATE filings SET confirmed_by=?, confirmed_at=? WHERE device=? AND "
                   "activity=?", (session.user.name, time.time(), *activity.key))


def set_matter(store: Store, activity: Activity, matter: str, matters: dict[str, object],
               session: Session) -> str:
    """Set or correct the activity's matter type; returns the previous one."""
    if matter not in matters:
        raise Refused(f"matter {matter!r} is not in the unit's list ({', '.join(matters)})")
    if matter == activity.matter:
        raise Refused(f"the matter is {matter} already")
    with store.tx() as db:
        db.execute("INSERT INTO matters VALUES (?,?,?,?,?,?,?)",
                   (new_id(), *activity.key, matter, activity.matter, session.user.name,
                    time.time()))
    return activity.matter


def set_long_term(store: Store, activity: Activity, reason: str, session: Session) -> None:
    reason = reason.strip()
    if not reason:
        raise Refused("say why it is kept long-term (Art. 16 (1)-(3))")
    with store.tx() as db:
        if db.execute("SELECT 1 FROM long_term WHERE device=? AND activity=?",
                      activity.key).fetchone():
            raise Refused(f"{activity.id} is kept long-term already")
        db.execute("INSERT INTO long_term VALUES (?,?,?,?,?)",
                   (*activity.key, session.user.name, time.time(), reason[:500]))
