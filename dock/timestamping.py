"""Trusted time for chain heads: an RFC 3161 time-stamp token from the unit's own
time-stamping authority (TSA), or from an external one.

When the dock files a device's signed chain head it asks a TSA for a token over the head's
bytes (SHA-256) and keeps it beside the head as ``….chainhead.tsr``, read-only. The time a
recording existed then rests on the unit's clock and key, not on the device's clock alone;
``openssl ts -verify -data HEAD -in HEAD.tsr -CAfile ca/ca.crt`` checks it with stock
tools, and ``bodycam verify`` reports it (``firmware_py.evidence.chainhead.check_token``).

The unit's TSA is ``openssl ts -reply`` driven by the dock, with a signing certificate
(extended key usage timeStamping, critical, as RFC 3161 requires) issued by the dock's CA
into ``tsa/`` of the dock directory. ``url`` sends the same request to an external TSA
over HTTP (``application/timestamp-query``) instead.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import urllib.request
from pathlib import Path


from dock import pki
from dock.enrollment import dock_ca
from firmware_py.evidence.store import READ_ONLY, write_atomic

log = logging.getLogger(__name__)

TSA_DIR = Path("tsa")
POLICY = "1.3.6.1.4.1.57264.18.1"  # the unit TSA's policy (an arbitrary private OID)
TIMEOUT_S = 30


class TimestampError(RuntimeError):
    """No token: the message says which step failed and what openssl or the TSA said."""


def _tsa_files(dock_dir: Path) -> tuple[Path, Path, Path]:
    """The unit TSA's certificate, key and openssl configuration, made on first use."""
    folder = Path(dock_dir) / TSA_DIR
    cert, key, config = folder / "tsa.crt", folder / "tsa.key", folder / "tsa.cnf"
    if cert.exists() and key.exists() and config.exists():
        return cert, key, config
    ca = dock_ca(Path(dock_dir))
    files = pki.issue_time_stamping(ca, folder, f"{ca.name} TSA")
    cert, key = files.cert, files.key
    (folder / "serial").write_text("01\n")
    config.write_text(f"""# The unit's time-stamping authority, driven by the bodycam dock (openssl ts -reply).
[ tsa ]
default_tsa = unit_tsa
[ unit_tsa ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = {ca.cert_path}
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {POLICY}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = yes
ess_cert_id_alg = sha256
""")
    log.info("unit TSA certificate issued into %s", folder)
    return cert, key, config


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["openssl", *args], input=data, capture_output=True,
                              timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise TimestampError("openssl is not installed (make test installs it)") from None
    if proc.returncode != 0:
        raise TimestampError(f"openssl {args[0]} {args[1]}: "
                             f"{proc.stderr.decode(errors='replace').strip()[:300]}")
    return proc.stdout


class Timestamper:
    """Asks the unit's TSA (or ``url``) for a token over a file, and keeps it beside it."""

    def __init__(self, dock_dir: Path, url: str | None = None) -> None:
        self.dock_dir = Path(dock_dir)
        self.url = url

    def token(self, data_path: Path) -> bytes:
        """A DER RFC 3161 time-stamp response over ``data_path``'s SHA-256."""
        query = _openssl("ts", "-query", "-data", str(data_path), "-sha256", "-cert",
                         "-no_nonce")
        if self.url:
            request = urllib.request.Request(self.url, data=query, headers={
                "Content-Type": "application/timestamp-query"})
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                    return answer.read()
            except OSError as exc:
                raise TimestampError(f"TSA {self.url}: {exc}") from None
        _, _, config = _tsa_files(self.dock_dir)
        with tempfile.TemporaryDirectory() as tmp:
            tsq = Path(tmp) / "query.tsq"
            tsq.write_bytes(query)
            return _openssl("ts", "-reply", "-config", str(config), "-queryfile", str(tsq))

    def stamp(self, data_path: Path) -> Path:
        """Write ``<stem>.tsr`` beside ``data_path`` (``X.chainhead.json`` →
        ``X.chainhead.tsr``), read-only; an existing token is kept."""
        target = Path(data_path).with_suffix(".tsr")
        if not target.exists():
            write_atomic(target, self.token(data_path), mode=READ_ONLY)
        return target
