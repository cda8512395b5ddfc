"""Enrolment (R18.3, R14.1; docs/enrolment.md): one story at the dock and over its network.

- ``bodycam dock enroll`` writes a device root the recorder uses as it is;
- no device root ever holds the agency's (or the dock's) private keys;
- device ids the protocol cannot sync, paths and reserved names are refused with nothing
  written; an unenrolled recorder refuses in one line (exit 2) and nothing enrols it;
- ``bodycam dock serve``'s HTTPS endpoint and ``bodycam enroll --code`` end to end, with
  every refusal the threat model promises.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                          load_pem_private_key)

from bodycam.cli import main
from bodycam.wiring import build_device, first_selfcheck, open_recorder
from dock import pki
from dock.enrolment_server import MAX_WRONG_TRIES, CodeBook, RateLimit
from dock.enrollment import enroll_device
from firmware_py.config import load as load_config
from firmware_py.evidence import keys
from firmware_py.evidence.audit import scan
from simulator.harness.runner import Simulation
from simulator.harness.scenario import Scenario
from sync.credentials import device_sync_files
from sync.enrolment import EnrolmentRefused, enroll_over_network, parse_code

ROOT = Path(__file__).resolve().parent.parent
BODYCAM = [sys.executable, "-m", "bodycam"]
UNIT = "Baofeng County HRSS Labour Inspection Brigade"
FAST = {"video": {"width": 320, "height": 180, "fps": 10},
        "recording": {"pre_event_seconds": 2}}


def dock_config(tmp_path: Path, port: int = 0, attempts: int = 100) -> Path:
    path = tmp_path / "dock.toml"
    path.write_text(f'[dock]\ndir = "{tmp_path / "dock"}"\narchive = "{tmp_path / "archive"}"\n'
                    f'[enrolment]\nport = {port}\nattempts_per_minute = {attempts}\n')
    return path


def private_secrets(dock_dir: Path) -> dict[str, bytes]:
    """Every private key at the dock, as PEM and as raw bytes where it has them."""
    found = {}
    for path in [dock_dir / keys.AGENCY_KEY, dock_dir / "keys/dock_ed25519.pem",
                 dock_dir / "ca/ca.key"]:
        pem = path.read_bytes()
        found[f"{path.name} PEM"] = pem.strip()
        key = load_pem_private_key(pem, None)
        found[f"{path.name} DER"] = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8,
                                                      NoEncryption())
        try:
            found[f"{path.name} raw"] = key.private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                          NoEncryption())
        except ValueError:  # EC keys have no raw form
            pass
    return found


def assert_no_dock_secrets(device_root: Path, dock_dir: Path) -> None:
    secrets_ = private_secrets(dock_dir)
    files = [p for p in device_root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for name, secret in secrets_.items():
            assert secret not in data, f"{name} found in {path}"
    assert not (device_root / keys.AGENCY_KEY).exists()


def assert_complete(device_root: Path, dock_dir: Path, device: str) -> None:
    """Everything the recorder needs, consistent with the dock."""
    identity = keys.device_identity(device_root, device)
    assert identity.unit == UNIT
    registry = keys.load_registry(dock_dir)
    assert registry[identity.key_id].device == device  # the device's key is the registered one
    files = device_sync_files(device_root, device)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate((dock_dir / "ca/ca.crt").read_bytes())
    assert files.ca.read_bytes() == (dock_dir / "ca/ca.crt").read_bytes()
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == f"CN={device}"
    tls_key = load_pem_private_key(files.key.read_bytes(), None)
    assert tls_key.public_key() == cert.public_key()  # its key was made on the device
    assert files.key.stat().st_mode & 0o077 == 0
    assert files.dock_public.read_bytes() == (dock_dir / "keys/dock_ed25519.pub.pem").read_bytes()
    assert identity.agency_public == keys.agency_key(dock_dir).public_key()


# --- enrolment at the dock ------------------------------------------------------------------

@pytest.mark.req("R14.1", "R18.3")
def test_dock_enroll_writes_a_root_the_recorder_runs_as_it_is(tmp_path, capsys):
    config = dock_config(tmp_path)
    device_root = tmp_path / "rec" / "device"
    assert main(["dock", "--config", str(config), "enroll", "--device-root", str(device_root),
                 "--device-id", "BC-0002", "--unit", UNIT]) == 0
    assert "enrolled BC-0002" in capsys.readouterr().out
    assert_complete(device_root, tmp_path / "dock", "BC-0002")
    assert_no_dock_secrets(device_root, tmp_path / "dock")
    # The recorder on that root, nothing enrolling it: configured as BC-0001 (device.toml's
    # default), it runs as what the dock enrolled, and signs with the registered key.
    # (``bodycam run --root``'s recorder: the root is the device's, nothing enrols it.)
    recorder = open_recorder(load_config(overrides=FAST), device_root, dock=False)
    try:
        report = first_selfcheck(recorder, 30)
    finally:
        recorder.finish()
    assert report is not None
    entries, problem = scan(device_root / "audit.jsonl")
    assert problem is None
    boot = next(e for e in entries if e["kind"] == "boot")
    assert boot["fields"]["device"] == "BC-0002" and boot["fields"]["unit"] == UNIT
    assert not (tmp_path / "rec" / "dock").exists()  # no simulated agency was made
    assert not (device_root / "dock").exists()


@pytest.mark.parametrize("device_id", ["../../x", "a/b", "BC.0002", "x" * 33, "", "-BC",
                                       "dock", "Dock", "incoming", "INCOMING", "BC 2"])
def test_dock_enroll_refuses_bad_ids_writing_nothing(tmp_path, capsys, device_id):
    config = dock_config(tmp_path)
    device_root = tmp_path / "device"
    code = main(["dock", "--config", str(config), "enroll", "--device-root", str(device_root),
                 f"--device-id={device_id}", "--unit", UNIT])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "device id" in err
    assert not device_root.exists() and not (tmp_path / "dock").exists()
    assert not (tmp_path / "archive").exists() and not (tmp_path / "x").exists()
    code = main(["dock", "--config", str(config), "enroll-code", f"--device-id={device_id}",
                 "--unit", UNIT])
    assert code == 2 and not (tmp_path / "dock").exists()


@pytest.mark.parametrize("unit", ["", "line\nbreak", "x" * 201])
def test_dock_enroll_refuses_bad_units_writing_nothing(tmp_path, unit):
    config = dock_config(tmp_path)
    for command in (["enroll", "--device-root", str(tmp_path / "device")], ["enroll-code"]):
        assert main(["dock", "--config", str(config), *command, "--device-id", "BC-0002",
                     f"--unit={unit}"]) == 2
    assert not (tmp_path / "device").exists() and not (tmp_path / "dock").exists()


@pytest.mark.parametrize("layout", ["same", "device inside dock", "dock inside device"])
def test_no_enrolment_puts_the_dock_inside_a_device(tmp_path, layout):
    dock_dir = tmp_path / "dock"
    device_root = {"same": dock_dir, "device inside dock": dock_dir / "devices" / "d",
                   "dock inside device": tmp_path}[layout]
    for enrol in (enroll_device, keys.enroll):
        with pytest.raises(keys.KeyFileError, match="overlap"):
            enrol(device_root, dock_dir, "BC-0002", UNIT)
    assert not dock_dir.exists()  # checked before the agency's key pair is made
    config = dock_config(tmp_path)
    assert main(["dock", "--config", str(config), "enroll", "--device-root", str(device_root),
                 "--device-id", "BC-0002", "--unit", UNIT]) == 2
    assert not dock_dir.exists()


@pytest.mark.req("R14.1")
def test_simulated_device_is_enrolled_beside_its_dock_without_agency_secrets(tmp_path):
    from bodycam.simulation import simulation
    from simulator.harness import scenario as sc
    simulation(sc.parse({"scenario": {"name": "t", "duration": "3s"}, "config": FAST}, "t"),
               tmp_path).run()
    secret = (tmp_path / "dock" / keys.AGENCY_KEY).read_bytes().strip()
    raw = keys.agency_key(tmp_path / "dock").private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                           NoEncryption())
    for path in (tmp_path / "device").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes() and raw not in path.read_bytes(), path


# --- an unenrolled recorder ---------------------------------------------------------------

def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*BODYCAM, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.req("R18.3")
@pytest.mark.parametrize("hardware", ["sim", "pi"])
def test_unenrolled_recorder_refuses_in_one_line(tmp_path, hardware):
    (tmp_path / "device.toml").write_text(f'[device]\nhardware = "{hardware}"\n')
    result = run_cli("run", "--config", "device.toml", "--root", "empty", "--seconds", "1",
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "not enrolled" in lines[0] and "will not record" in lines[0]
    assert re.search(r"bodycam dock enroll --device-root \S*empty", lines[0])
    assert "bodycam enroll --dock HOST[:PORT] --code CODE --root" in lines[0]
    assert not list(tmp_path.rglob("enrollment.json"))
    assert not list(tmp_path.rglob("agency_x25519.pem"))  # no simulated agency either


def test_simulation_enrols_only_when_asked(tmp_path):
    config = load_config(overrides=FAST)
    scenario = Scenario("run", "test", time.time(), 3600)
    with pytest.raises(keys.NotEnrolledError, match="bodycam dock enroll"):
        Simulation(scenario, tmp_path / "a", config, build_device=build_device, enroll_with=None)
    assert not (tmp_path / "a").exists()
    sim = Simulation(scenario, tmp_path / "b", config, build_device=build_device,
                     enroll_with=tmp_path / "agency")
    sim.finish()
    assert (tmp_path / "b/device/enrollment.json").exists()
    assert (tmp_path / "agency" / keys.AGENCY_KEY).exists() and not (tmp_path / "b/dock").exists()


# --- enrolment over the network -------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real ``bodycam dock serve`` (embedded broker) with its HTTPS enrolment endpoint."""
    tmp = tmp_path_factory.mktemp("served")
    config = dock_config(tmp)
    out = open(tmp / "serve.out", "w")
    proc = subprocess.Popen([*BODYCAM, "dock", "--config", str(config), "serve", "--seconds",
                             "240"], cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    port = None
    while port is None and time.monotonic() < deadline and proc.poll() is None:
        match = re.search(r"enrolment over HTTPS at 127\.0\.0\.1:(\d+)",
                          (tmp / "serve.out").read_text())
        port = int(match[1]) if match else time.sleep(0.2)
    assert port is not None, (tmp / "serve.out").read_text()
    yield tmp, config, port
    proc.terminate()
    proc.wait(30)
    out.close()


def test_dock_serve_refuses_to_start_when_the_enrolment_port_is_taken(tmp_path):
    import socket
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = dock_config(tmp_path, port=taken.getsockname()[1])
        result = run_cli("dock", "--config", str(config), "serve", "--seconds", "5",
                         cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "enrolment endpoint cannot listen" in result.stderr
    assert "listening through" not in result.stdout


def make_code(config: Path, device: str, capsys) -> str:
    capsys.readouterr()
    assert main(["dock", "--config", str(config), "enroll-code", "--device-id", device,
                 "--unit", UNIT, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["code"]


def served_output(tmp: Path, needle: str) -> str:
    deadline = time.monotonic() + 10
    while needle not in (text := (tmp / "serve.out").read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return text


@pytest.mark.req("R14.1", "R18.3")
def test_network_enrolment_end_to_end(served, capsys):
    tmp, config, port = served
    code = make_code(config, "BC-0101", capsys)
    root = tmp / "rec-0101"
    result = run_cli("enroll", "--dock", f"127.0.0.1:{port}", "--code", code, "--root",
                     str(root), cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert "enrolled BC-0101" in result.stdout
    assert_complete(root, tmp / "dock", "BC-0101")
    assert_no_dock_secrets(root, tmp / "dock")
    assert "enrolment: BC-0101 enrolled from 127.0.0.1" in served_output(tmp, "BC-0101 enrolled")
    # The same code again: single use.
    again = run_cli("enroll", "--dock", f"127.0.0.1:{port}", "--code", code, "--root",
                    str(tmp / "rogue"), cwd=tmp)
    assert again.returncode == 1 and "already used" in again.stderr
    assert not (tmp / "rogue").exists()


def test_wrong_code_is_refused_and_burnt_after_the_allowed_tries(served, capsys):
    tmp, config, port = served
    code = parse_code(make_code(config, "BC-0102", capsys))
    other = make_code(config, "BC-0199", capsys)  # a real code, for another device
    wrong = f"BC-0102.{parse_code(other).secret}.{code.ca_pin}"
    for _ in range(MAX_WRONG_TRIES):
        with pytest.raises(EnrolmentRefused, match="wrong code"):
            enroll_over_network(f"127.0.0.1:{port}", wrong, tmp / "rec-0102")
    with pytest.raises(EnrolmentRefused, match="burnt"):
        enroll_over_network(f"127.0.0.1:{port}", str(code), tmp / "rec-0102")
    assert not (tmp / "rec-0102").exists()
    assert keys.registered_key(tmp / "dock", "BC-0102") is None


def test_a_code_enrols_only_its_own_device(served, capsys):
    tmp, config, port = served
    code = make_code(config, "BC-0103", capsys)
    ca = (tmp / "dock/ca/ca.crt").read_bytes()
    status, answer = post(port, ca, {"device_id": "BC-0104", "code": code,
                                     "device_public_key": "x", "csr": "y"})
    assert status == 400  # malformed keys never reach the code
    from sync.credentials import device_keys
    made = device_keys(tmp / "nowhere")
    request = {"device_id": "BC-0104", "code": code,
               "device_public_key": made.signing_public_pem.decode(),
               "csr": made.csr("BC-0104").decode()}
    status, answer = post(port, ca, request)
    assert status == 403 and "no enrolment code" in answer["error"]
    assert keys.registered_key(tmp / "dock", "BC-0104") is None
    # The code itself is untouched and still enrols BC-0103.
    enroll_over_network(f"127.0.0.1:{port}", code, tmp / "rec-0103")
    assert_complete(tmp / "rec-0103", tmp / "dock", "BC-0103")


@pytest.mark.parametrize("body", [
    b"[" * 15000, b"\xff\xfe", b"null", b'{"device_id": "../../x", "code": "a", '
    b'"device_public_key": "k", "csr": "c"}',
    json.dumps({"device_id": "BC-0110", "code": "x", "csr": "y",
                "device_public_key": "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n"}
               ).encode()])
def test_hostile_bodies_get_an_answer_and_touch_nothing(served, body):
    from sync.enrolment import pinned_context
    tmp, _, port = served
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=pinned_context(
        (tmp / "dock/ca/ca.crt").read_bytes()))
    try:
        conn.request("POST", "/v1/enrol", body=body)
        response = conn.getresponse()
        assert response.status == 400 and "error" in json.loads(response.read())
    finally:
        conn.close()
    assert not (tmp / "x").exists() and not list((tmp / "dock").glob("**/x.json"))


def test_expired_code_is_refused(served, capsys):
    tmp, config, port = served
    ca = (tmp / "dock/ca/ca.crt").read_bytes()
    code, _ = CodeBook(tmp / "dock").issue("BC-0105", UNIT, ca, 15, now=time.time() - 3600)
    with pytest.raises(EnrolmentRefused, match="expired"):
        enroll_over_network(f"127.0.0.1:{port}", str(code), tmp / "rec-0105")
    assert not (tmp / "rec-0105").exists()


def test_device_refuses_a_dock_whose_ca_is_not_the_codes(served, capsys, tmp_path):
    tmp, config, port = served
    code = parse_code(make_code(config, "BC-0106", capsys))
    impostor = pki.create_ca(tmp_path / "other-ca").cert_path.read_bytes()
    from sync.enrolment import ca_sha256
    forged = f"{code.device}.{code.secret}.{ca_sha256(impostor)[:32]}"
    with pytest.raises(EnrolmentRefused, match="not the dock this code came from"):
        enroll_over_network(f"127.0.0.1:{port}", forged, tmp / "rec-0106")
    assert not (tmp / "rec-0106").exists()
    # The secret was never sent: the real code still works.
    enroll_over_network(f"127.0.0.1:{port}", str(code), tmp / "rec-0106")
    assert_complete(tmp / "rec-0106", tmp / "dock", "BC-0106")


def test_device_refuses_a_server_certificate_not_from_the_pinned_ca(tmp_path, capsys):
    """An impostor that relays the real CA certificate but holds no certificate from it."""
    from sync import enrolment as wire
    real = pki.create_ca(tmp_path / "real")
    fake = pki.create_ca(tmp_path / "fake")
    cert = pki.issue_server(fake, tmp_path / "tls")
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Relay(BaseHTTPRequestHandler):
        def do_GET(self):
            body = real.cert_path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            posted.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    posted: list[bytes] = []
    server = HTTPServer(("127.0.0.1", 0), Relay)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = wire.new_code("BC-0107", real.cert_path.read_bytes())
        with pytest.raises(EnrolmentRefused, match="not from the pinned dock CA"):
            enroll_over_network(f"127.0.0.1:{server.server_address[1]}", str(code),
                                tmp_path / "rec")
    finally:
        server.shutdown()
    assert posted == [] and not (tmp_path / "rec").exists()


def test_a_device_certificate_cannot_stand_in_for_the_dock(tmp_path):
    """Host names are not checked against the pinned CA, so the server-auth usage must be:
    a recorder's client certificate from the same CA does not pass as the dock."""
    import socket
    import threading
    from sync.enrolment import pinned_context
    ca = pki.create_ca(tmp_path / "ca")
    client = pki.issue_client(ca, tmp_path / "c", "BC-0001")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(client.cert, client.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept():
        conn, _ = listener.accept()
        try:
            server.wrap_socket(conn, server_side=True).recv(1)
        except (ssl.SSLError, OSError):
            pass

    threading.Thread(target=accept, daemon=True).start()
    with pytest.raises(ssl.SSLCertVerificationError, match="purpose"):
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            pinned_context(ca.cert_path.read_bytes()).wrap_socket(raw)
    listener.close()


def test_oversize_request_is_refused_unread(served):
    """A request announcing more than the limit is answered 413 at once: the dock does not
    wait for (or read) the body."""
    import socket
    from sync.enrolment import pinned_context
    tmp, _, port = served
    context = pinned_context((tmp / "dock/ca/ca.crt").read_bytes())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"POST /v1/enrol HTTP/1.1\r\nHost: dock\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
                        + b"{" * 1000)
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.0 413") and b"larger than" in answer


def test_rate_limit_per_source_address():
    limit = RateLimit(3)
    assert all(limit.allow("10.0.0.5", now=100.0 + i) for i in range(3))
    assert not limit.allow("10.0.0.5", now=104.0)
    assert limit.allow("10.0.0.6", now=104.0)
    assert limit.allow("10.0.0.5", now=161.0)


def test_dock_keeps_only_the_codes_hash(served, capsys):
    tmp, config, _ = served
    code = make_code(config, "BC-0108", capsys)
    stored = (tmp / "dock/enrolment/codes.json").read_text()
    assert parse_code(code).secret not in stored and code not in stored
    assert json.loads(stored)["BC-0108"]["state"] == "pending"


def post(port: int, ca_pem: bytes, body: dict) -> tuple[int, dict]:
    from sync.enrolment import pinned_context
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=pinned_context(ca_pem))
    try:
        conn.request("POST", "/v1/enrol", body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()
