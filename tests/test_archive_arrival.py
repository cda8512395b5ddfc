"""The dock's archive checks every file on arrival, whichever way its whole-file hash was
taken: as its chunks were written (the usual case, no read-back), or by reading it back (a
transfer resumed after a dock restart, or bytes written over again). A file that fails is
discarded and never receipted; a sealed file whose chunk count differs from its seal is
refused."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from dock.archive import KEEP_OPEN, Archive, ArchiveError
from dock.enrollment import dock_key, enroll_device
from firmware_py.evidence.canonical import canonical
from firmware_py.evidence.evidence_file import EncryptingFile
from firmware_py.evidence.keys import device_identity
from firmware_py.evidence.seal import MANIFEST, SIGNATURE, Sealer
from firmware_py.evidence.store import EvidenceStore
from sync.protocol import file_id_of

DEVICE = "BC-0001"
CHUNK = 64 * 1024


@pytest.fixture()
def sealed(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A dock and one sealed segment of an enrolled device: its media, manifest, signature."""
    dock_dir, root = tmp_path / "dock", tmp_path / "device"
    enroll_device(root, dock_dir, DEVICE, "unit")
    identity = device_identity(root, DEVICE)
    store = EvidenceStore(root / "evidence", DEVICE)
    activity = store.open_activity(time.time())
    number = store.next_sequence()
    path = store.evidence_path(activity, number, time.time(), ".ts.bce")
    media = EncryptingFile(path, identity.agency_public,
                           {"device": DEVICE, "name": path.name, "role": "media"}, durable=False)
    for _ in range(5):
        media.write(os.urandom(100_000))
    stored = media.close()
    stem = path.with_name(path.name[: -len(".ts.bce")])
    Sealer(identity, store).seal("segment", stem, [("media", stored)],
                                 {"activity": activity.id, "officer": None, "file_number": number})
    files = {"signature": stem.with_name(stem.name + SIGNATURE),
             "manifest": stem.with_name(stem.name + MANIFEST), "media": path}
    return dock_dir, tmp_path / "archive", files


def send(archive: Archive, path: Path, data: bytes | None = None, *, manifest: str | None = None,
         kind: str = "media", upto: int | None = None) -> str:
    """Begin ``path`` at the archive and write its bytes (or ``data``) in chunks, durably."""
    data = path.read_bytes() if data is None else data
    sha = hashlib.sha256(path.read_bytes()).hexdigest()  # what the device offers
    file_id = file_id_of(sha)
    offset = archive.begin(DEVICE, file_id, path.name, path.parent.name, len(data), sha,
                           manifest, kind)
    end = len(data) if upto is None else upto
    while offset < end:
        archive.write_chunk(DEVICE, file_id, offset, data[offset:min(offset + CHUNK, end)])
        offset = min(offset + CHUNK, end)
    archive.sync()
    return file_id


def open_archive(dock_dir: Path, root: Path) -> Archive:
    return Archive(root, dock_dir, dock_key(dock_dir), "dock-1")


def send_seal(archive: Archive, files: dict[str, Path]) -> str:
    manifest = files["manifest"].name
    for role in ("signature", "manifest"):
        archive.complete(DEVICE, send(archive, files[role], manifest=manifest, kind=role))
    return manifest


def test_a_file_hashed_as_written_is_archived_without_reading_it_back(sealed,
                                                                     monkeypatch) -> None:
    dock_dir, root, files = sealed
    archive = open_archive(dock_dir, root)
    manifest = send_seal(archive, files)
    file_id = send(archive, files["media"], manifest=manifest)
    # The hash and the chunk count were taken on the way in, over every byte: completing
    # reads nothing back.
    assert archive._hashing[(DEVICE, file_id)].upto == files["media"].stat().st_size

    def read_back(path: Path) -> str:
        raise AssertionError(f"{path.name} was read back to be hashed")

    def parsed_back(data: object, name: str = "") -> None:
        raise AssertionError(f"{name} was read back to count its chunks")

    monkeypatch.setattr("dock.archive.sha256_file", read_back)
    monkeypatch.setattr("dock.archive.parse", parsed_back)
    stored = archive.complete(DEVICE, file_id)
    assert stored.receipt["verified"] is True
    target = root / stored.receipt["archive_path"]
    assert target.read_bytes() == files["media"].read_bytes()
    archive.close()


def test_a_damaged_file_is_discarded_on_either_path(sealed) -> None:
    dock_dir, root, files = sealed
    archive = open_archive(dock_dir, root)
    manifest = send_seal(archive, files)
    good = files["media"].read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    # Hashed as written: the flipped byte is in the hash, which is not the offered one.
    file_id = send(archive, files["media"], bytes(bad), manifest=manifest)
    with pytest.raises(ArchiveError, match="whole-file hash"):
        archive.complete(DEVICE, file_id)
    assert not (root / DEVICE / files["media"].parent.name / files["media"].name).exists()
    # Read back: the dock restarts mid-file (no hash in memory), the rest arrives damaged.
    archive.close()
    archive = open_archive(dock_dir, root)
    send(archive, files["media"], good, manifest=manifest, upto=2 * CHUNK)
    archive.close()
    archive = open_archive(dock_dir, root)
    file_id = send(archive, files["media"], bytes(bad), manifest=manifest)
    assert (DEVICE, file_id) not in archive._hashing
    with pytest.raises(ArchiveError, match="whole-file hash"):
        archive.complete(DEVICE, file_id)
    # And a clean resend after the discard is archived.
    file_id = send(archive, files["media"], good, manifest=manifest)
    assert archive.complete(DEVICE, file_id).receipt["verified"] is True
    archive.close()


