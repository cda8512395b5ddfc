"""Revocation: a stolen or lost device's certificate put on the dock CA's revocation list.

Every client certificate the dock issues to a device is kept as issued
(``<dock>/ca/issued/<device>-<serial>.pem``), so that ``revoke`` can name its serial
numbers. ``revoke`` records the revocation (``<dock>/ca/revoked.json``, with the reason and
the time), writes the CA's CRL (``<dock>/ca/crl.pem``) that ``bodycam dock serve`` gives
Mosquitto as ``crlfile`` — a revoked certificate then fails the TLS handshake, the device is
refused at connect — and withdraws the device from the register (``dock.registry``), so the
dock itself refuses whatever it still sends through a broker started before. The command
(``bodycam dock revoke``) also writes it into the ledger.

``bodycam dock serve`` watches for revocations and withdrawals while it runs: it renders
the CRL and the ACL again and has Mosquitto reload them (SIGHUP, ``MosquittoBroker.reload``)
within a second, without dropping anyone's connection; the dock's own refusal covers that
second. A connection the revoked device holds already is not cut by the CRL, but the
reloaded ACL gives it no rights and the dock ignores what it sends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from dock import pki, registry
from dock.enrollment import ISSUED_DIR, check_device_id, dock_ca

log = logging.getLogger(__name__)

ISSUED = ISSUED_DIR  # kept by dock.enrollment.issue_package through pki.keep_issued
REVOKED = Path("ca") / "revoked.json"
CRL = Path("ca") / "crl.pem"


class RevocationError(ValueError):
    """A revocation the dock cannot carry out (no such device, no reason)."""


@dataclass(frozen=True)
class Revocation:
    device: str
    reason: str
    revoked_at: str  # ISO 8601, UTC
    serials: tuple[str, ...]  # hex serial numbers of the certificates revoked
    withdrawn: bool  # whether the device was enrolled (and is withdrawn now)


def issued_serials(dock_dir: Path, device: str) -> list[int]:
    """Serial numbers of every certificate issued to ``device`` at this dock."""
    serials = []
    for path in sorted((Path(dock_dir) / ISSUED).glob(f"{check_device_id(device)}-*.pem")):
        serials.append(pki.serial_of(path.read_bytes()))
    return serials


def revocations(dock_dir: Path) -> list[Revocation]:
    """Every revocation made at this dock, oldest first."""
    path = Path(dock_dir) / REVOKED
    if not path.exists():
        return []
    return [Revocation(**{**entry, "serials": tuple(entry["serials"])})
            for entry in json.loads(path.read_text())]


def write_crl(dock_dir: Path) -> Path:
    """The CA's CRL naming every certificate revoked at this dock (an empty one if none)."""
    revoked = []
    for entry in revocations(dock_dir):
        at = dt.datetime.fromisoformat(entry.revoked_at)
        revoked += [(int(serial, 16), at) for serial in entry.serials]
    return pki.write_crl(dock_ca(dock_dir), Path(dock_dir) / CRL, revoked)


def revoke(dock_dir: Path, device: str, reason: str,
           at: dt.datetime | None = None) -> Revocation:
    """Revoke every certificate issued to ``device``, write the CRL, withdraw the device."""
    check_device_id(device)
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > 500 or any(ord(c) < 32 for c in reason):
        raise RevocationError("give the reason for the revocation (1-500 characters, one line)")
    serials = issued_serials(dock_dir, device)
    enrolled = registry.is_enrolled(dock_dir, device)
    if not serials and not enrolled:
        raise RevocationError(f"device {device} has no certificate issued at {dock_dir} and is "
                              "not enrolled there")
    at = (at or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    already = {s for r in revocations(dock_dir) for s in r.serials}
    entry = Revocation(device, reason, at.isoformat(),
                       tuple(f"{s:x}" for s in serials if f"{s:x}" not in already), enrolled)
    path = Path(dock_dir) / REVOKED
    entries = [asdict(r) for r in revocations(dock_dir)] + [asdict(entry)]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(entries, indent=1, ensure_ascii=False))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    write_crl(dock_dir)
    if enrolled:
        registry.withdraw(dock_dir, device, at)
    log.warning("revoked %s (%s): certificates %s", device, reason,
                ", ".join(entry.serials) or "none issued here")
    return entry
