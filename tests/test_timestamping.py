"""RFC 3161 tokens over chain heads (issue 18): the unit's own TSA (``openssl ts -reply``
driven by the dock) and an external one reached over HTTP, both checked by
``openssl ts -verify`` against the CA that issued the TSA's certificate."""

from __future__ import annotations

import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from dock.enrollment import dock_ca
from dock.timestamping import Timestamper, TimestampError, _tsa_files

assert subprocess.run(["openssl", "version"], capture_output=True).returncode == 0, \
    "needs openssl (make test installs it)"


def openssl_verify(data: Path, token: Path, ca: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in", str(token),
                           "-CAfile", str(ca)], capture_output=True, text=True, timeout=30)


@pytest.mark.req("R18.1")
def test_the_units_tsa_stamps_a_file_and_openssl_verifies_it(tmp_path):
    dock = tmp_path / "dock"
    ca = dock_ca(dock)
    head = tmp_path / "X.chainhead.json"
    head.write_bytes(b'{"format":"bodycam-chainhead/1","sequence":7}')
    token = Timestamper(dock).stamp(head)
    assert token.name == "X.chainhead.tsr" and oct(token.stat().st_mode)[-3:] == "444"
    proc = openssl_verify(head, token, ca.cert_path)
    assert proc.returncode == 0 and "Verification: OK" in proc.stdout, proc.stderr
    # The certificate says what it is for: timeStamping, critical (RFC 3161 2.3).
    cert, _, _ = _tsa_files(dock)
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                          capture_output=True, text=True, timeout=30).stdout
    assert "X509v3 Extended Key Usage: critical" in text and "Time Stamping" in text
    other = tmp_path / "other.json"
    other.write_bytes(head.read_bytes() + b" ")
    assert openssl_verify(other, token, ca.cert_path).returncode != 0


def test_an_external_tsa_is_asked_over_http(tmp_path):
    """``[timestamp] url``: the same request posted as application/timestamp-query."""
    tsa_dock = tmp_path / "tsa-dock"  # the external authority, here another dock's TSA
    ca = dock_ca(tsa_dock)
    _, _, config = _tsa_files(tsa_dock)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers["Content-Type"])
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with tempfile.NamedTemporaryFile(suffix=".tsq") as tsq:
                tsq.write(query)
                tsq.flush()
                reply = subprocess.run(["openssl", "ts", "-reply", "-config", str(config),
                                        "-queryfile", tsq.name], capture_output=True,
                                       timeout=30).stdout
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        head = tmp_path / "Y.chainhead.json"
        head.write_bytes(b'{"sequence":3}')
        url = f"http://127.0.0.1:{server.server_address[1]}/tsa"
        token = Timestamper(tmp_path / "dock", url).stamp(head)
        assert seen == ["application/timestamp-query"]
        assert openssl_verify(head, token, ca.cert_path).returncode == 0
        assert not (tmp_path / "dock" / "tsa").exists()  # the unit's own TSA was not used
    finally:
        server.shutdown()
    with pytest.raises(TimestampError, match="TSA http://127.0.0.1:9/"):
        Timestamper(tmp_path / "dock", "http://127.0.0.1:9/").token(head)
