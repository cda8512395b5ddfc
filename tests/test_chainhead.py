"""Signed chain heads (issue 18): written by the device at docking, checked by the dock
before it receipts them, the newest taken by the verifier; forged or edited heads are
refused with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.clock import Timestamp
from dock.archive import Archive, ArchiveError
from dock.enrollment import dock_key, enroll_device
from firmware_py.evidence.canonical import GENESIS
from firmware_py.evidence.chainhead import (SIGNATURE, SUFFIX, check_chain_head, find_heads,
                                            latest, write_chain_head)
from firmware_py.evidence.keys import device_identity, load_registry
from firmware_py.evidence.store import write_atomic

UNIT = "Baofeng County HRSS Labour Inspection Brigade"


def at(utc: float) -> Timestamp:
    return Timestamp(utc=utc, monotonic=utc - 1795914000.0, utc_offset_s=28800, source="gnss")


@pytest.fixture
def enrolled(tmp_path: Path):
    enroll_device(tmp_path / "device", tmp_path / "dock", "BC-0001", UNIT)
    enroll_device(tmp_path / "other", tmp_path / "dock", "BC-0002", UNIT)
    evidence = tmp_path / "device" / "evidence"
    evidence.mkdir(parents=True)
    return tmp_path, device_identity(tmp_path / "device", "BC-0001"), evidence


def set_state(evidence: Path, sequence: int, head: str) -> None:
    write_atomic(evidence / ".device-state.json", json.dumps(
        {"next_sequence": sequence + 1, "chain_sequence": sequence, "chain_head": head}).encode())


@pytest.mark.req("R18.1")
def test_a_head_per_docking_and_the_newest_counts(enrolled):
    root, identity, evidence = enrolled
    assert write_chain_head(evidence, identity, at(1795914000.0)) is None  # nothing sealed yet
    set_state(evidence, 4, "ab" * 32)
    first = write_chain_head(evidence, identity, at(1795914000.0))
    second = write_chain_head(evidence, identity, at(1795914000.0))  # the same second
    set_state(evidence, 9, "cd" * 32)
    third = write_chain_head(evidence, identity, at(1795917600.0))
    assert first.name == "BC-0001_20261129T010000Z_000004.chainhead.json"
    assert second.name == "BC-0001_20261129T010000Z_000004-2.chainhead.json"
    assert third.name.endswith("_000009.chainhead.json")
    registry = load_registry(root / "dock")
    heads, problems = find_heads([evidence], registry)
    assert problems == [] and len(heads) == 3
    newest = latest(heads)["BC-0001"]
    assert (newest.sequence, newest.head) == (9, "cd" * 32)
    body = json.loads(third.read_bytes())
    assert body["format"] == "bodycam-chainhead/1" and body["signing_key"] == identity.key_id
    assert body["at"]["utc_ms"] == 1795917600000 and GENESIS != body["head"]


@pytest.mark.req("R18.1")
def test_edited_forged_or_unsigned_heads_are_refused(enrolled):
    root, identity, evidence = enrolled
    set_state(evidence, 4, "ab" * 32)
    head = write_chain_head(evidence, identity, at(1795914000.0))
    data = head.read_bytes()
    signature = head.with_name(head.name.replace(SUFFIX, SIGNATURE)).read_bytes()
    registry = load_registry(root / "dock")
    assert check_chain_head(data, signature, registry)[1] is None
    raised = data.replace(b'"sequence":4', b'"sequence":3')
    other = device_identity(root / "other", "BC-0002")
    cases = {
        "signature does not match": (raised, signature),
        "not in canonical form": (data.replace(b'"sequence":4', b'"sequence": 4'), signature),
        "signature missing": (data, None),
        # Another device's key id in the head: that key is not enrolled to BC-0001.
        "not enrolled to 'BC-0001'": (data.replace(identity.key_id.encode(),
                                                   other.key_id.encode()), signature),
        "not JSON": (b"{", signature),
    }
    for reason, (body, sig) in cases.items():
        parsed, problem = check_chain_head(body, sig, registry)
        assert parsed is None and reason in problem, (reason, problem)


def test_the_dock_refuses_a_forged_head_before_receipting_it(enrolled):
    root, identity, evidence = enrolled
    set_state(evidence, 4, "ab" * 32)
    head = write_chain_head(evidence, identity, at(1795914000.0))
    archive = Archive(root / "archive", root / "dock", dock_key(root / "dock"), "dock-1")
    try:
        folder = root / "archive" / "BC-0001" / "chain"
        folder.mkdir(parents=True)
        sig = head.with_name(head.name.replace(SUFFIX, SIGNATURE))
        (folder / sig.name).write_bytes(sig.read_bytes())
        forged = head.read_bytes().replace(b'"sequence":4', b'"sequence":2')
        with pytest.raises(ArchiveError, match="signature does not match"):
            archive.verify_chain_head("BC-0001", "chain", head.name, forged)
        # A head sent by another device's connection is refused too.
        with pytest.raises(ArchiveError):
            archive.verify_chain_head("BC-0002", "chain", head.name, head.read_bytes())
        assert archive.verify_chain_head("BC-0001", "chain", head.name, head.read_bytes())
    finally:
        archive.close()
