"""Audit log: hash-chained, resumable after a restart, torn lines kept aside, tampering found."""

from __future__ import annotations

import json

import pytest

from device.clock import DeviceClock
from firmware_py.evidence import audit


def clock():
    t = [1000.0]
    return DeviceClock(wall=lambda: 1_800_000_000.0 + t[0], monotonic=lambda: t[0], utc_offset_s=28800)


def test_chain_reads_back(tmp_path):
    log = audit.AuditLog(tmp_path / "audit.jsonl", clock())
    log.append("boot", {"device": "BC-1"})
    log.append("selfcheck", {"passed": True})
    log.close()
    entries = audit.read(tmp_path / "audit.jsonl")
    assert [e["kind"] for e in entries] == ["boot", "selfcheck"]
    assert entries[0]["prev"] == audit.GENESIS and entries[1]["seq"] == 1
    assert entries[0]["time"]["utc_offset_s"] == 28800


def test_resume_continues_the_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    first = audit.AuditLog(path, clock())
    first.append("boot")
    first.close()
    second = audit.AuditLog(path, clock())
    second.append("boot")
    second.close()
    assert [e["seq"] for e in audit.read(path)] == [0, 1]


def test_torn_last_line_is_set_aside_and_chain_continues(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(path, clock())
    log.append("boot")
    log.close()
    with path.open("ab") as fh:
        fh.write(b'{"seq":1,"kind":"recor')  # power cut mid-write
    log = audit.AuditLog(path, clock())
    log.append("boot")
    log.close()
    assert [e["seq"] for e in audit.read(path)] == [0, 1]
    assert b'"kind":"recor' in (tmp_path / "audit.jsonl.torn").read_bytes()


@pytest.mark.req("R18.2")
@pytest.mark.parametrize("tamper", ["edit", "remove", "swap"])
def test_tampering_breaks_the_chain(tmp_path, tamper):
    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(path, clock())
    for i in range(4):
        log.append("marker", {"n": i})
    log.close()
    lines = path.read_bytes().splitlines(keepends=True)
    if tamper == "edit":
        entry = json.loads(lines[1])
        entry["fields"]["n"] = 99
        lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    elif tamper == "remove":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"".join(lines))
    with pytest.raises(audit.AuditLogError, match="chain broken|expected sequence"):
        audit.read(path)


@pytest.mark.req("R18.2")
def test_checkpoints_every_n_entries_and_at_close(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    log = audit.AuditLog(tmp_path / "audit.jsonl", clock())
    log.sign_with(key.sign, "k1")
    for i in range(audit.CHECKPOINT_EVERY * 2 + 3):
        log.append("marker", {"n": i})
    log.close()
    entries = audit.read(tmp_path / "audit.jsonl")
    points = [e for e in entries if e["kind"] == "checkpoint"]
    assert [p["fields"]["covers"] for p in points] == [50, 101, 105]
    for p in points:
        key.public_key().verify(__import__("base64").b64decode(p["fields"]["signature"]),
                                bytes.fromhex(p["fields"]["head"]))
