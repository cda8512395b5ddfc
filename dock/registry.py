"""The dock's register of devices: who is enrolled, and withdrawing a device.

Enrolment (``firmware_py.evidence.keys.enroll``, ``dock.enrollment``) writes a device's
record — id, unit, public signing key — to ``<dock>/devices/<id>.json``. Withdrawing moves
that record to ``<dock>/devices/withdrawn/<id>-<UTC>.json``: the device is no longer
enrolled (it can be enrolled again, with a new key), the dock ignores whatever it sends from
then on, and its old public key stays where ``load_registry`` finds it, so the evidence it
sealed before stays verifiable.

Withdrawing alone leaves the device's client certificate valid: ``DockService`` drops every
message of a withdrawn device, and ``bodycam dock serve`` renders the broker's ACL with no
rights for it (read at the broker's start). A stolen device is *revoked* as well
(``dock.revocation``, ``bodycam dock revoke``): its certificates go on the CA's revocation
list, and the broker refuses it at connect.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from firmware_py.evidence.keys import REGISTRY, WITHDRAWN


class RegistryError(ValueError):
    """A device the register does not hold as the command expects."""


def record_path(dock_dir: Path, device: str) -> Path:
    return Path(dock_dir) / REGISTRY / f"{device}.json"


def is_enrolled(dock_dir: Path, device: str) -> bool:
    """True when the device has a current enrolment record at this dock."""
    return record_path(dock_dir, device).is_file()


def withdrawn_records(dock_dir: Path) -> list[dict[str, object]]:
    """Every withdrawal recorded at this dock, oldest first."""
    folder = Path(dock_dir) / REGISTRY / WITHDRAWN
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()) | {"path": str(path)})
        except (OSError, ValueError):
            continue
    return records


def withdrawn_devices(dock_dir: Path) -> set[str]:
    """Devices withdrawn and not enrolled again since: the dock ignores them."""
    return {str(r.get("device")) for r in withdrawn_records(dock_dir)
            if not is_enrolled(dock_dir, str(r.get("device")))}


def is_withdrawn(dock_dir: Path, device: str) -> bool:
    return not is_enrolled(dock_dir, device) and device in withdrawn_devices(dock_dir)


def withdraw(dock_dir: Path, device: str, at: datetime | None = None) -> Path:
    """Take ``device`` off the enrolled devices; returns where its record now lies."""
    current = record_path(dock_dir, device)
    if not current.is_file():
        raise RegistryError(f"device {device} is not enrolled at {dock_dir} (no {current})")
    at = at or datetime.now(timezone.utc)
    record = json.loads(current.read_text())
    record["withdrawn_at"] = at.isoformat(timespec="seconds")
    folder = current.parent / WITHDRAWN
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{device}-{at.strftime('%Y%m%dT%H%M%SZ')}.json"
    n = 1
    while target.exists():  # withdrawn twice within a second: keep both records
        n += 1
        target = folder / f"{device}-{at.strftime('%Y%m%dT%H%M%SZ')}-{n}.json"
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(record, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    current.unlink()
    return target
