"""Devices at the dock (issue 12, items 5c and 5d): ``dock assign`` refuses a device never
enrolled; ``dock withdraw`` takes a device off the enrolled devices — its old key still
verifies what it sealed, the dock ignores it, the broker gives it no rights — and it can be
enrolled again with a new key."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bodycam.cli import main
from dock import registry
from dock.broker import MosquittoBroker
from dock.enrollment import dock_ca
from dock.pki import issue_client
from dock.service import DockService
from firmware_py.evidence import audit
from firmware_py.evidence.keys import device_key, load_registry, key_id, raw
from device.clock import DeviceClock
from sync import protocol as p
from sync.mqtt import client as mqtt_client
from sync.mqtt import close as mqtt_close


@pytest.fixture
def dock_conf(tmp_path) -> tuple[Path, Path]:
    conf = tmp_path / "dock.toml"
    dock_dir = tmp_path / "dock"
    conf.write_text(f'[dock]\ndir = "{dock_dir}"\narchive = "{tmp_path / "archive"}"\n')
    return conf, dock_dir


def _enroll(conf: Path, root: Path, device: str = "BC-W") -> int:
    return main(["dock", "enroll", "--config", str(conf), "--device-root", str(root),
                 "--device-id", device, "--unit", "Brigade"])


@pytest.mark.req("R18.3")
def test_assign_refuses_a_device_never_enrolled(dock_conf, tmp_path, capsys):
    conf, _ = dock_conf
    assert main(["dock", "assign", "BC-NEVER", "OFF-1", "--config", str(conf)]) == 1
    err = capsys.readouterr().err
    assert "device BC-NEVER is not enrolled" in err and "bodycam dock enroll" in err
    assert _enroll(conf, tmp_path / "dev") == 0
    assert main(["dock", "assign", "BC-W", "OFF-1", "--config", str(conf)]) == 0


def test_withdraw_then_enrol_again_and_the_old_evidence_still_verifies(dock_conf, tmp_path,
                                                                       capsys):
    conf, dock_dir = dock_conf
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    assert _enroll(conf, old_root) == 0
    # Evidence the old key sealed: a signed checkpoint over the device's audit log.
    signing = device_key(old_root)
    log = audit.AuditLog(old_root / "audit.jsonl", DeviceClock(), durable=False)
    log.sign_with(signing.sign, key_id(raw(signing.public_key())))
    log.append("note", {"n": 1})
    log.checkpoint()
    log.close()
    capsys.readouterr()
    # Enrolling a new key under the same id is refused, and names the way out.
    assert _enroll(conf, new_root) == 2
    assert "bodycam dock withdraw BC-W" in capsys.readouterr().err

    assert main(["dock", "withdraw", "BC-W", "--config", str(conf)]) == 0
    assert not (dock_dir / "devices" / "BC-W.json").exists()
    moved = list((dock_dir / "devices" / "withdrawn").glob("BC-W-*.json"))
    assert len(moved) == 1 and '"withdrawn_at"' in moved[0].read_text()
    assert registry.is_withdrawn(dock_dir, "BC-W")
    assert main(["dock", "assign", "BC-W", "OFF-1", "--config", str(conf)]) == 1
    assert main(["dock", "withdraw", "BC-W", "--config", str(conf)]) == 1  # not enrolled now

    assert _enroll(conf, new_root) == 0
    assert not registry.is_withdrawn(dock_dir, "BC-W")
    keys = load_registry(dock_dir)
    old_id = key_id(raw(signing.public_key()))
    new_id = key_id(raw(device_key(new_root).public_key()))
    assert keys[old_id].device == keys[new_id].device == "BC-W"
    assert keys[old_id].withdrawn_at and keys[new_id].withdrawn_at is None
    capsys.readouterr()
    assert main(["log", str(old_root), "--verify", "--trust", str(dock_dir)]) == 0
    assert "1 signed checkpoints verified" in capsys.readouterr().out


@pytest.mark.req("R18.3")
def test_the_dock_ignores_a_withdrawn_device(dock_conf, tmp_path):
    conf, dock_dir = dock_conf
    assert _enroll(conf, tmp_path / "w", "BC-W") == 0
    assert _enroll(conf, tmp_path / "k", "BC-K") == 0
    registry.withdraw(dock_dir, "BC-W")
    dock = DockService(dock_dir, tmp_path / "archive", "127.0.0.1", 1)  # never connected
    try:
        for device in ("BC-W", "BC-K"):
            hello = p.Hello(device, "1.0", 50, ())
            dock._handle(hello.topic(device), hello.encode(), time.time())
        assert ("BC-W" not in dock.progress) and ("BC-K" in dock.progress)
        assert any("BC-W is withdrawn" in reason for _, reason in dock.invalid)
        assert not any("BC-K" in topic for topic, _ in dock.invalid)
    finally:
        dock.archive.close()


def test_the_broker_gives_a_withdrawn_device_no_rights(tmp_path):
    ca = dock_ca(tmp_path / "dock")
    certs = {name: issue_client(ca, tmp_path / "certs", name) for name in ("dock", "BC-W", "BC-K")}
    with MosquittoBroker(ca, tmp_path / "broker", deny=["BC-W"]) as broker:
        received: list[str] = []
        subscribed = threading.Event()
        dock = mqtt_client(broker.host, broker.port, "dock-test", ca=ca.cert_path,
                           cert=certs["dock"].cert, key=certs["dock"].key)
        dock.on_connect = lambda c, u, f, r, props: c.subscribe("bodycam/#", 1)
        dock.on_subscribe = lambda *args: subscribed.set()
        dock.on_message = lambda c, u, m: received.append(m.topic)
        dock.loop_start()
        try:
            assert subscribed.wait(10)
            for device in ("BC-W", "BC-K"):
                c = mqtt_client(broker.host, broker.port, device, ca=ca.cert_path,
                                cert=certs[device].cert, key=certs[device].key)
                up = threading.Event()
                c.on_connect = lambda client, u, f, r, props, up=up: up.set()
                c.loop_start()
                assert up.wait(10), device  # a withdrawn device still connects...
                c.publish(f"bodycam/v1/up/{device}/hello", b"{}", qos=1).wait_for_publish(10)
                mqtt_close(c)
            deadline = time.monotonic() + 5
            while "bodycam/v1/up/BC-K/hello" not in received and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
        finally:
            mqtt_close(dock)
    assert received == ["bodycam/v1/up/BC-K/hello"]  # ...but nothing it sends arrives


def test_dock_serve_renders_the_withdrawn_into_the_acl(dock_conf, tmp_path):
    conf, dock_dir = dock_conf
    conf.write_text(conf.read_text() + '[broker]\nmode = "mosquitto"\n')
    assert _enroll(conf, tmp_path / "w", "BC-W") == 0
    assert main(["dock", "withdraw", "BC-W", "--config", str(conf)]) == 0
    assert main(["dock", "serve", "--config", str(conf), "--seconds", "0.1"]) == 0
    assert "user BC-W\ntopic deny #" in (dock_dir / "broker" / "acl").read_text()
