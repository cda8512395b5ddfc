"""Enrolment over the dock's network: one-time codes, and the HTTPS endpoint that redeems them.

``CodeBook`` keeps the codes the custodian made (``bodycam dock enroll-code``) in
``<dock>/enrolment/codes.json``: per device id only the code's SHA-256 (bound to the id),
its expiry, its state (``pending``, ``used``, ``expired``, ``burnt``) and the wrong tries.
A code is single use, expires (15 minutes by default), and is burnt after
``MAX_WRONG_TRIES`` wrong tries for its device id. Every change is made under an exclusive
lock on the file's lock file, so ``enroll-code`` and ``dock serve`` may run at once.

``EnrolmentServer`` (started by ``bodycam dock serve`` from ``[enrolment]`` in dock.toml) is
stdlib ``http.server`` behind TLS with a server certificate from the dock's CA:

- ``GET /v1/ca``: the CA certificate (public; the device checks it against the code's pin);
- ``POST /v1/enrol``: JSON ``device_id``, ``code``, ``device_public_key`` (Ed25519 PEM),
  ``csr`` (EC P-256 certificate request); answers the ``EnrolmentPackage`` as JSON, or an
  HTTP error with ``{"error": …}``.

Bounds: a request body of at most ``MAX_REQUEST_BYTES`` (announced by Content-Length, else
refused unread), per-connection timeouts, at most ``MAX_CONNECTIONS`` at once, TLS
handshakes on the connection's own thread, at most ``attempts_per_minute`` enrolment
requests per source address; the device id is checked against the protocol's pattern
before it names any file; the code's hash is compared in constant time. The device's
keys are checked (Ed25519; a certificate request with a valid self-signature for an EC
P-256 key) before the code is looked at, so a well-formed request is the only kind that
can use a code up. See ``docs/enrolment.md``.
"""

from __future__ import annotations

import fcntl
import hmac
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from dock import pki
from dock.enrollment import (EnrolmentError, check_device_id, check_unit, dock_ca,
                             issue_package)
from firmware_py.evidence import keys
from sync import enrolment as wire

log = logging.getLogger(__name__)

CODES = Path("enrolment/codes.json")
EVENTS = Path("enrolment/events.jsonl")
TLS_DIR = Path("enrolment/tls")
MAX_WRONG_TRIES = 5
MAX_VALID_MINUTES = 24 * 60
MAX_REQUEST_BYTES = wire.MAX_REQUEST_BYTES
MAX_CONNECTIONS = 16
CONNECTION_TIMEOUT_S = 10.0
MAX_SOURCES = 4096  # addresses the rate limiter remembers


class CodeRefused(Exception):
    """A code the dock does not accept; ``status`` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


class CodeBook:
    """The dock's one-time enrolment codes (hashes only), in the dock directory."""

    def __init__(self, dock_dir: Path) -> None:
        self.path = Path(dock_dir) / CODES

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                codes = json.loads(self.path.read_text()) if self.path.exists() else {}
            except (ValueError, OSError) as exc:
                raise keys.KeyFileError(f"{self.path}: unreadable ({exc})") from None
            before = json.dumps(codes, sort_keys=True)
            try:
                yield codes
            finally:  # a wrong try counts even though the redemption raises
                if json.dumps(codes, sort_keys=True) != before:
                    tmp = self.path.with_name(f".{self.path.name}.tmp")
                    tmp.write_text(json.dumps(codes, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)

    def issue(self, device_id: str, unit: str, ca_pem: bytes, valid_minutes: float,
              now: float | None = None) -> tuple[wire.EnrolmentCode, float]:
        """A new code for ``device_id`` (replacing any code it had); returns it and its expiry."""
        check_device_id(device_id)
        check_unit(unit)
        if not 0 < valid_minutes <= MAX_VALID_MINUTES:
            raise EnrolmentError(f"--valid-minutes {valid_minutes:g}: allowed 0 < minutes <= "
                                 f"{MAX_VALID_MINUTES}")
        now = time.time() if now is None else now
        code = wire.new_code(device_id, ca_pem)
        expires = now + valid_minutes * 60
        with self._locked() as codes:
            codes[device_id] = {"digest": code.digest, "unit": unit, "created_at": now,
                                "expires_at": expires, "state": "pending", "wrong_tries": 0}
        return code, expires

    @contextmanager
    def redeem(self, device_id: str, code_text: str,
               now: float | None = None) -> Iterator[dict[str, Any]]:
        """Check a code for ``device_id`` (a checked id) under the lock; the body runs the
        enrolment and, if it returns, the code is used. A refusal raises ``CodeRefused``
        (a wrong code counts a try, and burns the code at ``MAX_WRONG_TRIES``)."""
        now = time.time() if now is None else now
        with self._locked() as codes:
            record = codes.get(device_id)
            if record is None:
                raise CodeRefused("no enrolment code is pending for this device id")
            if record["state"] == "pending" and now > record["expires_at"]:
                record["state"] = "expired"
            if record["state"] != "pending":
                raise CodeRefused({"used": "this code was already used",
                                   "expired": "this code has expired",
                                   "burnt": f"this code was burnt after {MAX_WRONG_TRIES} "
                                            "wrong tries"}.get(record["state"], "code unusable"))
            try:
                given = wire.parse_code(code_text)
                digest = wire.code_digest(device_id, given.secret)
            except wire.EnrolmentRefused:
                digest = ""
            if not keys_equal(digest, record["digest"]):
                record["wrong_tries"] += 1
                if record["wrong_tries"] >= MAX_WRONG_TRIES:
                    record["state"] = "burnt"
                raise CodeRefused("wrong code")
            yield record
            record["state"] = "used"
            record["used_at"] = now


def keys_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode(), b.encode())


