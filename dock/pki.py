"""The dock's small certificate authority for mutual TLS with the broker.

The dock enrols each device by issuing it a client certificate whose common name (CN) is
the device id. Mosquitto runs with ``use_identity_as_username``, so the CN *is* the MQTT
username, and the shipped ACL (``config/mosquitto/acl``) confines every device to
``bodycam/v1/up/<CN>/#`` (write) and ``bodycam/v1/down/<CN>/#`` (read). The dock's own
client certificate carries the CN ``dock``.

Keys are EC P-256: Mosquitto links OpenSSL, and P-256 with ECDSA is the curve every TLS
stack in the chain (OpenSSL, Python's ``ssl``, embedded clients) accepts without
configuration. Private keys are written unencrypted PKCS#8 PEM with mode 0600, because the
broker and the agent must read them unattended at boot; file permissions are the guard.

Layout of a CA directory::

    ca.crt   the CA certificate (give this to every client and the broker)
    ca.key   the CA private key (0600; stays on the dock)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware_py.evidence.device_ids import device_id_problem

log = logging.getLogger(__name__)

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"

#: The CA outlives many device generations; re-keying it means re-enrolling every device.
CA_VALIDITY = dt.timedelta(days=3650)
#: 825 days is the longest leaf lifetime that common TLS clients still accept without
#: complaint; a device is re-enrolled at the dock long before that.
LEAF_VALIDITY = dt.timedelta(days=825)
#: Certificates start a little in the past so a device whose RTC lags the dock's clock
#: (before its first dock time sync) does not reject a certificate as "not yet valid".
BACKDATE = dt.timedelta(hours=1)

#: Device ids (certificate CNs) become MQTT usernames and topic levels through the ACL's
#: ``%u``. A CN containing ``/``, ``+`` or ``#`` could widen a device's topic prefix, so
#: only a conservative character set is allowed.
_COMMON_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class CertFiles:
    """Paths of an issued certificate and its private key (both PEM)."""

    cert: Path
    key: Path

    def __iter__(self) -> Iterator[Path]:
        # Lets callers write ``cert, key = issue_client(...)``.
        return iter((self.cert, self.key))


@dataclass(frozen=True)
class CA:
    """A loaded certificate authority: its files and its parsed certificate and key."""

    dir: Path
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def name(self) -> str:
        """The CA's common name."""
        return _common_name(self.certificate)


def create_ca(dir: Path | str, name: str = "bodycam dock CA", *,
              validity: dt.timedelta = CA_VALIDITY) -> CA:
    """Create a new CA in ``dir`` (``ca.crt``, ``ca.key``) and return it.

    Refuses to overwrite an existing CA: replacing it silently would orphan every
    certificate already issued to devices.
    """
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = root / CA_CERT_NAME, root / CA_KEY_NAME
    if cert_path.exists() or key_path.exists():
        raise FileExistsError(f"a CA already exists in {root}")

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        # path_length=0: this CA signs leaves only, never intermediate CAs.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created CA %r in %s (serial %x)", name, root, cert.serial_number)
    return CA(root, cert_path, key_path, cert, key)


def load_ca(dir: Path | str) -> CA:
    """Load the CA previously created in ``dir``."""
    root = Path(dir)
    cert_path, key_path = root / CA_CERT_NAME, root / CA_KEY_NAME
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: expected an EC private key, got {type(key).__name__}")
    if cert.public_key() != key.public_key():
        raise ValueError(f"{key_path} does not belong to {cert_path}")
    return CA(root, cert_path, key_path, cert, key)


def issue_server(ca: CA, dir: Path | str, hostnames: Sequence[str] = ("localhost",),
                 ips: Sequence[str] = ("127.0.0.1",), *, name: str = "server",
                 validity: dt.timedelta = LEAF_VALIDITY) -> CertFiles:
    """Issue the broker's TLS server certificate into ``dir`` as ``<name>.crt/.key``.

    Clients verify the broker by subjectAltName, so every hostname and IP address that
    clients use to reach the broker must be listed.
    """
    if not hostnames and not ips:
        raise ValueError("a server certificate needs at least one hostname or IP address")
    cn = hostnames[0] if hostnames else ips[0]
    san = x509.SubjectAlternativeName(
        [x509.DNSName(h) for h in hostnames]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips])
    return _issue(ca, Path(dir), name, cn, ExtendedKeyUsageOID.SERVER_AUTH, validity, san)


def issue_client(ca: CA, dir: Path | str, common_name: str, *,
                 validity: dt.timedelta = LEAF_VALIDITY) -> CertFiles:
    """Issue a client certificate for ``common_name`` (a device id, or ``dock``).

    Written to ``dir`` as ``<common_name>.crt`` and ``<common_name>.key``.
    """
    if not _COMMON_NAME.fullmatch(common_name):
        raise ValueError(f"invalid client common name {common_name!r}: use letters, digits, "
                         "'.', '_' and '-' (it becomes an MQTT topic level)")
    return _issue(ca, Path(dir), common_name, common_name,
                  ExtendedKeyUsageOID.CLIENT_AUTH, validity, None)


