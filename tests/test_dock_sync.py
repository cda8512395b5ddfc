"""Docking end to end (Art. 13): a shift's evidence crosses a real Mosquitto with mutual TLS
and the shipped ACL into the dock's archive, verified and receipted; the device keeps
nothing it has no receipt for, and deletes what it has.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
import sys

import pytest

from device.clock import DeviceClock
from firmware_py.evidence import audit
from simulator.harness import scenario as sc
from bodycam.simulation import simulation
from dock.enrollment import dock_client, enroll_device
from dock.service import DockService
from sync.credentials import device_sync_files
from sync.device_sync import DeviceSync, offers

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 10, "pre_event_seconds": 3},
        "device": {"officer": "OFF-0417"}}


def shift(out):
    """A short shift: two recordings with an interruption, a photo, the activity ended."""
    enroll_device(out / "device", out / "dock", "BC-0001", "Baofeng County HRSS Labour Inspection Brigade")
    events = [{"at": 5, "action": "press", "button": "record"},
              {"at": 14, "action": "press", "button": "photo"},
              {"at": 20, "action": "press", "button": "record"},
              {"at": 22, "action": "press", "button": "marker"},
              {"at": 30, "action": "press", "button": "record"},
              {"at": 42, "action": "long_press", "button": "record"}]
    simulation(sc.parse({"scenario": {"name": "dock", "duration": "50s"}, "config": FAST,
                         "event": events}, "dock.toml"), out).run()


def shift_and_dock(tmp_path, broker):
    """Record the shift, then start the dock service on the test's Mosquitto."""
    shift(tmp_path)
    dock_dir, device_root = tmp_path / "dock", tmp_path / "device"
    cert = dock_client(dock_dir)
    dock = DockService(dock_dir, tmp_path / "archive", broker.host, broker.port,
                       tls=(broker.ca_file, cert.cert, cert.key))
    dock.start()
    return dock_dir, device_root, dock


@pytest.mark.req("R4.1", "R4.2", "R4.3", "R12.3", "R13.2")
def test_docking_moves_every_sealed_file_into_the_archive(tmp_path, broker):
    dock_dir, device_root, dock = shift_and_dock(tmp_path, broker)
    waiting = offers(device_root / "evidence")
    kinds = {o.kind for o, _ in waiting}
    assert {"media", "metadata", "photo", "manifest", "signature", "record"} <= kinds
    files = device_sync_files(device_root, "BC-0001")
    log = audit.AuditLog(device_root / "audit.jsonl", DeviceClock())
    receipted: list[str] = []
    for _ in range(3):  # a file that failed is sent at the next docking, as on a real dock
        session = DeviceSync(device_root, "BC-0001", broker.host, broker.port,
                             evidence=device_root / "evidence",
                             audit_log=device_root / "audit.jsonl", correct_above_s=0.5,
                             tls=(files.ca, files.cert, files.key), audit=log, chunk_size=64 * 1024)
        result = session.run(timeout=60)
        assert not result.refused_receipts
        receipted += result.receipted
        if not result.failed and result.done:
            break
    log.close()
    snapshots = [name for name in receipted if name.startswith("audit-")]
    assert len(snapshots) == 1, "the audit log goes to the dock with the evidence"
    assert sorted(set(receipted) - set(snapshots)) == sorted(o.name for o, _ in waiting)
    # The device kept nothing that was receipted, and only its state file remains.
    left = [p for p in (device_root / "evidence").rglob("*") if p.is_file()]
    # Only the device's own state files remain (names starting with a dot: its numbering,
    # its clock correction, its heartbeat), none of them evidence.
    assert [p.name for p in left if not p.name.startswith(".")] == []
    # The archive holds it all, and it verifies on its own.
    archived = tmp_path / "archive" / "BC-0001"
    proc = subprocess.run([sys.executable, "-m", "bodycam", "verify", str(archived),
                           "--trust", str(dock_dir), "--key", str(dock_dir), "--json"],
                          capture_output=True, text=True)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], proc.stdout[-2000:]
    assert {"segment", "photo", "work_record", "activity"} <= {i["kind"] for i in report["items"]}
    deletions = [e for e in audit.read(device_root / "audit.jsonl")
                 if e["kind"] == "evidence_deleted_after_receipt"]
    assert len(deletions) == len(waiting) + 1
    # The audit log at the dock: the device's log up to the docking, an intact chain. At the
    # next docking only what was written since goes, and the chain runs on across the two.
    again = DeviceSync(device_root, "BC-0001", broker.host, broker.port,
                       evidence=device_root / "evidence",
                       audit_log=device_root / "audit.jsonl", correct_above_s=0.5,
                       tls=(files.ca, files.cert, files.key))
    (second,) = again.run(timeout=60).receipted
    first_last = int(snapshots[0].split("-")[2].split(".")[0])
    assert second.startswith(f"audit-{first_last + 1:06d}-")
    dock.stop()
    at_dock = sorted((tmp_path / "archive" / "BC-0001" / "audit").glob("audit-*.jsonl"))
    assert [p.name for p in at_dock] == [snapshots[0], second]
    joined = tmp_path / "joined.jsonl"
    joined.write_bytes(b"".join(p.read_bytes() for p in at_dock))
    entries = audit.read(joined)  # raises at the first break in the chain
    on_device = audit.read(device_root / "audit.jsonl")
    assert entries == on_device[: len(entries)] and len(entries) >= len(on_device) - 40
    assert result.clock_offset_s is not None and abs(result.clock_offset_s) < 1.0
    # The window was sized from the link it measured (sync/pacing.py), within its bounds.
    assert result.base_round_trip_s is not None and 0 < result.base_round_trip_s < 5
    assert result.window_bytes is not None and 2 << 20 <= result.window_bytes <= 64 << 20
    # The ledger (R4.1-R4.3): the check-out window covers the shift (which ran at the
    # scenario's default start, 2026-11-29 00:30 UTC); what was recorded comes from the seals.
    from dock import ledger
    from dock.archive import Archive
    from dock.enrollment import dock_key
    archive = Archive(tmp_path / "archive", dock_dir, dock_key(dock_dir), "dock")
    start = datetime(2026, 11, 29, 0, 30, tzinfo=timezone.utc).timestamp()
    ledger.assign(archive, "BC-0001", "OFF-0417", at=start - 60)
    with pytest.raises(ledger.LedgerError, match="checked out to OFF-0417"):
        ledger.assign(archive, "BC-0001", "OFF-9999")
    ledger.release(archive, "BC-0001", at=start + 3600)
    (row,) = ledger.rows(archive)
    assert (row.officer, row.activities, row.photos, row.interruptions) == ("OFF-0417", 1, 1, 1)
    assert row.segments >= 4
    assert "BC-0001,OFF-0417," in ledger.csv_text(archive)
    archive.close()