class RateLimit:
    """At most ``per_minute`` events per source address in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, source: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._seen) >= MAX_SOURCES and source not in self._seen:
                for key in [k for k, q in self._seen.items() if not q or q[-1] < now - 60]:
                    del self._seen[key]
                if len(self._seen) >= MAX_SOURCES:
                    return False
            times = self._seen.setdefault(source, deque())
            while times and times[0] < now - 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


class EnrolmentService:
    """What the endpoint does with a request body; no sockets here."""

    def __init__(self, dock_dir: Path, attempts_per_minute: int = 10,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.dock_dir = Path(dock_dir)
        self.ca = dock_ca(self.dock_dir)
        self.ca_pem = self.ca.cert_path.read_bytes()
        self.codes = CodeBook(self.dock_dir)
        self.limit = RateLimit(attempts_per_minute)
        self.on_event = on_event
        self._lock = threading.Lock()

    def _event(self, outcome: str, source: str, device: str | None, detail: str) -> None:
        record = {"at": keys.now_utc(), "outcome": outcome, "source": source,
                  "device": device, "detail": detail}
        path = self.dock_dir / EVENTS
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        line = (f"enrolment: {device} enrolled from {source} ({detail})" if outcome == "enrolled"
                else f"enrolment refused from {source} for {device or '?'}: {detail}")
        log.info(line)
        if self.on_event is not None:
            self.on_event(line)

    def enrol(self, body: bytes, source: str) -> tuple[int, dict[str, Any]]:
        device = None
        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise CodeRefused("the request must be a JSON object", 400)
            fields = {}
            for name in ("device_id", "code", "device_public_key", "csr"):
                value = request.get(name)
                if not isinstance(value, str):
                    raise CodeRefused(f"{name} missing or not a string", 400)
                fields[name] = value
            device = check_device_id(fields["device_id"])
            signing = load_pem_public_key(fields["device_public_key"].encode())
            if not isinstance(signing, Ed25519PublicKey):
                raise CodeRefused("device_public_key must be an Ed25519 public key", 400)
            csr = fields["csr"].encode()
            pki.csr_public_key(csr)
            with self.codes.redeem(device, fields["code"]) as record:
                registered = keys.registered_key(self.dock_dir, device)
                ours = keys.key_id(keys.raw(signing))
                if registered not in (None, ours):
                    raise CodeRefused(f"{device} is already enrolled with another key "
                                      f"({registered})", 409)
                package = issue_package(self.dock_dir, device, record["unit"], signing, csr)
        except CodeRefused as exc:
            self._event("refused", source, device, str(exc))
            return exc.status, {"error": str(exc)}
        except (ValueError, RecursionError, UnsupportedAlgorithm,
                keys.KeyFileError) as exc:  # JSON, PEM, CSR, id
            reason = str(exc).splitlines()[0][:200]
            self._event("refused", source, device, reason)
            return 400, {"error": reason}
        self._event("enrolled", source, device,
                    f"unit {package.unit}, device key {package.device_key_id}")
        return 200, wire.package_json(package)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.0"
    server_version = "bodycam-dock-enrolment"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("%s %s", self.client_address[0], format % args)

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: dict[str, Any]) -> None:
        self._answer(status, json.dumps(value).encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != wire.PATH_CA:
            self._json(404, {"error": "not found"})
            return
        self._answer(200, self.server.service.ca_pem, "application/x-pem-file")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        service = self.server.service
        source = self.client_address[0]
        if self.path != wire.PATH_ENROL:
            self._json(404, {"error": "not found"})
            return
        if not service.limit.allow(source):
            self._json(429, {"error": "too many enrolment attempts from this address; wait a "
                             "minute"})
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) == 0:
            self._json(411, {"error": "Content-Length required"})
            return
        if int(length) > MAX_REQUEST_BYTES:
            service._event("refused", source, None, f"request of {length} bytes (limit "
                           f"{MAX_REQUEST_BYTES})")
            self._json(413, {"error": f"request larger than {MAX_REQUEST_BYTES} bytes"})
            return
        body = self.rfile.read(int(length))
        status, answer = service.enrol(body, source)
        self._json(status, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext,
                 service: EnrolmentService) -> None:
        self.context = context
        self.service = service
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: refuse rather than queue without bound
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The TLS handshake runs here, on the connection's thread, under its timeout: a
        # client that stalls it holds one slot, never the accept loop.
        request.settimeout(CONNECTION_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError) as exc:
            log.debug("connection from %s: %s", client_address, exc)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("enrolment request from %s failed", client_address)


class EnrolmentServer:
    """The dock's enrolment endpoint on ``host:port`` (0: any free port), on a thread."""

    def __init__(self, dock_dir: Path, host: str, port: int, *, attempts_per_minute: int = 10,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.service = EnrolmentService(dock_dir, attempts_per_minute, on_event)
        tls = Path(dock_dir) / TLS_DIR
        ips = ["127.0.0.1"] + ([host] if _is_ip(host) and host not in ("0.0.0.0", "127.0.0.1",
                                                                     "::") else [])
        cert = pki.issue_server(self.service.ca, tls, hostnames=["localhost",
                                                                  socket.gethostname()], ips=ips)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert.cert, cert.key)
        self._server = _Server((host, port), context, self.service)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.2}, name="enrolment", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve loop that must be running
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
