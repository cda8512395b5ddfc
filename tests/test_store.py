"""Evidence store: life-long sequence, exclusive read-only files, activity directories."""

from __future__ import annotations

import os
import stat

import pytest

from firmware_py.evidence.store import DurableFile, EvidenceStore

UTC = 1_795_000_000.0


def test_sequence_survives_restarts(tmp_path):
    store = EvidenceStore(tmp_path, "BC-9")
    assert [store.next_sequence() for _ in range(3)] == [1, 2, 3]
    assert EvidenceStore(tmp_path, "BC-9").next_sequence() == 4


def test_corrupt_state_never_reuses_a_number(tmp_path):
    store = EvidenceStore(tmp_path, "BC-9")
    activity = store.open_activity(UTC)
    for _ in range(7):
        seq = store.next_sequence()
        DurableFile(store.evidence_path(activity, seq, UTC + seq, ".ts")).close()
    (tmp_path / EvidenceStore.STATE).write_text("{garbage")
    assert EvidenceStore(tmp_path, "BC-9").next_sequence() == 8


def test_names_and_activities(tmp_path):
    store = EvidenceStore(tmp_path, "BC-9")
    a = store.open_activity(UTC)
    b = store.open_activity(UTC)  # same second: a second directory, not a merge
    assert a.id != b.id and a.path.is_dir() and b.path.is_dir()
    path = store.evidence_path(a, 42, UTC, ".ts")
    assert path.name == f"BC-9_{a.id}_000042_{a.id}.ts"


@pytest.mark.req("R5.1")
def test_evidence_files_are_exclusive_and_read_only(tmp_path):
    path = tmp_path / "x.ts"
    f = DurableFile(path)
    f.write(b"abc")
    f.close()
    assert path.read_bytes() == b"abc" and f.bytes_written == 3
    assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    with pytest.raises(FileExistsError):
        DurableFile(path)