@pytest.mark.req("R13.2")
def test_transfer_resumes_after_the_broker_restarts(tmp_path, broker):
    import threading
    import time as _time

    dock_dir, device_root, dock = shift_and_dock(tmp_path, broker)
    waiting = offers(device_root / "evidence")
    total = sum(o.size for o, _ in waiting)
    before = {o.name: o.sha256 for o, _ in waiting}
    files = device_sync_files(device_root, "BC-0001")
    chunk = 32 * 1024
    session = DeviceSync(device_root, "BC-0001", broker.host, broker.port,
                         evidence=device_root / "evidence",
                         audit_log=device_root / "audit.jsonl", correct_above_s=0.5,
                         tls=(files.ca, files.cert, files.key), chunk_size=chunk, window=4)
    runner = threading.Thread(target=session.run, kwargs={"timeout": 90})
    runner.start()
    deadline = _time.monotonic() + 30
    while dock.progress.get("BC-0001") is None or dock.progress["BC-0001"].received_bytes < total // 3:
        assert _time.monotonic() < deadline, "transfer never got going"
        _time.sleep(0.01)
    broker.restart()  # the link drops mid-transfer; both sides reconnect by themselves
    runner.join(timeout=120)
    dock.settle()
    result = session.result
    # Every file archived and receipted in this one docking: none stuck on the device.
    still_here = {p.name for p in (device_root / "evidence").rglob("*") if p.is_file()}
    stuck = {n for n in still_here if not n.startswith(".")}
    if stuck:
        ids = {o.file_id for o, _ in waiting if o.name in stuck}
        device_view = [f for f in session.uploader.progress() if f.file_id in ids]
        dock_view = [f for f in dock._ingests["BC-0001"].progress() if f.file_id in ids]
        pytest.fail(f"stuck on the device: {sorted(stuck)}; device: {device_view}; "
                    f"dock: {dock_view}; failed: {result.failed}; done: {result.done}")
    dock.stop()
    assert result.done and not result.refused_receipts
    archived = {p.name: p for p in (tmp_path / "archive" / "BC-0001").rglob("*") if p.is_file()}
    for name, digest in before.items():  # the bytes the device offered, each of them
        assert hashlib.sha256(archived[name].read_bytes()).hexdigest() == digest
    assert set(before) <= set(result.receipted) and set(before) <= set(result.deleted)
    # Resumed from the dock's confirmed offset: chunks in flight at the cut (and a file
    # restarted from zero after a failure) may go twice, never the whole load.
    assert total <= result.bytes_sent <= total * 1.5