def test_a_resumed_file_is_read_back_and_archived(sealed) -> None:
    dock_dir, root, files = sealed
    archive = open_archive(dock_dir, root)
    manifest = send_seal(archive, files)
    send(archive, files["media"], manifest=manifest, upto=3 * CHUNK)
    archive.abandon()  # the dock crashes mid-transfer
    archive = open_archive(dock_dir, root)
    file_id = send(archive, files["media"], manifest=manifest)
    stored = archive.complete(DEVICE, file_id)
    assert (root / stored.receipt["archive_path"]).read_bytes() == files["media"].read_bytes()
    archive.close()


@pytest.mark.parametrize("path", ["counted as written", "read after a restart"])
def test_a_sealed_file_whose_chunk_count_differs_from_its_seal_is_refused(sealed, path) -> None:
    """The structure check on arrival compares the file's chunks with the count its seal
    gives: counted as the bytes were written, or, for a file resumed after the dock
    restarted, read through a memory map."""
    dock_dir, root, files = sealed
    manifest_path = files["manifest"]
    body = json.loads(manifest_path.read_bytes())
    records = [r for r in body["files"] if r.get("encrypted")]
    count = records[0]["chunks"]
    archive = open_archive(dock_dir, root)
    manifest = send_seal(archive, files)
    # Claim one more chunk in the archive's copy of the manifest, as a seal would that did
    # not match the file (the signature check already passed on arrival).
    archived = root / DEVICE / manifest_path.parent.name / manifest
    text = archived.read_bytes().replace(b'"chunks":%d' % count, b'"chunks":%d' % (count + 1))
    assert text != archived.read_bytes()
    archived.chmod(0o644)
    archived.write_bytes(text)
    if path == "read after a restart":
        send(archive, files["media"], manifest=manifest, upto=CHUNK)
        archive.close()
        archive = open_archive(dock_dir, root)
    file_id = send(archive, files["media"], manifest=manifest)
    assert ((DEVICE, file_id) in archive._hashing) == (path == "counted as written")
    with pytest.raises(ArchiveError, match="chunk count differs"):
        archive.complete(DEVICE, file_id)
    archive.close()


def test_files_completed_together_survive_a_crash_between_the_move_and_the_commit(sealed) -> None:
    """The dock completes the files of a round together (one fsync per folder, one commit).
    A crash after the moves and before the commit leaves files in the archive that the
    index still calls incoming: sent again, each is recognised by its hash and receipted,
    not refused for a missing part file or stored twice."""
    dock_dir, root, files = sealed
    archive = open_archive(dock_dir, root)
    manifest = files["manifest"].name
    ids = [send(archive, files[role], manifest=manifest, kind=role)
           for role in ("signature", "manifest", "media")]
    for file_id in ids:
        archive.complete(DEVICE, file_id, defer=True)
    archive.abandon()  # moved, never committed
    folder = root / DEVICE / files["media"].parent.name
    moved = [p.name for p in folder.iterdir() if not p.name.endswith((".receipt.json", ".receipt.sig"))]
    assert sorted(moved) == sorted(f.name for f in files.values())
    filed = {p.name: p.read_bytes() for p in folder.glob("*.receipt.json")}
    assert len(filed) == 3  # receipts filed beside them, never sent
    archive = open_archive(dock_dir, root)
    assert set(archive.resume_state(DEVICE)[0]) == set(ids)  # still incoming to the index
    for role, file_id in zip(("signature", "manifest", "media"), ids):
        send(archive, files[role], manifest=manifest, kind=role)  # the device resends
        stored = archive.complete(DEVICE, file_id)
        target = root / stored.receipt["archive_path"]
        assert target.read_bytes() == files[role].read_bytes()
        # The receipt filed before the crash stays the file's one receipt.
        assert canonical(stored.receipt) == filed[target.name + ".receipt.json"]
    assert stored.receipt["verified"] is True
    assert not archive.resume_state(DEVICE)[0]
    archive.close()


def test_files_begun_and_left_do_not_hold_the_docks_descriptors(sealed) -> None:
    """An incoming file keeps its descriptor open between batches, but only the most
    recently written KEEP_OPEN do: a device that begins many files and goes away cannot
    use up the dock's descriptors. A file whose descriptor was closed takes its next chunk
    as before."""
    dock_dir, root, _ = sealed
    archive = open_archive(dock_dir, root)
    incoming = root / "incoming"

    def open_incoming() -> int:
        return sum(1 for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}").startswith(str(incoming)))

    left = KEEP_OPEN + 40
    ids = [f"{i:032x}" for i in range(left)]
    for file_id in ids:
        archive.begin(DEVICE, file_id, f"left-{file_id[-4:]}.bin", "left", 2 * CHUNK,
                      "0" * 64, None, "media")
        archive.write_chunk(DEVICE, file_id, 0, b"x" * CHUNK)
    assert open_incoming() == left  # one batch: every file written waits to be durable
    archive.sync()
    assert open_incoming() == KEEP_OPEN
    archive.write_chunk(DEVICE, ids[0], CHUNK, b"y" * CHUNK)  # closed, opened again
    archive.sync()
    part = incoming / DEVICE / f"{ids[0]}.part"
    assert part.read_bytes() == b"x" * CHUNK + b"y" * CHUNK
    assert open_incoming() == KEEP_OPEN
    archive.close()
    assert open_incoming() == 0
