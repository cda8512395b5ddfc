"""Keys and enrolment (R14.1, R18.1, R18.3).

- The **device** signs with an Ed25519 key generated on the device; the private half never
  leaves ``<device root>/keys/``.
- The **agency** opens evidence with an X25519 key pair; the private half stays with the
  agency (the dock directory's ``keys/``) and never reaches a device.
- **Enrolment** records the device's public key with the agency (``<dock>/devices/<id>.json``)
  and gives the device the agency's public key, its id and the unit it belongs to
  (``<device root>/enrollment.json``).

Private key files are created with owner-only permissions; a missing, unreadable or wrong
key is a ``KeyFileError`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                          PublicFormat, load_pem_private_key,
                                                          load_pem_public_key)

from firmware_py.evidence.device_ids import device_id_problem
from firmware_py.evidence.evidence_file import key_id
from firmware_py.paths import AGENCY_KEY, AGENCY_PUB, DEVICE_KEY, DEVICE_PUB, ENROLLMENT

REGISTRY = Path("devices")
WITHDRAWN = Path("withdrawn")  # under REGISTRY: records of withdrawn devices (dock.registry)


class KeyFileError(ValueError):
    """A key or enrolment file that is missing or not what it should be."""


def _write_private(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def _write_public(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)


def _pem_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def pem_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _load_private(path: Path, kind: type) -> object:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file missing") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from None
    if os.stat(path).st_mode & 0o077:
        raise KeyFileError(f"{path}: private key readable by others (mode "
                           f"{oct(os.stat(path).st_mode & 0o777)}); it must be 0600")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: holds a {type(key).__name__}, expected {kind.__name__}")
    return key


def load_public(path: Path, kind: type) -> object:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"{path}: public key file missing") from None
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: holds a {type(key).__name__}, expected {kind.__name__}")
    return key


# --- the agency (at the dock) ------------------------------------------------------------

def agency_key(dock_dir: Path, create: bool = False) -> X25519PrivateKey:
    path = Path(dock_dir) / AGENCY_KEY
    if create and not path.exists():
        key = X25519PrivateKey.generate()
        _write_private(path, _pem_private(key))
        _write_public(Path(dock_dir) / AGENCY_PUB, pem_public(key.public_key()))
        return key
    return _load_private(path, X25519PrivateKey)  # type: ignore[return-value]


def load_agency_private(path: Path) -> X25519PrivateKey:
    """The agency key given on a command line: its file, or a dock directory holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / AGENCY_KEY
    return _load_private(path, X25519PrivateKey)  # type: ignore[return-value]


@dataclass(frozen=True)
class EnrolledDevice:
    device: str
    unit: str
    public_key: Ed25519PublicKey
    key_id: str
    withdrawn_at: str | None = None  # a withdrawn device's key: its old evidence verifies


def load_registry(path: Path) -> dict[str, EnrolledDevice]:
    """Enrolled devices by key id, from a dock directory or its ``devices/`` folder — the
    withdrawn ones (``devices/withdrawn/``) included, so what they sealed still verifies."""
    path = Path(path)
    folder = path / REGISTRY if (path / REGISTRY).is_dir() else path
    if not folder.is_dir():
        raise KeyFileError(f"{path}: no enrolled devices here (expected a dock directory or "
                           "its devices/ folder)")
    devices = {}
    for entry in [*sorted((folder / WITHDRAWN).glob("*.json")), *sorted(folder.glob("*.json"))]:
        try:
            record = json.loads(entry.read_text())
            key = load_pem_public_key(record["public_key"].encode())
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            raise KeyFileError(f"{entry}: not an enrolment record ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{entry}: public key is not Ed25519")
        devices[key_id(raw(key))] = EnrolledDevice(record["device"], record["unit"], key,
                                                   key_id(raw(key)), record.get("withdrawn_at"))
    return devices


# --- the device --------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceIdentity:
    device: str
    unit: str
    signing_key: Ed25519PrivateKey
    agency_public: X25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(raw(self.signing_key.public_key()))

    @property
    def agency_key_id(self) -> str:
        return key_id(raw(self.agency_public))


def device_key(device_root: Path) -> Ed25519PrivateKey:
    """The device's signing key, generated here on first use and never copied out."""
    path = Path(device_root) / DEVICE_KEY
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(path, _pem_private(key))
        _write_public(Path(device_root) / DEVICE_PUB, pem_public(key.public_key()))
        return key
    return _load_private(path, Ed25519PrivateKey)  # type: ignore[return-value]


class NotEnrolledError(KeyFileError):
    """The device root holds no enrolment: the recorder must not record (R18.3)."""


def not_enrolled_message(device_root: Path, device_id: str | None = None) -> str:
    """One line: the recorder is not enrolled, and the commands that enrol it."""
    root = Path(device_root)
    return (f"this recorder is not enrolled (no {root / ENROLLMENT}) and will not record; enrol "
            f"it at the dock: bodycam dock enroll --device-root {root} --device-id "
            f"{device_id or 'ID'} --unit UNIT, or over the dock's network: bodycam enroll "
            f"--dock HOST[:PORT] --code CODE --root {root}")


def require_enrolled(device_root: Path, device_id: str | None = None) -> None:
    """Raise ``NotEnrolledError`` (one line, what to run) unless ``device_root`` is enrolled."""
    if not (Path(device_root) / ENROLLMENT).is_file():
        raise NotEnrolledError(not_enrolled_message(device_root, device_id))


