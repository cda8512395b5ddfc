"""Enrolment over the dock's network: the code, the wire format, and the device's client.

The custodian has the dock make a one-time code (``bodycam dock enroll-code``); the
recorder runs ``bodycam enroll --dock HOST[:PORT] --code CODE --root DIR``
(``enroll_over_network``). The code is ``<device id>.<secret>.<CA pin>``: the device id
it is bound to, 160 random bits (base32), and the first 128 bits (hex) of the SHA-256 of
the dock CA certificate's DER bytes — as kubeadm's join token carries the CA's hash.

The device:

1. fetches the CA certificate (``GET /v1/ca``) over TLS *without* verifying the server,
   and keeps it only if its SHA-256 starts with the code's pin; nothing secret is sent on
   that connection;
2. opens a new TLS connection that verifies the server's certificate against that CA
   alone (any address: the pinned CA is the dock's own, which issues server certificates
   only to the dock's own services), and sends ``POST /v1/enrol``: the device id, the
   code, its Ed25519 signing key's public half and a certificate request for an MQTT
   client key — both keys made on the device, their private halves never sent;
3. checks the answer (``sync.credentials.check_package``: the certificate is for its key,
   names it and chains to the pinned CA; the dock registered its signing key) and installs
   it (``sync.credentials.install``) exactly as ``bodycam dock enroll`` does. Nothing is
   written before that.

The dock's side is ``dock.enrolment_server``; the threat model is ``docs/enrolment.md``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from firmware_py.evidence import keys
from sync.credentials import EnrolmentPackage, device_keys, enrolled_device, install
from sync.protocol.fields import DEVICE_ID_PATTERN

DEFAULT_PORT = 8884
PATH_CA = "/v1/ca"
PATH_ENROL = "/v1/enrol"
MAX_REQUEST_BYTES = 16 * 1024  # an enrolment request is about 1.5 KiB
MAX_ANSWER_BYTES = 64 * 1024
SECRET_BYTES = 20  # 160 bits
PIN_HEX = 32  # 128 bits of the CA certificate's SHA-256
TIMEOUT_S = 15.0

CODE_RE = re.compile(rf"({DEVICE_ID_PATTERN})\.([a-z2-7]{{32}})\.([0-9a-f]{{{PIN_HEX}}})")


class EnrolmentRefused(keys.KeyFileError):
    """The enrolment did not happen: a bad code, a dock that is not the code's, a refusal."""


@dataclass(frozen=True)
class EnrolmentCode:
    device: str
    secret: str
    ca_pin: str

    def __str__(self) -> str:
        return f"{self.device}.{self.secret}.{self.ca_pin}"

    @property
    def digest(self) -> str:
        """What the dock keeps of the code: bound to the device id, never the code itself."""
        return code_digest(self.device, self.secret)


def code_digest(device: str, secret: str) -> str:
    return hashlib.sha256(f"bodycam-enrolment\0{device}\0{secret}".encode()).hexdigest()


def new_code(device: str, ca_pem: bytes) -> EnrolmentCode:
    secret = base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().lower().rstrip("=")
    return EnrolmentCode(device, secret, ca_sha256(ca_pem)[:PIN_HEX])


def parse_code(text: str) -> EnrolmentCode:
    match = CODE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise EnrolmentRefused("not an enrolment code: expected DEVICE-ID.SECRET.CA-PIN as "
                               "`bodycam dock enroll-code` prints it")
    return EnrolmentCode(match[1], match[2], match[3])


