"""What enrolment leaves on the device for dock sync, and where under the device root.

The dock writes these files at enrolment (``dock.enrollment.enroll_device``); the device
reads them when it docks: its MQTT client certificate and key with the CA certificate to
check the broker by (under ``DEVICE_TLS``), and the dock's public key to check receipts
with (``DOCK_PUB``). Kept here, below ``dock/``, so the device's side of sync needs nothing
from the dock's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_py.evidence import keys

DOCK_PUB = Path("keys/dock_ed25519.pub.pem")  # the dock's receipt key (same path at the dock)
DEVICE_TLS = Path("keys/mqtt")


@dataclass(frozen=True)
class DeviceSyncFiles:
    ca: Path
    cert: Path
    key: Path
    dock_public: Path


def device_sync_files(device_root: Path, device_id: str) -> DeviceSyncFiles:
    root = Path(device_root)
    files = DeviceSyncFiles(root / DEVICE_TLS / "ca.crt", root / DEVICE_TLS / f"{device_id}.crt",
                            root / DEVICE_TLS / f"{device_id}.key", root / DOCK_PUB)
    for path in (files.ca, files.cert, files.key, files.dock_public):
        if not path.exists():
            raise keys.KeyFileError(f"{path}: missing — enrol the device at the dock "
                                    "(bodycam dock enroll)")
    return files


def dock_public(device_root: Path) -> Ed25519PublicKey:
    return keys.load_public(Path(device_root) / DOCK_PUB, Ed25519PublicKey)  # type: ignore[return-value]


@dataclass(frozen=True)
class DockAddress:
    """Where a device finds its dock's broker, and the TLS files (CA, certificate, key) it
    presents there; ``tls`` is None for the embedded demo broker."""

    host: str
    port: int
    tls: tuple[Path, Path, Path] | None = None