def read_enrollment(device_root: Path) -> dict[str, str]:
    """The device's ``enrollment.json``; ``NotEnrolledError`` when there is none."""
    root = Path(device_root)
    path = root / ENROLLMENT
    try:
        enrollment = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotEnrolledError(not_enrolled_message(root)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not JSON ({exc.msg})") from None
    if not isinstance(enrollment, dict) or not all(
            isinstance(enrollment.get(k), str) for k in ("device", "unit", "device_key_id",
                                                         "agency_key_id")):
        raise KeyFileError(f"{path}: not an enrolment record")
    return enrollment


def check_apart(device_root: Path, dock_dir: Path) -> None:
    """Refuse a device root that is, holds or lies inside the dock directory: the agency's
    private key (and the dock's) live there and must never become part of a device."""
    device, dock = Path(device_root).resolve(), Path(dock_dir).resolve()
    if device == dock or dock in device.parents or device in dock.parents:
        raise KeyFileError(f"device root {device_root} and dock directory {dock_dir} overlap: "
                           "the dock's private keys would be inside the device; give the "
                           "device a directory of its own")


def register(dock_dir: Path, device_id: str, unit: str, public: Ed25519PublicKey,
             enrolled_at: str) -> tuple[dict[str, str], X25519PublicKey]:
    """The agency's side: record the device's public key in ``<dock>/devices/<id>.json``
    (refused when the id is enrolled with another key) and return the record and the
    agency's public key (its key pair made in the dock directory if there is none).
    ``device_id`` is checked first (``device_ids``): it becomes a file name."""
    problem = device_id_problem(device_id)
    if problem is not None:  # before anything is written: "../../x" is no file name
        raise KeyFileError(f"device id {problem}")
    agency = agency_key(dock_dir, create=True)
    record = {"device": device_id, "unit": unit, "public_key": pem_public(public).decode(),
              "key_id": key_id(raw(public)), "enrolled_at": enrolled_at}
    registry = Path(dock_dir) / REGISTRY
    registry.mkdir(parents=True, exist_ok=True)
    existing = registry / f"{device_id}.json"
    if existing.exists():
        old = json.loads(existing.read_text())
        if old.get("key_id") != record["key_id"]:
            raise KeyFileError(f"{existing}: device {device_id} is already enrolled with another "
                               f"key ({old.get('key_id')}); withdraw it at the dock first "
                               f"(bodycam dock withdraw {device_id})")
    _write_public(existing, json.dumps(record, indent=1).encode())
    return record, agency.public_key()


def registered_key(dock_dir: Path, device_id: str) -> str | None:
    """The key id the dock has registered for ``device_id`` (a checked id), if any."""
    path = Path(dock_dir) / REGISTRY / f"{device_id}.json"
    try:
        return json.loads(path.read_text()).get("key_id")
    except FileNotFoundError:
        return None


def write_enrollment(device_root: Path, device_id: str, unit: str,
                     agency_public: X25519PublicKey, device_key_id: str,
                     enrolled_at: str) -> dict[str, str]:
    """The device's side: the agency's PUBLIC key and ``enrollment.json`` (written last: its
    presence is what makes the device enrolled)."""
    root = Path(device_root)
    _write_public(root / AGENCY_PUB, pem_public(agency_public))
    enrollment = {"device": device_id, "unit": unit, "agency_key_id": key_id(raw(agency_public)),
                  "device_key_id": device_key_id, "enrolled_at": enrolled_at}
    _write_public(root / ENROLLMENT, json.dumps(enrollment, indent=1).encode())
    return enrollment


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def store_device_key(device_root: Path, key: Ed25519PrivateKey) -> None:
    """Keep a signing key made on the device (network enrolment makes it in memory and
    keeps it once the dock has registered it)."""
    _write_private(Path(device_root) / DEVICE_KEY, _pem_private(key))
    _write_public(Path(device_root) / DEVICE_PUB, pem_public(key.public_key()))


def enroll(device_root: Path, dock_dir: Path, device_id: str, unit: str) -> dict[str, str]:
    """Enrol a device with the agency whose dock directory is ``dock_dir`` (keys only; the
    dock's ``dock.enrollment.enroll_device`` adds what sync needs)."""
    problem = device_id_problem(device_id)
    if problem is not None:  # before the device's key is made
        raise KeyFileError(f"device id {problem}")
    check_apart(device_root, dock_dir)
    signing = device_key(device_root)
    now = now_utc()
    record, agency_public = register(dock_dir, device_id, unit, signing.public_key(), now)
    return write_enrollment(device_root, device_id, unit, agency_public, record["key_id"], now)


def device_identity(device_root: Path, device_id: str | None = None) -> DeviceIdentity:
    """What the agent signs and encrypts with; fails clearly when not enrolled."""
    root = Path(device_root)
    path = root / ENROLLMENT
    require_enrolled(root, device_id)
    enrollment = read_enrollment(root)
    if device_id is not None and enrollment.get("device") != device_id:
        raise KeyFileError(f"{path}: enrolled as {enrollment.get('device')!r} but configured as "
                           f"{device_id!r}")
    signing = device_key(root)
    if key_id(raw(signing.public_key())) != enrollment.get("device_key_id"):
        raise KeyFileError(f"{root / DEVICE_KEY}: not the key this device was enrolled with")
    agency = load_public(root / AGENCY_PUB, X25519PublicKey)
    if key_id(raw(agency)) != enrollment.get("agency_key_id"):  # type: ignore[arg-type]
        raise KeyFileError(f"{root / AGENCY_PUB}: not the agency key of the enrolment")
    return DeviceIdentity(enrollment["device"], enrollment["unit"], signing, agency)  # type: ignore[arg-type]