def ca_sha256(ca_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(ca_pem).fingerprint(hashes.SHA256()).hex()


def parse_address(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    if not host or not 0 < port < 65536:
        raise ValueError(f"{text!r}: expected HOST or HOST:PORT")
    return host, port


def _fetch(host: str, port: int, context: ssl.SSLContext, method: str, path: str,
           body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_S, context=context)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(MAX_ANSWER_BYTES + 1)
        if len(data) > MAX_ANSWER_BYTES:
            raise EnrolmentRefused(f"the dock's answer is larger than {MAX_ANSWER_BYTES} bytes")
        return response.status, data
    finally:
        conn.close()


def fetch_pinned_ca(host: str, port: int, code: EnrolmentCode) -> bytes:
    """The dock's CA certificate, fetched unverified and kept only if it matches the pin."""
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    status, ca_pem = _fetch(host, port, unverified, "GET", PATH_CA)
    if status != 200:
        raise EnrolmentRefused(f"{host}:{port} gave no CA certificate (HTTP {status})")
    try:
        fingerprint = ca_sha256(ca_pem)
    except ValueError:
        raise EnrolmentRefused(f"{host}:{port} sent something that is not a certificate") from None
    if not secrets.compare_digest(fingerprint[:PIN_HEX], code.ca_pin):
        raise EnrolmentRefused(f"{host}:{port} is not the dock this code came from: its CA "
                               f"certificate's SHA-256 is {fingerprint[:PIN_HEX]}…, the code "
                               f"pins {code.ca_pin}…; nothing was sent or written")
    return ca_pem


def pinned_context(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    # The pinned CA is the dock's own and issues server certificates only to the dock's
    # services; the dock may be reached at any of its addresses.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def enroll_over_network(address: str, code_text: str, device_root: Path) -> dict[str, str]:
    """Enrol ``device_root`` with the dock at ``address`` for ``code_text``; returns what
    ``install`` wrote (id, unit, key ids)."""
    code = parse_code(code_text)
    host, port = parse_address(address)
    root = Path(device_root)
    already = enrolled_device(root)
    if already is not None and already != code.device:
        raise EnrolmentRefused(f"{root} is already enrolled as {already!r}; the code is for "
                               f"{code.device!r}")
    try:
        ca_pem = fetch_pinned_ca(host, port, code)
        made = device_keys(root)
        request = json.dumps({"device_id": code.device, "code": str(code),
                              "device_public_key": made.signing_public_pem.decode(),
                              "csr": made.csr(code.device).decode()}).encode()
        status, data = _fetch(host, port, pinned_context(ca_pem), "POST", PATH_ENROL, request)
    except ssl.SSLCertVerificationError as exc:
        raise EnrolmentRefused(f"{host}:{port}: the server's certificate is not from the pinned "
                               f"dock CA ({exc.verify_message}); nothing was written") from None
    except (OSError, http.client.HTTPException) as exc:
        raise EnrolmentRefused(f"cannot reach the dock's enrolment service at {host}:{port} "
                               f"({exc})") from None
    try:
        answer = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        answer = None
    if status != 200 or not isinstance(answer, dict):
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise EnrolmentRefused(f"the dock refused the enrolment (HTTP {status}): "
                               f"{reason or 'no reason given'}; nothing was written")
    try:
        package = EnrolmentPackage(
            device=_text(answer, "device"), unit=_text(answer, "unit"),
            certificate=_text(answer, "certificate").encode(), ca=_text(answer, "ca").encode(),
            dock_public=_text(answer, "dock_public_key").encode(),
            agency_public=_text(answer, "agency_public_key").encode(),
            device_key_id=_text(answer, "device_key_id"), enrolled_at=_text(answer, "enrolled_at"))
    except KeyError as exc:
        raise EnrolmentRefused(f"the dock's answer lacks {exc}") from None
    if package.device != code.device or package.ca != ca_pem:
        raise EnrolmentRefused("the dock's answer is for another device or another CA")
    return install(root, package, made)


def _text(answer: dict, key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str):
        raise KeyError(key)
    return value


def package_json(package: EnrolmentPackage) -> dict[str, str]:
    """The dock's answer to a successful enrolment."""
    return {"device": package.device, "unit": package.unit,
            "certificate": package.certificate.decode(), "ca": package.ca.decode(),
            "dock_public_key": package.dock_public.decode(),
            "agency_public_key": package.agency_public.decode(),
            "device_key_id": package.device_key_id, "enrolled_at": package.enrolled_at}

