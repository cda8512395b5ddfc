"""The dock on the network (issue 12, item 3): ``bodycam dock serve`` in Mosquitto mode
listening on every interface, its server certificate naming the dock's configured names,
a device reaching it by a non-loopback address of this machine, and the start line saying
where devices connect."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from dock.broker import certificate_names
from dock.enrollment import dock_ca
from dock.pki import issue_client
from sync.mqtt import client as mqtt_client
from sync.mqtt import close as mqtt_close

ROOT = Path(__file__).resolve().parent.parent


def _this_machines_address() -> str:
    """A non-loopback IPv4 address of this machine, or 127.0.0.1 when it has none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return "127.0.0.1" if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture
def serving(tmp_path):
    address = _this_machines_address()
    dock_dir = tmp_path / "dock"
    ca = dock_ca(dock_dir)
    device = issue_client(ca, tmp_path / "device", "BC-NET1")
    conf = tmp_path / "dock.toml"
    conf.write_text(f'[dock]\ndir = "{dock_dir}"\narchive = "{tmp_path / "archive"}"\n'
                    f'[broker]\nmode = "mosquitto"\nhost = "0.0.0.0"\n'
                    f'names = ["dock.brigade.test", "{address}"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "bodycam", "dock", "serve", "--config",
                             str(conf), "--seconds", "60"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        yield line, address, ca, device, dock_dir, proc
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


def test_dock_serve_on_every_interface_names_the_dock_and_takes_devices(serving):
    line, address, ca, device, dock_dir, proc = serving
    # The start line: where devices connect, over what, checked against which CA.
    match = re.search(r"devices connect to dock\.brigade\.test:(\d+) or "
                      + re.escape(address) + r":(\d+) with mutual TLS", line)
    assert match, line
    port = int(match.group(1))
    assert str(dock_dir / "ca" / "ca.crt") in line
    # Mosquitto listens on 0.0.0.0, not on loopback only.
    conf = (dock_dir / "broker" / "mosquitto.conf").read_text()
    assert f"listener {port} 0.0.0.0" in conf
    # The certificate the listener presents names the configured names, and localhost.
    pem = _presented_certificate(address, port)
    dns, ips = certificate_names_of(pem)
    assert {"localhost", "dock.brigade.test"} <= set(dns)
    assert {"127.0.0.1", address} <= set(ips)
    # A device with its client certificate connects by this machine's address (the TLS
    # hostname check included: paho checks the broker's name against that address).
    connected = threading.Event()
    c = mqtt_client(address, port, "BC-NET1", ca=ca.cert_path, cert=device.cert, key=device.key)
    c.on_connect = lambda client, userdata, flags, reason, props: (
        None if reason.is_failure else connected.set())
    c.loop_start()
    try:
        assert connected.wait(15), "the device could not connect by " + address
    finally:
        mqtt_close(c)
    assert proc.poll() is None


def test_dock_serve_warns_on_every_interface(serving):
    *_, proc = serving
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert "listens on 0.0.0.0 (every interface); devices must reach it by one of the " \
           "certificate's names" in err


def test_a_server_certificate_lacking_a_name_is_issued_again(tmp_path):
    from dock.broker import MosquittoBroker

    ca = dock_ca(tmp_path / "dock")
    with MosquittoBroker(ca, tmp_path / "broker") as broker:
        first = broker.server_cert.read_bytes()
    with MosquittoBroker(ca, tmp_path / "broker") as broker:
        assert broker.server_cert.read_bytes() == first  # nothing new wanted: kept
    with MosquittoBroker(ca, tmp_path / "broker", names=["dock.brigade.test"]) as broker:
        assert broker.server_cert.read_bytes() != first
        assert "dock.brigade.test" in certificate_names(broker.server_cert)[0]


def _presented_certificate(host: str, port: int) -> bytes:
    """The server certificate as the listener presents it (openssl s_client, independent of
    our own code)."""
    deadline = time.monotonic() + 10
    while True:
        run = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}",
                              "-showcerts"], input="", capture_output=True, text=True,
                             timeout=20)
        found = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                          run.stdout, re.S)
        if found:
            return found.group(0).encode()
        if time.monotonic() > deadline:
            raise AssertionError(run.stdout + run.stderr)
        time.sleep(0.2)


def certificate_names_of(pem: bytes) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (san.get_values_for_type(x509.DNSName),
            [str(a) for a in san.get_values_for_type(x509.IPAddress)])
