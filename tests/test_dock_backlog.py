"""A week's backlog docks in one docking (issue 13): tens of thousands of small sealed files,
offered page after page, all archived, receipted and deleted, over the real Mosquitto."""

from __future__ import annotations

import sqlite3
import time

import pytest

from dock.enrollment import dock_client, enroll_device
from dock.service import DockService
from simulator.harness.backlog import make_backlog
from sync.credentials import device_sync_files
from sync.device_sync import DeviceSync, offers

DEVICE = "BC-0007"


@pytest.mark.req("R13.1", "R13.2")
def test_a_weeks_backlog_of_15000_files_docks_completely_in_one_docking(tmp_path, broker):
    device_root, dock_dir = tmp_path / "device", tmp_path / "dock"
    enroll_device(device_root, dock_dir, DEVICE, "Baofeng County HRSS Labour Inspection Brigade")
    # 1,500 sealed items of 8 small files each (+ manifest and signature): 15,000 files,
    # over seven activities (a week of shifts).
    made = make_backlog(device_root, DEVICE, items=1500, files_per_item=8, body_bytes=48,
                        activities=7, encrypted=False)
    assert made == 15_000
    waiting = offers(device_root / "evidence")
    assert len(waiting) == made
    cert = dock_client(dock_dir)
    dock = DockService(dock_dir, tmp_path / "archive", broker.host, broker.port,
                       tls=(broker.ca_file, cert.cert, cert.key))
    dock.start()
    try:
        files = device_sync_files(device_root, DEVICE)
        session = DeviceSync(device_root, DEVICE, broker.host, broker.port,
                             evidence=device_root / "evidence",
                             audit_log=device_root / "audit.jsonl", correct_above_s=0.5,
                             tls=(files.ca, files.cert, files.key))
        assert session.uploader.pages > 15, "far more than one hello holds"
        started = time.monotonic()
        result = session.run(timeout=300, rounds=1)  # one docking, one round
        elapsed = time.monotonic() - started
        dock.settle()
    finally:
        dock.stop()
    assert result.done and not result.failed and not result.refused_receipts, result.failed[:3]
    assert sorted(result.receipted) == sorted(o.name for o, _ in waiting)
    assert len(result.deleted) == made
    left = [p for p in (device_root / "evidence").rglob("*") if p.is_file()]
    assert [p.name for p in left if not p.name.startswith(".")] == []
    db = sqlite3.connect(tmp_path / "archive" / "index.sqlite")
    assert db.execute("SELECT COUNT(*) FROM files WHERE device=? AND state='archived'",
                      (DEVICE,)).fetchone()[0] == made
    # Every file but the signatures (checked with their manifests) verified against its seal.
    assert db.execute("SELECT COUNT(*) FROM files WHERE verified=1").fetchone()[0] == made - 1500
    assert db.execute("SELECT COUNT(*) FROM dockings").fetchone()[0] == 1, "one docking"
    print(f"{made} files docked in {elapsed:.1f} s ({made / elapsed:.0f} files/s)")
