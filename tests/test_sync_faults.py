"""Faults during docking (Art. 13, R13.2), each injected into a real transfer of a recorded
shift through a real Mosquitto with mutual TLS and the shipped ACL: the dock dying between
storing a file and sending its receipt, the device pulled out of the dock mid-transfer, the
broker away for a while mid-upload. In each, nothing is lost — every file ends in the
archive with the bytes the device offered, or stays on the device — nothing is stored
twice, and what the dock confirmed is not sent again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from device.clock import DeviceClock
from firmware_py.evidence import audit
from dock.enrollment import dock_client
from dock.service import DockService
from sync.credentials import device_sync_files
from sync.device_sync import DeviceSync, offers, snapshot_audit
from simulator.harness.dock import CrashingDock
from tests.test_dock_sync import shift

CHUNK, WINDOW = 32 * 1024, 4


def dock_service(tmp_path, broker, cls=DockService, **kwargs):
    cert = dock_client(tmp_path / "dock")
    service = cls(tmp_path / "dock", tmp_path / "archive", broker.host, broker.port,
                  tls=(broker.ca_file, cert.cert, cert.key), **kwargs)
    service.start()
    return service


def session(tmp_path, broker):
    files = device_sync_files(tmp_path / "device", "BC-0001")
    log = audit.AuditLog(tmp_path / "device" / "audit.jsonl", DeviceClock())
    return DeviceSync(tmp_path / "device", "BC-0001", broker.host, broker.port,
                      evidence=tmp_path / "device" / "evidence",
                      audit_log=tmp_path / "device" / "audit.jsonl", correct_above_s=0.5,
                      tls=(files.ca, files.cert, files.key), audit=log,
                      chunk_size=CHUNK, window=WINDOW), log


@dataclass
class Transfer:
    """A recorded shift being sent: what waits on the device, and the session running."""

    waiting: list
    before: dict[str, str]  # name → SHA-256 of every file offered
    total: int  # bytes offered
    dock: DockService
    sync: DeviceSync
    log: audit.AuditLog
    runner: threading.Thread

    def a_third_across(self) -> None:
        wait_for(lambda: self.dock.progress.get("BC-0001") is not None
                 and self.dock.progress["BC-0001"].received_bytes >= self.total // 3,
                 what="a third across")


def start_transfer(tmp_path, broker, timeout, dock_cls=DockService, **dock_kwargs) -> Transfer:
    """Record a shift, start the dock and the device's docking session (in a thread)."""
    shift(tmp_path)
    waiting = waiting_files(tmp_path)
    dock = dock_service(tmp_path, broker, dock_cls, **dock_kwargs)
    sync, log = session(tmp_path, broker)
    runner = threading.Thread(target=sync.run, kwargs={"timeout": timeout})
    runner.start()
    return Transfer(waiting, {o.name: o.sha256 for o, _ in waiting},
                    sum(o.size for o, _ in waiting), dock, sync, log, runner)