@pytest.mark.req("R13.1", "R13.2")
def test_simulate_docks_through_the_embedded_broker(tmp_path, capsys):
    from bodycam.cli import main

    scenario = tmp_path / "s.toml"
    scenario.write_text("""
[scenario]
name = "short-dock"
duration = "40s"
[config.video]
width = 320
height = 180
fps = 15
[[event]]
at = 5
action = "press"
button = "record"
[[event]]
at = 20
action = "long_press"
button = "record"
[[event]]
at = 30
action = "dock"
""")
    assert main(["simulate", str(scenario), "--out", str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    synced = next(e for e in data["timeline"] if e["kind"] == "synced")["fields"]
    assert synced["offered"] == synced["receipted"] == synced["deleted"] > 5
    left = [p.name for p in (tmp_path / "out" / "device" / "evidence").rglob("*") if p.is_file()]
    assert [name for name in left if not name.startswith(".")] == [], left
    proc = subprocess.run([sys.executable, "-m", "bodycam", "verify",
                           str(tmp_path / "out" / "archive" / "BC-0001"), "--trust",
                           str(tmp_path / "out" / "dock"), "--key", str(tmp_path / "out" / "dock")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-1500:]


def test_dock_config_errors_are_one_line(tmp_path, capsys):
    from bodycam.cli import main

    bad = tmp_path / "dock.toml"
    bad.write_text('[broker]\nmode = "carrier-pigeon"\n')
    assert main(["dock", "--config", str(bad), "ledger"]) == 2
    assert "broker.mode: 'carrier-pigeon' is not allowed" in capsys.readouterr().err


@pytest.mark.req("R13.4")
def test_overdue_evidence_and_silent_devices_are_flagged(tmp_path):
    from dock.archive import Archive
    from dock.enrollment import dock_key

    archive = Archive(tmp_path / "archive", tmp_path / "dock", dock_key(tmp_path / "dock"), "dock")
    day = 24 * 3600
    t0 = __import__("time").time()
    archive.docked("BC-0001", t0, [("a" * 32, "x.ts.bce", "ACT-1"), ("b" * 32, "y.ts.bce", "ACT-2")])
    archive.begin("BC-0001", "b" * 32, "y.ts.bce", "ACT-2", 3,
                  __import__("hashlib").sha256(b"abc").hexdigest(), None, "media")
    archive.store_chunk("BC-0001", "b" * 32, 0, b"abc")
    archive.complete("BC-0001", "b" * 32)  # stored at once: in time
    assert archive.overdue(24, t0 + day - 1, 72) == {"activities": [], "devices": []}
    late = archive.overdue(24, t0 + day + 1, 72)
    assert [a["activity"] for a in late["activities"]] == ["ACT-1"]
    assert late["devices"] == []
    assert archive.overdue(24, t0 + 4 * day, 72)["devices"][0]["device"] == "BC-0001"
    archive.close()


@pytest.mark.req("R13.2")
def test_dock_serve_command_with_mosquitto_takes_a_shift_and_shows_progress(tmp_path):
    """``bodycam dock serve`` as a custodian runs it: Mosquitto with the shipped mutual TLS
    and ACL started by the dock, a shift's evidence received, verified and receipted, and
    the progress per device on the terminal — a line a second at most, and the line that
    says the device is done."""
    from dock.broker import free_port

    shift(tmp_path)
    port = free_port("127.0.0.1")
    config = tmp_path / "dock.toml"
    config.write_text(f"""
[dock]
id = "dock-test"
dir = "{tmp_path / 'dock'}"
archive = "{tmp_path / 'archive'}"
[broker]
mode = "mosquitto"
host = "127.0.0.1"
port = {port}
[enrolment]
port = 0
""")
    serve = subprocess.Popen([sys.executable, "-m", "bodycam", "dock", "--config",
                              str(config), "serve", "--seconds", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening through mosquitto" in serve.stdout.readline()
        files = device_sync_files(tmp_path / "device", "BC-0001")
        waiting = offers(tmp_path / "device" / "evidence")
        session = DeviceSync(tmp_path / "device", "BC-0001", "127.0.0.1", port,
                             evidence=tmp_path / "device" / "evidence",
                             audit_log=tmp_path / "device" / "audit.jsonl", correct_above_s=0.5,
                             tls=(files.ca, files.cert, files.key), chunk_size=32 * 1024)
        result = session.run(timeout=60)
        assert result.done and not result.failed
    finally:
        serve.terminate()
        out, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err[-2000:]
    lines = [line for line in out.splitlines() if line.startswith("BC-0001:")]
    offered = len(waiting) + 1  # and the audit log's lines since the last docking
    assert lines[-1].startswith(f"BC-0001: {offered}/{offered} files")
    assert len(lines) <= 5, "a line a second, not one per chunk"
    assert not [p for p in (tmp_path / "device" / "evidence").rglob("*")
                if p.is_file() and not p.name.startswith(".")]
