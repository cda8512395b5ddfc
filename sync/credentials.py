"""What enrolment leaves on the device for dock sync, and where under the device root.

Enrolment (``docs/enrolment.md``) has one device side, here, whether the dock enrols a
device root it can reach (``bodycam dock enroll``: ``dock.enrollment.enroll_device``) or
the recorder enrols over the dock's network (``bodycam enroll --code``:
``sync.enrolment``): the device makes its keys (``DeviceKeys``: the Ed25519 signing key
and the MQTT client key, whose certificate request goes to the dock), the dock answers
with an ``EnrolmentPackage``, and ``install`` writes it. The device reads the files when it
docks: its MQTT client certificate and key with the CA certificate to check the broker by
(under ``DEVICE_TLS``), and the dock's public key to check receipts with (``DOCK_PUB``).
Kept here, below ``dock/``, so the device's side of sync needs nothing from the dock's code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID

from firmware_py.evidence import keys
from firmware_py.paths import DEVICE_KEY, ENROLLMENT

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
                                    "(bodycam dock enroll, or bodycam enroll --code; "
                                    "docs/enrolment.md)")
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


# --- enrolment: the device's side -----------------------------------------------------------

@dataclass(frozen=True)
class DeviceKeys:
    """The keys a device enrols with, made on the device: the signing key (``existing``
    when the device root already has one) and the MQTT client key. Private halves never
    leave the device; the dock gets ``signing_public`` and ``csr``."""

    signing: Ed25519PrivateKey
    tls: ec.EllipticCurvePrivateKey
    existing: bool

    @property
    def signing_public_pem(self) -> bytes:
        return keys.pem_public(self.signing.public_key())

    def csr(self, device_id: str) -> bytes:
        """A certificate signing request for the MQTT client key (the dock sets the name)."""
        request = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
                   .sign(self.tls, hashes.SHA256()))
        return request.public_bytes(serialization.Encoding.PEM)


def device_keys(device_root: Path) -> DeviceKeys:
    """The signing key already in ``device_root``, or a new one (kept only by ``install``),
    and a new MQTT client key. Nothing is written."""
    root = Path(device_root)
    existing = (root / DEVICE_KEY).exists()
    signing = keys.device_key(root) if existing else Ed25519PrivateKey.generate()
    return DeviceKeys(signing, ec.generate_private_key(ec.SECP256R1()), existing)


@dataclass(frozen=True)
class EnrolmentPackage:
    """What the dock gives an enrolled device (all public): its id and unit, its client
    certificate, the CA that certificate and the broker's come from, the dock's receipt key
    and the agency's encryption key (public halves, PEM)."""

    device: str
    unit: str
    certificate: bytes
    ca: bytes
    dock_public: bytes
    agency_public: bytes
    device_key_id: str
    enrolled_at: str


def enrolled_device(device_root: Path) -> str | None:
    """The id ``device_root`` is enrolled as, None when it is not enrolled."""
    if not (Path(device_root) / ENROLLMENT).exists():
        return None
    return keys.read_enrollment(device_root)["device"]


def check_package(package: EnrolmentPackage, device_keys_: DeviceKeys) -> X25519PublicKey:
    """Refuse a package that does not fit the keys it answers: the client certificate must be
    for our TLS key, name the device and chain to the package's CA; the registered signing
    key must be ours; the public keys must parse. Returns the agency key."""
    try:
        cert = x509.load_pem_x509_certificate(package.certificate)
        ca = x509.load_pem_x509_certificate(package.ca)
        agency = serialization.load_pem_public_key(package.agency_public)
        dock = serialization.load_pem_public_key(package.dock_public)
    except ValueError as exc:
        raise keys.KeyFileError(f"enrolment answer: unreadable certificate or key ({exc})") from None
    if not isinstance(agency, X25519PublicKey) or not isinstance(dock, Ed25519PublicKey):
        raise keys.KeyFileError("enrolment answer: agency key must be X25519, dock key Ed25519")
    if cert.public_key() != device_keys_.tls.public_key():
        raise keys.KeyFileError("enrolment answer: the client certificate is not for this "
                                "device's key")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != package.device:
        raise keys.KeyFileError("enrolment answer: the client certificate names another device")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise keys.KeyFileError(f"enrolment answer: client certificate not issued by the CA "
                                f"({exc or type(exc).__name__})") from None
    if package.device_key_id != keys.key_id(keys.raw(device_keys_.signing.public_key())):
        raise keys.KeyFileError("enrolment answer: the dock registered another signing key")
    return agency


def install(device_root: Path, package: EnrolmentPackage, device_keys_: DeviceKeys) -> dict[str, str]:
    """Write an enrolment into ``device_root``: the signing key (if new), the MQTT client key,
    certificate and CA, the dock's receipt key, the agency's public key, and last
    ``enrollment.json``. Only public material comes from the dock."""
    root = Path(device_root)
    agency = check_package(package, device_keys_)
    root.mkdir(parents=True, exist_ok=True)
    if not device_keys_.existing:
        keys.store_device_key(root, device_keys_.signing)
    folder = root / DEVICE_TLS
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key_path = folder / f"{package.device}.key"
    pem = device_keys_.tls.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, 0o600)
        fh.write(pem)
    keys._write_public(folder / f"{package.device}.crt", package.certificate)
    keys._write_public(folder / "ca.crt", package.ca)
    keys._write_public(root / DOCK_PUB, package.dock_public)
    result = keys.write_enrollment(root, package.device, package.unit, agency,
                                   package.device_key_id, package.enrolled_at)
    return result | {"mqtt_certificate": str(folder / f"{package.device}.crt")}