def wait_for(condition, seconds=30.0, what="condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.01)


def archived_rows(tmp_path):
    with sqlite3.connect(tmp_path / "archive" / "index.sqlite") as db:
        return db.execute("SELECT file_id, name, receipt, signature, state FROM files "
                          "WHERE device='BC-0001'").fetchall()


def waiting_files(tmp_path):
    """What the device will offer: its evidence and the audit log lines not yet sent (the
    snapshot a session would take first is taken now, so it is counted)."""
    snapshot_audit(tmp_path / "device" / "audit.jsonl", tmp_path / "device" / "evidence")
    return offers(tmp_path / "device" / "evidence")


def later_snapshots(tmp_path, before):
    """Bytes of the audit log snapshots later sessions took (their deletions, logged)."""
    return sum(p.stat().st_size for p in (tmp_path / "archive" / "BC-0001" / "audit").glob("*")
               if p.name not in before)


def assert_all_archived_once(tmp_path, before):
    """Every offered file is in the archive exactly once with the bytes offered, and the
    device holds none of them any more."""
    stored = [p for p in (tmp_path / "archive" / "BC-0001").rglob("*") if p.is_file()
              and (p.name in before or not p.name.startswith("audit-"))
              and not p.name.endswith((".receipt.json", ".receipt.sig"))]  # the dock's own
    names = [p.name for p in stored]
    assert sorted(names) == sorted(before), "each file archived exactly once"
    for path in stored:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before[path.name]
    left = [p.name for p in (tmp_path / "device" / "evidence").rglob("*") if p.is_file()]
    assert [name for name in left if not name.startswith(".")] == [], left
    assert not any((tmp_path / "archive" / "incoming").rglob("*.part")) or all(
        p.stat().st_size == 0 for p in (tmp_path / "archive" / "incoming").rglob("*.part"))


@pytest.mark.req("R13.2")
def test_dock_crash_before_the_receipt_gets_the_same_receipt_and_stores_nothing_twice(
        tmp_path, broker):
    t = start_transfer(tmp_path, broker, 90, CrashingDock, after=3)
    waiting, before, total, crashing, sync, log, runner = (
        t.waiting, t.before, t.total, t.dock, t.sync, t.log, t.runner)
    wait_for(crashing.crashed.is_set, what="the dock crash")
    crashed_file = crashing.unsent_receipt
    # The receipt was signed and committed before the crash, never sent: the device still
    # holds the file.
    (row,) = [r for r in archived_rows(tmp_path) if r[0] == crashed_file]
    assert row[4] == "archived"
    offered = {o.file_id: (o, path) for o, path in waiting}
    assert offered[crashed_file][1].exists()
    crashing.stop()

    restarted = dock_service(tmp_path, broker)  # the dock comes back on the same archive
    runner.join(timeout=120)
    for _ in range(2):  # files cut short by the crash go at the next docking, if not this one
        if not offers(tmp_path / "device" / "evidence"):
            break
        again, _ = session(tmp_path, broker)
        again.run(timeout=60)
    restarted.settle()
    restarted.stop()
    log.close()

    assert_all_archived_once(tmp_path, before)
    # The device got the very receipt the dead dock had signed, and deleted on it.
    deleted = {e["fields"]["file"]: e["fields"] for e in audit.read(tmp_path / "device" / "audit.jsonl")
               if e["kind"] == "evidence_deleted_after_receipt"}
    assert set(deleted) == set(before)
    (row,) = [r for r in archived_rows(tmp_path) if r[0] == crashed_file]
    name = offered[crashed_file][0].name
    assert deleted[name]["archive_path"] == json.loads(row[2])["archive_path"]
    assert len(archived_rows(tmp_path)) == len(before), "one index row per file"
    # The crashed file's bytes crossed once: it was answered from the archive, not resent.
    assert sync.result.bytes_sent <= total + WINDOW * CHUNK * 2 + later_snapshots(tmp_path, before)


@pytest.mark.req("R13.2")
def test_undock_mid_transfer_resumes_from_what_the_dock_confirmed(tmp_path, broker):
    t = start_transfer(tmp_path, broker, 90)
    waiting, before, total, dock, first, log, runner = (
        t.waiting, t.before, t.total, t.dock, t.sync, t.log, t.runner)
    t.a_third_across()
    first.undock()  # the officer lifts the recorder out of the dock
    runner.join(timeout=30)
    assert first.result.undocked and not first.result.done

    def held() -> int:  # what the dock holds durably: archived files whole, partial ones
        dock.settle()  # up to their offset
        with sqlite3.connect(tmp_path / "archive" / "index.sqlite") as db:
            return sum(size if state == "archived" else offset for size, offset, state in
                       db.execute("SELECT size, offset, state FROM files WHERE device='BC-0001'"))

    # Chunks already in flight when the recorder left still reach the dock (the window is
    # megabytes): count what it holds once nothing more arrives.
    confirmed, again = -1, held()
    while again != confirmed:
        confirmed = again
        time.sleep(0.5)
        again = held()
    assert 0 < confirmed < total
    assert any(p.exists() for _, p in waiting), "the device kept what had no receipt"

    second, _ = session(tmp_path, broker)  # docked again
    second.run(timeout=90)
    dock.stop()
    log.close()
    assert second.result.done and not second.result.failed
    assert_all_archived_once(tmp_path, before)
    # Nothing the dock confirmed went again: the second docking sent the rest, plus at most
    # what was in flight.
    assert total - confirmed <= second.result.bytes_sent <= (
        total - confirmed + WINDOW * CHUNK + later_snapshots(tmp_path, before))


@pytest.mark.req("R13.2")
def test_broker_away_mid_upload_then_back(tmp_path, broker):
    t = start_transfer(tmp_path, broker, 120)
    before, total, dock, sync, log, runner = t.before, t.total, t.dock, t.sync, t.log, t.runner
    t.a_third_across()
    broker.stop()  # the dock's broker goes away for a while
    time.sleep(2.0)
    assert runner.is_alive(), "the device waits for the broker rather than giving up"
    broker.restart()
    runner.join(timeout=150)
    sent = sync.result.bytes_sent
    for _ in range(2):  # a file that failed in that session goes at the next one
        if not offers(tmp_path / "device" / "evidence"):
            break
        again, _ = session(tmp_path, broker)
        sent += again.run(timeout=60).bytes_sent
    dock.stop()
    log.close()
    assert_all_archived_once(tmp_path, before)
    # Resumed from the dock's confirmed offsets: only chunks in flight at the cut went twice.
    assert total <= sent <= total * 1.5 + later_snapshots(tmp_path, before)


@pytest.mark.req("R13.2")
def test_a_file_changed_after_it_was_sent_is_kept_despite_a_genuine_receipt(tmp_path, broker):
    """R13.2's last check before deleting: the file on the device is the file the dock
    holds. A file read whole for sending and then altered on the device (here: one byte
    appended) is kept, even on a receipt the dock really signed for what it was sent;
    an untouched file read the same way is deleted on its receipt."""
    from sync import protocol as p
    from dock.archive import sign_receipt
    from dock.enrollment import dock_key

    shift(tmp_path)
    sync, log = session(tmp_path, broker)  # never connected: driven by hand below
    key = dock_key(tmp_path / "dock")
    media = [(o, path) for o, path in offers(tmp_path / "device" / "evidence")
             if o.name.endswith(".ts.bce")][:2]
    for offer, _ in media:  # sent whole, in chunks, in order
        for offset in range(0, offer.size, CHUNK):
            sync._read(offer, offset, min(CHUNK, offer.size - offset))
    (changed, changed_path), (kept, kept_path) = media
    changed_path.chmod(0o644)
    with open(changed_path, "ab") as fh:
        fh.write(b"\0")
    for offer, _ in media:
        body = p.make_receipt_body(dock="dock", device="BC-0001", init=offer, stored_at=1,
                                   archive_path=f"BC-0001/{offer.activity}/{offer.name}")
        sync._receipt(offer.file_id, p.Receipt(body, sign_receipt(key, body)))
    log.close()
    assert changed_path.exists() and not kept_path.exists()
    assert sync.result.refused_receipts == [
        (changed.name, "the file on the device changed since it was offered")]
    assert sync.result.deleted == [kept.name]


@pytest.mark.req("R13.1", "R13.2")
def test_docking_faults_from_a_scenario_file(tmp_path):
    """The same faults, scripted in a scenario (``dock`` with ``fault`` and ``after_mb``) and
    run by ``bodycam simulate`` over the embedded broker: lifted out mid-transfer, then a
    dock that crashes before a receipt — and after a second activity and a third docking
    everything is in the archive once, verified, and nothing is left on the device."""
    from bodycam.cli import main

    path = tmp_path / "docking.toml"
    path.write_text("""
[scenario]
name = "docking-faults"
duration = "2:10"
[config.video]
width = 320
height = 180
fps = 15
[config.recording]
segment_seconds = 10
[[event]]
at = 5
action = "press"
button = "record"
[[event]]
at = 50
action = "long_press"
button = "record"
[[event]]
at = "1:00"
action = "dock"
fault = "undock_mid_transfer"
after_mb = 0.5
[[event]]
at = "1:05"
action = "undock"
[[event]]
at = "1:10"
action = "dock"
fault = "dock_crash"
after_mb = 0.2
[[event]]
at = "1:15"
action = "undock"
[[event]]
at = "1:20"
action = "press"
button = "record"
[[event]]
at = "1:50"
action = "long_press"
button = "record"
[[event]]
at = "2:00"
action = "dock"
""")
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out), "--json"]) == 0
    summary = json.loads((out / "simulation.json").read_text())
    synced = [e["fields"] for e in summary["timeline"] if e["kind"] == "synced"]
    assert [s.get("fault") for s in synced] == ["undock_mid_transfer", "dock_crash", None]
    undocked, crashed, last = synced
    assert undocked["happened"] and undocked["receipted"] < undocked["offered"]
    assert crashed["happened"] and crashed["unsent_receipt"]
    assert last["failed"] == 0 and last["receipted"] == last["offered"]
    left = [p for p in (out / "device" / "evidence").rglob("*") if p.is_file()
            and not p.name.startswith(".")]
    assert left == []
    proc = subprocess.run([sys.executable, "-m", "bodycam", "verify",
                           str(out / "archive"), "--trust", str(out / "dock"), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    with sqlite3.connect(out / "archive" / "index.sqlite") as db:
        names = db.execute("SELECT activity, name FROM files WHERE state='archived'").fetchall()
    assert len(names) == len(set(names)), "nothing stored twice"
