"""On ``hardware = "pi"`` the recorder syncs when it is docked, through the same wiring as
in the simulator (R13.1, R13.2).

The Pi's real backends run here on what this machine has: gpiozero's own mock pins (its
default pin factory, as on a Pi it would be lgpio), a Linux ``power_supply`` tree whose dock
supply goes online, the GNSS receiver's serial line as a pseudo-terminal, statvfs storage.
The camera and microphone backends (picamera2, PortAudio) find no camera or sound card
here and report a hardware error; the rest of the recorder runs. The
evidence to sync was recorded first by the simulated recorder on the same device root. The
dock is ``bodycam dock``'s service on a real Mosquitto with mutual TLS and the shipped ACL;
the recorder finds it through ``[dock]`` in its configuration and its enrolment's
certificates. Nothing here calls the sync directly: the agent sees external power, its core
says docked, and the composition root's docking hook does the rest.
"""

from __future__ import annotations

import os
import time

import pytest
from gpiozero import Device as GpioDevice
from gpiozero.pins.mock import MockFactory

from bodycam.simulation import simulation
from bodycam.wiring import PiRecorder
from dock.enrollment import dock_client, enroll_device
from dock.service import DockService
from firmware_py.evidence import audit
from firmware_py.config import load
from simulator.battery import SimBattery
from simulator.harness import scenario as sc
from sync.device_sync import offers

UNIT = "Baofeng County HRSS Labour Inspection Brigade"
FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 10, "pre_event_seconds": 3}}


@pytest.fixture
def mock_pins(monkeypatch):
    # gpiozero's default factory for this test alone: fresh pins, nothing left claimed.
    monkeypatch.setattr(GpioDevice, "pin_factory", MockFactory())


def record_a_little(out):
    enroll_device(out / "device", out / "dock", "BC-0001", UNIT)
    events = [{"at": 3, "action": "press", "button": "record"},
              {"at": 14, "action": "long_press", "button": "record"}]  # the activity ends
    simulation(sc.parse({"scenario": {"name": "pi", "duration": "20s"}, "config": FAST,
                         "event": events}, "pi.toml"), out).run()


@pytest.mark.req("R13.1", "R13.2")
def test_a_pi_recorder_syncs_its_evidence_when_docked(tmp_path, broker, mock_pins):
    record_a_little(tmp_path)
    root, dock_dir = tmp_path / "device", tmp_path / "dock"
    waiting = sorted(o.name for o, _ in offers(root / "evidence"))
    assert any(name.endswith(".ts.bce") for name in waiting)

    cert = dock_client(dock_dir)
    dock = DockService(dock_dir, tmp_path / "archive", broker.host, broker.port,
                       tls=(broker.ca_file, cert.cert, cert.key))
    dock.start()
    battery = SimBattery(tmp_path / "power_supply", start_percent=80.0)
    gnss_master, gnss_slave = os.openpty()
    config = load(overrides={
        "device": {"hardware": "pi"},
        "gnss": {"port": os.ttyname(gnss_slave)},
        "power": {"sysfs_root": str(tmp_path / "power_supply")},
        "dock": {"host": broker.host, "port": broker.port, "retry_s": 1.0}})
    recorder = PiRecorder(config, root)
    try:
        recorder.start()
        recorder.advance(1.5)
        assert recorder.device.link is not None and not recorder.device.link.busy
        battery.dock()  # the officer drops the recorder into the dock
        deadline = time.monotonic() + 60
        while not recorder.device.link.results and time.monotonic() < deadline:
            recorder.advance(0.2)
        assert recorder.device.link.results, "no sync session ran after docking"
        result = recorder.device.link.results[0]
    finally:
        recorder.finish()
        dock.stop()
        os.close(gnss_master)
        os.close(gnss_slave)

    assert result.done and not result.failed and not result.refused_receipts
    snapshots = [n for n in result.receipted if n.startswith("audit-")]
    heads = [n for n in result.receipted if ".chainhead." in n]
    assert len(heads) == 2, heads  # the chain head signed at this docking, and its signature
    assert sorted(set(result.receipted) - set(snapshots) - set(heads)) == waiting
    left = [p for p in (root / "evidence").rglob("*") if p.is_file()
            and not p.name.startswith(".")]
    assert left == [], "the device keeps nothing the dock receipted"
    archived = {p.name for p in (tmp_path / "archive" / "BC-0001").rglob("*") if p.is_file()}
    assert set(waiting) <= archived
    kinds = [e["kind"] for e in audit.scan(root / "audit.jsonl")[0]]
    assert "docked" in kinds and "evidence_deleted_after_receipt" in kinds
    assert kinds.index("docked") < kinds.index("evidence_deleted_after_receipt")


@pytest.mark.req("R13.2")
def test_a_pi_recorder_without_its_dock_keeps_everything_and_says_why(tmp_path, mock_pins):
    record_a_little(tmp_path)
    root = tmp_path / "device"
    waiting = sorted(o.name for o, _ in offers(root / "evidence"))
    SimBattery(tmp_path / "power_supply", start_percent=80.0, docked=True)  # a charger
    gnss_master, gnss_slave = os.openpty()
    # A dock address where nothing listens: the charger is not a dock.
    config = load(overrides={
        "device": {"hardware": "pi"},
        "gnss": {"port": os.ttyname(gnss_slave)},
        "power": {"sysfs_root": str(tmp_path / "power_supply")},
        "dock": {"host": "127.0.0.1", "port": 9, "retry_s": 1.0}})
    recorder = PiRecorder(config, root)
    try:
        recorder.start()
        recorder.advance(3.0)
        assert recorder.device.link.busy, "it keeps trying while on external power"
    finally:
        recorder.finish()
        os.close(gnss_master)
        os.close(gnss_slave)
    assert sorted(o.name for o, _ in offers(root / "evidence")) == waiting
    entries = audit.scan(root / "audit.jsonl")[0]
    unreachable = [e for e in entries if e["kind"] == "dock_unreachable"]
    assert len(unreachable) == 1 and "127.0.0.1:9" in unreachable[0]["fields"]["why"]
