"""Enrolment at the dock (R18.3): keys for sealing, and a client certificate for the broker.

``enroll_device`` does what ``firmware_py.evidence.keys.enroll`` does — the device's signing key,
registered with the agency; the agency's public key, id and unit to the device — and
adds what sync needs: a client certificate from the dock's CA whose common name is the
device id (the broker takes it as the username, and the ACL confines the device to its own
topics), the CA certificate to check the broker with, and the dock's receipt key, so the
device can check a receipt before it deletes anything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dock import pki
from firmware_py.evidence import keys
from sync.credentials import DEVICE_TLS, DOCK_PUB

DOCK_KEY = Path("keys/dock_ed25519.pem")
CA_DIR = Path("ca")
DOCK_CLIENT = "dock"  # the dock's own client certificate CN (the ACL's readwrite user)


def dock_key(dock_dir: Path) -> Ed25519PrivateKey:
    """The dock's receipt-signing key, made on first use."""
    path = Path(dock_dir) / DOCK_KEY
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        keys._write_private(path, keys._pem_private(key))
        keys._write_public(Path(dock_dir) / DOCK_PUB, keys.pem_public(key.public_key()))
        return key
    return keys._load_private(path, Ed25519PrivateKey)  # type: ignore[return-value]


def dock_ca(dock_dir: Path) -> pki.CA:
    folder = Path(dock_dir) / CA_DIR
    if (folder / "ca.crt").exists():
        return pki.load_ca(folder)
    return pki.create_ca(folder, "bodycam dock CA")


def dock_client(dock_dir: Path) -> pki.CertFiles:
    """The dock service's own client certificate (CN ``dock``)."""
    folder = Path(dock_dir) / "keys" / "mqtt"
    cert = folder / f"{DOCK_CLIENT}.crt"
    if cert.exists():
        return pki.CertFiles(cert, folder / f"{DOCK_CLIENT}.key")
    return pki.issue_client(dock_ca(dock_dir), folder, DOCK_CLIENT)


def enroll_device(device_root: Path, dock_dir: Path, device_id: str, unit: str) -> dict[str, str]:
    if device_id == DOCK_CLIENT:
        raise keys.KeyFileError(f"{device_id!r} is the dock's own name; choose another device id")
    result = keys.enroll(device_root, dock_dir, device_id, unit)
    dock_key(dock_dir)
    ca = dock_ca(dock_dir)
    folder = Path(device_root) / DEVICE_TLS
    if not (folder / f"{device_id}.crt").exists():
        pki.issue_client(ca, folder, device_id)
    shutil.copyfile(ca.cert_path, folder / "ca.crt")
    shutil.copyfile(Path(dock_dir) / DOCK_PUB, Path(device_root) / DOCK_PUB)
    os.chmod(folder, 0o700)
    return result | {"mqtt_certificate": str(folder / f"{device_id}.crt")}