def issue_content_signing(ca: CA, dir: Path | str, common_name: str, *,
                          name: str = "export", validity: dt.timedelta = LEAF_VALIDITY) -> CertFiles:
    """A leaf for signing content (C2PA Content Credentials on exported copies): key usage
    digitalSignature, extended key usage emailProtection, as C2PA signers take it."""
    return _issue(ca, Path(dir), name, common_name, ExtendedKeyUsageOID.EMAIL_PROTECTION,
                  validity, None)


def issue_time_stamping(ca: CA, dir: Path | str, common_name: str, *, name: str = "tsa",
                        validity: dt.timedelta = LEAF_VALIDITY) -> CertFiles:
    """A time-stamping authority's leaf (RFC 3161 2.3: extended key usage timeStamping
    only, marked critical; key usage digitalSignature and nonRepudiation)."""
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.private_key.public_key()), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    files = CertFiles(root / f"{name}.crt", root / f"{name}.key")
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("issued time-stamping certificate CN=%s serial %x into %s", common_name,
             cert.serial_number, root)
    return files


class CSRError(ValueError):
    """A certificate signing request the dock will not sign."""


#: A CSR is a few hundred bytes; anything far larger is not one of ours.
MAX_CSR_BYTES = 8 * 1024


def issue_client_from_csr(ca: CA, csr_pem: bytes, common_name: str, *,
                          validity: dt.timedelta = LEAF_VALIDITY) -> bytes:
    """A client certificate (PEM) for the key in ``csr_pem``, made and kept on the device.

    Only the CSR's public key is taken, after its self-signature is checked: the subject
    (``common_name``, the device id the dock decided), the usages and the lifetime are the
    dock's, whatever the request asks for. The key must be EC P-256, as every other one.
    """
    problem = device_id_problem(common_name)  # a device's: never the dock's or a reserved name
    if problem is not None:
        raise ValueError(f"invalid device certificate common name: {problem}")
    public = csr_public_key(csr_pem)
    cert = _build(ca, public, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, validity, None)
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    """The EC P-256 key of a certificate request whose self-signature verifies."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRError(f"certificate request larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CSRError(f"not a PEM certificate request ({exc})") from None
    if not csr.is_signature_valid:
        raise CSRError("certificate request signature does not verify")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise CSRError("certificate request key must be EC P-256")
    return public


def _build(ca: CA, public: ec.EllipticCurvePublicKey, cn: str, usage: x509.ObjectIdentifier,
           validity: dt.timedelta, san: x509.SubjectAlternativeName | None) -> x509.Certificate:
    now = _now()
    # A leaf must not outlive its CA: verifiers reject the chain once the CA expires.
    not_after = min(now + validity, ca.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.private_key.public_key()), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca.private_key, hashes.SHA256())


def _issue(ca: CA, root: Path, stem: str, cn: str, usage: x509.ObjectIdentifier,
           validity: dt.timedelta, san: x509.SubjectAlternativeName | None) -> CertFiles:
    root.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build(ca, key.public_key(), cn, usage, validity, san)
    files = CertFiles(root / f"{stem}.crt", root / f"{stem}.key")
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("issued %s certificate CN=%s serial %x into %s",
             "server" if usage == ExtendedKeyUsageOID.SERVER_AUTH else "client",
             cn, cert.serial_number, root)
    return files


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # ECDSA leaves only sign (the TLS handshake); key exchange uses ephemeral ECDHE keys.
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` so that it is never readable by others, not even for an instant."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        # The mode argument only applies to new files; an existing file keeps its mode.
        os.fchmod(fd, 0o600)
        f.write(pem)


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: A CRL is written again at every revocation and every broker start; this is only how
#: long one stays acceptable if neither happens (an expired CRL makes OpenSSL refuse all).
CRL_VALIDITY = dt.timedelta(days=3650)


def write_crl(ca: CA, path: Path | str, revoked: Sequence[tuple[int, dt.datetime]]) -> Path:
    """Write the CA's certificate revocation list (PEM) naming ``revoked`` — (serial number,
    revocation time) pairs — at ``path``, atomically. An empty list is a valid CRL: a
    broker with ``crlfile`` needs one from the CA even when nothing is revoked."""
    now = _now()
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.certificate.subject)
               .last_update(now - BACKDATE)
               .next_update(now + CRL_VALIDITY))
    for serial, at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build())
    crl = builder.sign(ca.private_key, hashes.SHA256())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
    return path


def serial_of(cert_pem: bytes) -> int:
    """The serial number of a PEM certificate."""
    return x509.load_pem_x509_certificate(cert_pem).serial_number


def keep_issued(folder: Path, common_name: str, cert_pem: bytes) -> Path:
    """Keep a copy of a certificate issued to ``common_name`` as
    ``<folder>/<common_name>-<serial hex>.pem``, so that it can be revoked later."""
    path = Path(folder) / f"{common_name}-{serial_of(cert_pem):x}.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert_pem)
    return path
