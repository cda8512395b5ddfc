"""Content Credentials (C2PA) on exported copies, with the C2PA SDK for Python (c2pa-python).

Every exported MP4 and JPEG carries a C2PA manifest signed by the dock's **export key**: an
ECDSA P-256 leaf (digitalSignature, emailProtection — what C2PA signers take) issued by the
dock's own CA, so any C2PA validator shows who made the copy and, with the dock's CA as a
trust anchor, reports it ``Trusted``. Its assertions bind the copy to the sealed originals:
the standard ``c2pa.actions`` (captured by the recorder — ``c2pa.created`` with the IPTC
source type *digitalCapture* — then ``c2pa.repackaged``: a container change, nothing
re-encoded), and ``org.bodycam.evidence`` with the device, unit, officer, activity, the
chain positions and SHA-256 of the manifests that sealed the originals, the plaintext
SHA-256 of each original, capture times and place. The hard binding (``c2pa.hash.bmff``
for MP4, ``c2pa.hash.data`` for JPEG) makes any change to the copy after export fail
validation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa

from dock import pki
from dock.enrollment import dock_ca

log = logging.getLogger(__name__)

EXPORT_DIR = Path("export")  # under the dock directory: export.crt, export.key
ASSERTION = "org.bodycam.evidence"
DIGITAL_CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
MIME = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
GENERATOR = {"name": "bodycam dock export", "version": "0.1.0"}


class CredentialsError(RuntimeError):
    """A copy that could not be signed or read; the message says which and why."""


@dataclass(frozen=True)
class ExportKey:
    """The dock's export signing key and its chain (leaf, then the dock CA)."""

    cert: Path
    key: Path
    ca_cert: Path

    def chain_pem(self) -> bytes:
        return self.cert.read_bytes() + self.ca_cert.read_bytes()


def export_key(dock_dir: Path) -> ExportKey:
    """The dock's export key, issued by its CA on first use."""
    ca = dock_ca(Path(dock_dir))
    folder = Path(dock_dir) / EXPORT_DIR
    cert, key = folder / "export.crt", folder / "export.key"
    if not (cert.exists() and key.exists()):
        files = pki.issue_content_signing(ca, folder, f"{ca.name} export")
        cert, key = files.cert, files.key
    return ExportKey(cert, key, ca.cert_path)


def manifest_definition(title: str, mime: str, captured_utc: str | None,
                        evidence: dict[str, Any]) -> dict[str, Any]:
    """The C2PA manifest of one exported copy: its actions and the seals it came from."""
    created: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": DIGITAL_CAPTURE,
                               "softwareAgent": {"name": "bodycam recorder"}}
    if captured_utc:
        created["when"] = captured_utc
    return {
        "claim_generator_info": [GENERATOR],
        "title": title,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                created,
                {"action": "c2pa.repackaged", "softwareAgent": GENERATOR,
                 "description": "no edits except container change: the sealed originals "
                                "decrypted and verified, their coded packets copied "
                                "unchanged into this file"}]}},
            {"label": ASSERTION, "data": evidence},
        ],
    }


def sign_copy(source: Path, target: Path, key: ExportKey, title: str,
              captured_utc: str | None, evidence: dict[str, Any]) -> None:
    """Write ``target``: ``source`` with a C2PA manifest signed by the export key."""
    mime = MIME.get(Path(source).suffix.lower())
    if mime is None:
        raise CredentialsError(f"{Path(source).name}: no Content Credentials for this type")
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            b"es256", key.chain_pem(), key.key.read_bytes(), None))
        builder = c2pa.Builder(manifest_definition(title, mime, captured_utc, evidence))
        with open(source, "rb") as src, open(target, "w+b") as dst:
            builder.sign(signer, mime, src, dst)
    except c2pa.C2paError as exc:
        raise CredentialsError(f"{Path(source).name}: C2PA signing failed: {exc}") from None
    log.info("Content Credentials on %s", Path(target).name)


@dataclass(frozen=True)
class Credentials:
    """What a C2PA validator says about a copy."""

    state: str  # "Trusted", "Valid" or "Invalid"
    failures: list[str]  # validation codes that failed
    evidence: dict[str, Any] | None  # our assertion, when present
    signer: str | None  # the signing certificate's issuer/common name, as the SDK reports


def read_credentials(path: Path, trust_anchor: Path | None = None) -> Credentials:
    """Validate a copy's Content Credentials; with ``trust_anchor`` (the dock CA's PEM)
    a good signature reports ``Trusted``."""
    context = None
    if trust_anchor is not None:
        settings = c2pa.Settings.from_json(json.dumps({
            "trust": {"trust_anchors": Path(trust_anchor).read_text()},
            "verify": {"verify_trust": True}}))
        context = c2pa.Context(settings)
    try:
        reader = c2pa.Reader(str(path), context=context) if context else c2pa.Reader(str(path))
    except c2pa.C2paError as exc:
        return Credentials("Invalid", [f"unreadable: {exc}"], None, None)
    results = reader.get_validation_results() or {}
    active = results.get("activeManifest", {}) if isinstance(results, dict) else {}
    failures = [f.get("code", "?") for f in active.get("failure", [])]
    manifest = reader.get_active_manifest() or {}
    evidence = next((a.get("data") for a in manifest.get("assertions", [])
                     if a.get("label") == ASSERTION), None)
    signature = manifest.get("signature_info") or {}
    signer = signature.get("common_name") or signature.get("issuer")
    return Credentials(str(reader.get_validation_state()), failures, evidence, signer)
