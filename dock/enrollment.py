"""Enrolment at the dock (R18.3): keys for sealing, and a client certificate for the broker.

One story (``docs/enrolment.md``): the device makes its keys, the dock registers the
device's signing key with the agency and answers with an ``EnrolmentPackage`` —
the client certificate from the dock's CA for the device's own TLS key (common name = the
device id: the broker takes it as the username, and the ACL confines the device to its
own topics), the CA certificate to check the broker with, the dock's receipt key (so the
device can check a receipt before it deletes anything), the agency's public key, the id
and the unit — and the device installs it (``sync.credentials.install``).
``enroll_device`` does all of it for a device root the dock can write
(``bodycam dock enroll``); ``dock.enrolment_server`` does the dock's half over the network
for a code (``bodycam dock enroll-code``, ``bodycam enroll --code``).

Nothing private crosses: the agency's and the dock's private keys stay in the dock
directory, and a device root that overlaps it is refused.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dock import pki
from firmware_py.evidence import keys
from sync.credentials import (DOCK_PUB, EnrolmentPackage, device_keys, enrolled_device,
                              install)
from firmware_py.evidence.device_ids import RESERVED_DEVICE_IDS, device_id_problem

DOCK_KEY = Path("keys/dock_ed25519.pem")
CA_DIR = Path("ca")
ISSUED_DIR = CA_DIR / "issued"  # every device certificate issued, for revocation
DOCK_CLIENT = "dock"  # the dock's own client certificate CN (the ACL's readwrite user)
# Names a device id may not take (firmware_py.evidence.device_ids): the dock's own MQTT user,
# the archive's staging folder, the broker probe's CN. Compared without case.
RESERVED_IDS = RESERVED_DEVICE_IDS
assert DOCK_CLIENT in RESERVED_IDS


class EnrolmentError(keys.KeyFileError):
    """An enrolment the dock refuses (bad device id, overlapping directories, …)."""


def check_device_id(device_id: str) -> str:
    """A device id the dock can enrol: one the sync protocol can carry (letters, digits,
    '_' and '-', at most 32, no '.', so never a path) and not a reserved name."""
    problem = device_id_problem(device_id)
    if problem is None:
        return device_id
    if isinstance(device_id, str) and device_id.lower() in RESERVED_IDS:
        raise EnrolmentError(f"device id {device_id!r} is reserved at the dock; choose another")
    raise EnrolmentError(f"device id {device_id!r} is not one the dock can sync: use 1-32 "
                         "letters, digits, '_' and '-', starting with a letter or digit")


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


def check_unit(unit: str) -> str:
    """A unit name for records and work records: 1-200 characters, no control characters."""
    if (not isinstance(unit, str) or not unit.strip() or len(unit) > 200
            or any(ord(c) < 32 or ord(c) == 127 for c in unit)):
        raise EnrolmentError(f"unit {unit!r}: give 1-200 characters, no control characters")
    return unit


def issue_package(dock_dir: Path, device_id: str, unit: str, signing_public: Ed25519PublicKey,
                  csr_pem: bytes) -> EnrolmentPackage:
    """The dock's half of an enrolment: register the device's signing key with the agency,
    sign its MQTT key's certificate request, and return what the device needs."""
    check_device_id(device_id)
    check_unit(unit)
    ca = dock_ca(dock_dir)
    certificate = pki.issue_client_from_csr(ca, csr_pem, device_id)  # before registering
    pki.keep_issued(Path(dock_dir) / ISSUED_DIR, device_id, certificate)  # to revoke it later
    dock_key(dock_dir)
    now = keys.now_utc()
    record, agency = keys.register(dock_dir, device_id, unit, signing_public, now)
    return EnrolmentPackage(device_id, unit, certificate, ca.cert_path.read_bytes(),
                            (Path(dock_dir) / DOCK_PUB).read_bytes(), keys.pem_public(agency),
                            record["key_id"], now)


def enroll_device(device_root: Path, dock_dir: Path, device_id: str, unit: str) -> dict[str, str]:
    """Enrol the device whose root the dock can write: everything the recorder needs goes
    into ``device_root`` (``bodycam run --root DEVICE_ROOT`` uses it as it is). Checks come
    first: a refused enrolment writes nothing anywhere."""
    check_device_id(device_id)
    check_unit(unit)
    keys.check_apart(device_root, dock_dir)
    already = enrolled_device(device_root)
    if already is not None and already != device_id:
        raise EnrolmentError(f"{device_root} is already enrolled as {already!r}; a device "
                             "root holds one device")
    made = device_keys(device_root)
    package = issue_package(dock_dir, device_id, unit, made.signing.public_key(),
                            made.csr(device_id))
    return install(device_root, package, made)
