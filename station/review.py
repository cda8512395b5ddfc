"""Work record review (R12.3): the unit head approves or returns each work record with a
comment, and may complete an officer's reason left pending on the device.

The review is a record of its own — the work record's seal (its manifest's SHA-256), the
decision, comment, reason, reviewer and time — in canonical JSON, signed with the dock's
Ed25519 key (the key receipts are signed with, so anyone holding the dock's public key
checks it). It is filed with the evidence in the station's store and travels in the
activity's export.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.evidence.canonical import canonical
from station.accounts import Session
from station.filing import Refused
from station.store import Store, new_id

DECISIONS = ("approved", "returned")
# Art. 12's reasons an officer gives; (1) the device records itself.
REASONS = ("device_fault", "weather", "obstruction", "force_majeure")
FORMAT = "bodycam-review/1"


def review(store: Store, key: Ed25519PrivateKey, dock_id: str, device: str, activity: str,
           record: dict[str, Any], folder: Path, decision: str, comment: str,
           reason_key: str | None, reason_note: str, session: Session) -> dict[str, Any]:
    if decision not in DECISIONS:
        raise Refused(f"decision {decision!r}: approved or returned")
    comment = comment.strip()
    if not comment:
        raise Refused("a review needs a comment")
    pending = (record.get("reason") or {}).get("key") == "pending"
    if reason_key:
        if reason_key not in REASONS:
            raise Refused(f"reason {reason_key!r}: one of {', '.join(REASONS)}")
        if not pending:
            raise Refused("the officer gave the reason on the device; it is not changed here")
    elif pending and decision == "approved":
        raise Refused("the reason is pending: complete it before approving")
    name = record["name"]
    manifest = folder / (name[: -len(".json")] + ".manifest.json")
    sealed = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    body = {"format": FORMAT, "dock": dock_id, "device": device, "activity": activity,
            "work_record": name, "work_record_seal_sha256": sealed,
            "interruption": record.get("interruption"), "decision": decision,
            "comment": comment[:2000], "reviewer": session.user.name,
            "reviewer_role": session.user.role, "reviewed_at_ms": int(time.time() * 1000),
            "reason_completed": ({"key": reason_key, "note": reason_note.strip()[:500]}
                                 if reason_key else None)}
    signature = base64.b64encode(key.sign(canonical(body))).decode()
    with store.tx() as db:
        db.execute("INSERT INTO reviews VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (new_id(), device, activity, name, decision, session.user.name, time.time(),
                    body["comment"], reason_key, reason_note.strip()[:500],
                    canonical(body).decode(), signature))
    return body


def reviews(store: Store, device: str, activity: str) -> list[dict[str, Any]]:
    rows = store.all("SELECT work_record, state, reviewer, reviewed_at, comment, reason_key, "
                     "body, signature FROM reviews WHERE device=? AND activity=? "
                     "ORDER BY reviewed_at", (device, activity))
    return [{"work_record": r[0], "state": r[1], "reviewer": r[2], "at": r[3], "comment": r[4],
             "reason_key": r[5], "body": json.loads(r[6]), "signature": r[7]} for r in rows]


def latest(store: Store, device: str, activity: str) -> dict[str, dict[str, Any]]:
    """The latest review of each work record of the activity."""
    out: dict[str, dict[str, Any]] = {}
    for r in reviews(store, device, activity):
        out[r["work_record"]] = r
    return out
