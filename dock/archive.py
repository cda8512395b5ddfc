"""The dock's archive (R13.1, R13.2): evidence stored durably, verified, indexed, receipted.

Incoming bytes go to ``incoming/<device>/<file_id>.part``, fsynced chunk by chunk, with the
confirmed offset in the SQLite index — so a transfer cut anywhere resumes from there, even
across a dock restart. A complete file is checked against its whole-file hash and against
its seal: a manifest must be canonical and signed by an enrolled device; every other file
must match the hash its manifest gives. Only then is it moved into
``<device>/<activity>/<name>`` and a receipt signed with the dock's key; the receipt is
kept, so a device that asks again gets the same receipt and nothing is stored twice.
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import functools
import hashlib
import itertools
import json
import mmap
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dock.receipts import file_receipt, read_receipt
from dock.timestamping import Timestamper, TimestampError
from firmware_py.evidence.canonical import canonical
from firmware_py.evidence.chainhead import SIGNATURE as CHAIN_HEAD_SIG
from firmware_py.evidence.chainhead import SUFFIX as CHAIN_HEAD
from firmware_py.evidence.chainhead import check_chain_head
from firmware_py.evidence.evidence_file import ChunkCounter, EvidenceFileError, parse
from firmware_py.evidence.keys import EnrolledDevice, load_registry
from firmware_py.evidence.seal import MANIFEST, SIGNATURE
from firmware_py.evidence.store import READ_ONLY, fsync_dir, sha256_file
from firmware_py.evidence.verify import check_manifest, file_records
from dock.conflicts import Conflict, keep_aside
from sync.protocol import receipt_body

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT NOT NULL, device TEXT NOT NULL, name TEXT NOT NULL, activity TEXT NOT NULL,
    manifest TEXT, kind TEXT, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    state TEXT NOT NULL, offset INTEGER NOT NULL DEFAULT 0, archive_path TEXT,
    started_at REAL, stored_at REAL, receipt TEXT, signature TEXT, verified INTEGER,
    PRIMARY KEY (device, file_id));
CREATE TABLE IF NOT EXISTS dockings (
    device TEXT NOT NULL, docked_at REAL NOT NULL, undocked_at REAL);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, officer TEXT NOT NULL,
    assigned_at REAL NOT NULL, released_at REAL);
CREATE TABLE IF NOT EXISTS seals (
    device TEXT NOT NULL, sequence INTEGER NOT NULL, kind TEXT NOT NULL, activity TEXT,
    officer TEXT, start_ms INTEGER, end_ms INTEGER, manifest TEXT NOT NULL,
    PRIMARY KEY (device, sequence));
-- The incoming files of a device, found without reading its archived ones (quota checks
-- at every init, the expiry of abandoned partials).
CREATE INDEX IF NOT EXISTS files_by_state ON files (device, state);
CREATE TABLE IF NOT EXISTS claims (
    device TEXT NOT NULL, file_id TEXT NOT NULL, name TEXT NOT NULL, activity TEXT NOT NULL,
    claimed_at REAL NOT NULL, session REAL NOT NULL, PRIMARY KEY (device, file_id));
CREATE TABLE IF NOT EXISTS device_events (
    device TEXT NOT NULL, event TEXT NOT NULL, at REAL NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offers (
    device TEXT NOT NULL, file_id TEXT NOT NULL, name TEXT NOT NULL, activity TEXT NOT NULL,
    first_offered_at REAL NOT NULL, PRIMARY KEY (device, file_id));
"""


class ArchiveError(ValueError):
    """A file that cannot be accepted; the message says why (sent back to the device)."""


class ArchiveConflict(ArchiveError):
    """A file that would replace archived evidence: refused for good, kept aside
    (``dock.conflicts``). Sending it again changes nothing."""


@dataclass(frozen=True)
class Stored:
    file_id: str
    receipt: dict[str, Any]
    signature: bytes


def sign_receipt(key: Ed25519PrivateKey, body: dict[str, Any]) -> bytes:
    """The dock's signature over the receipt body's canonical bytes (what devices check)."""
    return key.sign(canonical(body))


class Archive:
    def __init__(self, root: Path, dock_dir: Path, dock_key: Ed25519PrivateKey, dock_id: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dock_dir = Path(dock_dir)
        self._key = dock_key
        self.dock_id = dock_id
        self.db = sqlite3.connect(self.root / "index.sqlite", check_same_thread=False)
        # WAL with normal sync: a power cut may lose the last offsets recorded, never the
        # chunks (they are fsynced in the .part file first) — the device then resends a
        # little from an older offset, which store_chunk overwrites in place.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.commit()
        # Incoming files being written: one descriptor each, kept open from their first
        # chunk to their completion (a file is not opened again for every batch), and the
        # end of the bytes written so far; the least recently written first. At most
        # KEEP_OPEN stay open between batches: devices that begin many files and go away
        # must not hold the dock's descriptors.
        self._writing: OrderedDict[tuple[str, str], _Incoming] = OrderedDict()
        self._dirty: set[tuple[str, str]] = set()  # written since the last hand-over
        # Whole-file hashes and chunk counts of incoming files taken as their chunks are
        # written, in order from byte 0: a completed file is checked without reading it
        # back. A file resumed after a restart, or written out of order, has none here and
        # is read at completion.
        self._hashing: dict[tuple[str, str], _Arrival] = {}
        self._moved: set[Path] = set()  # folders of files completed with ``defer``
        self._unsynced_files: list[Path] = []  # their receipts, written and not yet fsynced
        self._abandoned = False
        # RFC 3161 tokens over chain heads at filing; the composition root may point it at
        # an external TSA (dock.toml [timestamp] url).
        self.timestamper = Timestamper(self.dock_dir)

    def registry(self) -> dict[str, EnrolledDevice]:
        # Read each time: a device enrolled while the dock runs is known at once.
        return load_registry(self.dock_dir)

    # --- transfer state ---------------------------------------------------------------------

    def resume_state(self, device: str) -> tuple[dict[str, int], dict[str, Stored]]:
        """Offsets of partial files, and receipts of files already archived."""
        partial, done = {}, {}
        for file_id, state, offset, receipt, signature in self.db.execute(
                "SELECT file_id, state, offset, receipt, signature FROM files WHERE device=?",
                (device,)):
            if state == "incoming":
                partial[file_id] = offset
            elif state == "archived":
                done[file_id] = Stored(file_id, json.loads(receipt), base64.b64decode(signature))
        return partial, done

    def open_files(self, device: str, but: str | None = None) -> list[tuple[int, int]]:
        """(declared size, bytes stored) of the device's incoming files (but ``but``)."""
        return [(size, offset) for fid, size, offset in self.db.execute(
            "SELECT file_id, size, offset FROM files WHERE device=? AND state='incoming'",
            (device,)) if fid != but]

    def is_begun(self, device: str, file_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE device=? AND file_id=? AND state IN "
                               "('incoming', 'archived', 'conflict')",
                               (device, file_id)).fetchone() is not None

    def expire_partial(self, now: float, after_s: float) -> list[tuple[str, str, str, int]]:
        """Remove incoming files that made no progress for ``after_s`` seconds (their
        partial bytes and index rows); returns (device, file_id, name, bytes) of each."""
        self.sync()
        gone = []
        for device, file_id, name, offset, started in self.db.execute(
                "SELECT device, file_id, name, offset, started_at FROM files "
                "WHERE state='incoming'").fetchall():
            part = self._part(device, file_id)
            try:
                touched = max(part.stat().st_mtime, started or 0)
            except FileNotFoundError:
                touched = started or 0
            if now - touched < after_s:
                continue
            self._stop_writing(device, file_id)
            part.unlink(missing_ok=True)
            self.db.execute("DELETE FROM files WHERE device=? AND file_id=? AND state='incoming'",
                            (device, file_id))
            gone.append((device, file_id, name, int(offset)))
        if gone:
            self.db.commit()
        return gone

    def _part(self, device: str, file_id: str) -> Path:
        return self.root / "incoming" / device / f"{file_id}.part"

    def begin(self, device: str, file_id: str, name: str, activity: str, size: int,
              sha256: str, manifest: str | None, kind: str | None) -> int:
        """Open (or resume) an incoming file; returns the offset the dock holds."""
        _safe_name(name)
        _safe_name(activity)
        row = self.db.execute("SELECT state, offset, name, activity, size, sha256 FROM files "
                              "WHERE device=? AND file_id=?", (device, file_id)).fetchone()
        if row is not None and row[0] in ("incoming", "archived"):
            if tuple(row[2:]) != (name, activity, size, sha256):
                # The same file id announced again as another file (a second hello, then an
                # init under another name): the receipt must describe what was announced
                # first, so the new description is refused, not silently swapped in.
                raise ArchiveError(f"{file_id} is already announced as {row[3]}/{row[2]} "
                                   f"({row[4]} bytes); refused as {activity}/{name}")
            return int(row[1])
        if row is not None and row[0] == "conflict":
            raise ArchiveConflict(f"{name}: refused before, as a conflict with archived "
                                  "evidence; kept aside for a custodian")
        part = self._part(device, file_id)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"")
        self._hashing[(device, file_id)] = _Arrival(name)
        self.db.execute("INSERT OR REPLACE INTO files (file_id, device, name, activity, manifest, "
                        "kind, size, sha256, state, offset, started_at) VALUES "
                        "(?,?,?,?,?,?,?,?, 'incoming', 0, ?)",
                        (file_id, device, name, activity, manifest, kind, size, sha256, time.time()))
        # Committed with the file's first chunks (sync): a dock that stops before that has an
        # empty .part and no row, and begins the file again when it comes back.
        return 0

    def store_chunk(self, device: str, file_id: str, offset: int, data: bytes) -> int:
        """Write a chunk at ``offset`` durably; returns the new confirmed offset."""
        end = self.write_chunk(device, file_id, offset, data)
        self.sync()
        return end

    def write_chunk(self, device: str, file_id: str, offset: int, data: bytes) -> int:
        """Write a chunk at ``offset``, not yet durable: ``sync`` makes every chunk written
        since the last one durable at once (one fsync per file, one index commit), so a dock
        that has several chunks waiting pays for durability once, not per chunk."""
        key = (device, file_id)
        incoming = self._writing.get(key)
        if incoming is None:
            fd = os.open(self._part(device, file_id), os.O_WRONLY | os.O_CLOEXEC)
            incoming = self._writing[key] = _Incoming(fd, os.fstat(fd).st_size)
        else:
            self._writing.move_to_end(key)
        if offset > incoming.end:
            # The incoming file must stay a clean prefix: never leave a hole of zeros.
            raise OSError(f"{file_id}.part holds {incoming.end} bytes, chunk is at {offset}")
        end = offset + len(data)
        written = os.pwrite(incoming.fd, data, offset)
        if written != len(data):  # a full disk part way: what is there is not the chunk
            os.ftruncate(incoming.fd, offset)
            incoming.end = offset
            raise OSError(f"{file_id}.part: {written} of {len(data)} bytes written")
        if end < incoming.end:  # sent again over a prefix: what followed is not this file's
            os.ftruncate(incoming.fd, end)
        incoming.end = end
        self._dirty.add(key)
        arrival = self._hashing.get(key)
        if arrival is not None:
            if offset == arrival.upto:
                arrival.take(data)
            else:  # bytes written again over a prefix: only a read-back can tell the file
                del self._hashing[key]
        return end

    def _stop_writing(self, device: str, file_id: str) -> None:
        """Close an incoming file's descriptor (completed, emptied or removed): chunks
        already handed over keep their own duplicate until they are durable."""
        incoming = self._writing.pop((device, file_id), None)
        self._dirty.discard((device, file_id))
        if incoming is not None:
            os.close(incoming.fd)

    def sync(self) -> None:
        """Make every chunk written since the last call durable, then record the offsets."""
        self.record_offsets(make_durable(self.detach_written()))

    def detach_written(self) -> list[tuple[tuple[str, str], int, int]]:
        """The files written since the last call, handed over to be made durable (by
        :func:`make_durable`, on any thread): (key, a duplicate descriptor the receiver
        closes, the end written so far) each. Chunks written after this are the next
        hand-over's; the descriptor stays this archive's."""
        dirty, self._dirty = self._dirty, set()
        handed = [(key, os.dup(self._writing[key].fd), self._writing[key].end)
                  for key in dirty if key in self._writing]
        while len(self._writing) > KEEP_OPEN:  # none is waiting now: the oldest may go
            os.close(self._writing.popitem(last=False)[1].fd)
        return handed

    def record_offsets(self, ends: list[tuple[int, str, str]]) -> None:
        """Record in the index how far files are durable: (offset, device, file_id) each, as
        :func:`make_durable` returns them. Only the thread that owns the archive calls it."""
        if ends:
            self.db.executemany("UPDATE files SET offset=? WHERE device=? AND file_id=?", ends)
        if ends or self.db.in_transaction:
            self.db.commit()

    def discard(self, device: str, file_id: str) -> None:
        """A file whose whole-file hash failed: start again from nothing."""
        self.sync()  # no chunk written before may land after the file was emptied
        row = self.db.execute("SELECT state, name FROM files WHERE device=? AND file_id=?",
                              (device, file_id)).fetchone()
        if row is None or row[0] != "incoming":
            return  # kept aside as a conflict, or never begun: no staging file to empty
        self._stop_writing(device, file_id)
        self._part(device, file_id).write_bytes(b"")
        self._hashing[(device, file_id)] = _Arrival(row[1])
        self.db.execute("UPDATE files SET offset=0 WHERE device=? AND file_id=?", (device, file_id))
        self.db.commit()

    # --- completion ---------------------------------------------------------------------------

    def complete(self, device: str, file_id: str, *, defer: bool = False) -> Stored:
        """Check, archive and receipt a fully received file; ArchiveError says why not.

        With ``defer`` the move into the archive and the index row are not made durable
        yet: :meth:`commit_completed` does that for every file completed so, at once (one
        fsync per folder, one commit), and the receipts must wait for it. The caller makes
        the file's chunks durable first."""
        if not defer:
            self.sync()
        row = self.db.execute("SELECT name, activity, size, sha256, state, receipt, signature, "
                              "manifest FROM files WHERE device=? AND file_id=?",
                              (device, file_id)).fetchone()
        if row is None:
            raise ArchiveError(f"{file_id}: never announced")
        name, activity, size, sha256, state, receipt, signature, sealed_by = row
        if state == "archived":
            return Stored(file_id, json.loads(receipt), base64.b64decode(signature))
        self._stop_writing(device, file_id)
        part = self._part(device, file_id)
        target = self.root / device / activity / name
        arrival = self._hashing.pop((device, file_id), None)
        chunks = None  # counted as the bytes arrived, or read from the file when checked
        moved = not part.exists() and target.is_file()
        if not moved and target.is_file():
            # Write-once (issue 14): the name holds a receipted file already.
            if sha256_file(target) != sha256:
                raise self._conflict(device, file_id, name, activity, size, sha256, target,
                                     f"{activity}/{name} is archived already with other "
                                     "bytes; the archive is write-once", defer=defer)
            # The very bytes: linked into the archive by a completion that a crash cut
            # short before the staging file went and the index row was committed.
            part.unlink()
            moved = True
        if moved:
            # Moved into the archive by a completion whose index row a crash (or a power
            # cut) lost before its commit: the bytes there are this file only if they hash
            # to what was announced.
            digest = sha256_file(target)
            if digest != sha256:
                raise ArchiveError(f"{name}: the archive holds other bytes under this name")
            part = target
        elif arrival is not None and arrival.upto == size and part.stat().st_size == size:
            digest = arrival.digest.hexdigest()  # every byte, hashed as it was written
            chunks = arrival.chunks
        else:
            digest = sha256_file(part)
        if digest != sha256:
            if defer:
                self.commit_completed()  # discard commits: the moves before it go first
            self.discard(device, file_id)
            raise ArchiveError(f"{name}: whole-file hash or size does not match what was "
                               "announced; discarded, send it again")
        try:
            verified = self._verify(device, activity, name, part, size, sha256, sealed_by,
                                    chunks)
        except _SealTaken as taken:
            raise self._conflict(device, file_id, name, activity, size, sha256, taken.path,
                                 str(taken), defer=defer) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        if not moved:
            try:
                # A hard link never replaces: if the name were taken after all, this fails
                # instead of putting the new bytes over the old (os.replace would).
                os.link(part, target)
            except FileExistsError:
                raise self._conflict(device, file_id, name, activity, size, sha256, target,
                                     f"{activity}/{name} appeared while being archived",
                                     defer=defer) from None
            os.unlink(part)
        if defer:
            self._moved.add(target.parent)
        else:
            fsync_dir(target.parent)
        body = receipt_body(dock=self.dock_id, device=device, file_id=file_id, name=name,
                            size=size, sha256=sha256, stored_at=int(time.time() * 1000),
                            archive_path=str(target.relative_to(self.root)),
                            activity=activity, verified=verified)
        signature_bytes = sign_receipt(self._key, body)
        filed = read_receipt(target) if moved else None
        if filed is not None:
            # A receipt was filed before the crash that lost the index row: it stays the
            # file's one receipt (it was never sent, so the device gets this one now).
            body, signature_bytes = filed
            os.chmod(target, READ_ONLY)
        else:  # read-only, receipt beside it
            self._unsynced_files += file_receipt(target, body, signature_bytes,
                                                 durable=not defer)
        if name.endswith(CHAIN_HEAD):
            try:
                self.timestamper.stamp(target)
            except TimestampError as exc:  # the head is filed; verify reports the token missing
                log.warning("%s: no time-stamp token: %s", name, exc)
        self.db.execute("UPDATE files SET state='archived', archive_path=?, stored_at=?, "
                        "receipt=?, signature=?, verified=? WHERE device=? AND file_id=?",
                        (body["archive_path"], time.time(), json.dumps(body),
                         base64.b64encode(signature_bytes).decode(), int(verified), device, file_id))
        if not defer:
            self.db.commit()
        return Stored(file_id, body, signature_bytes)

    def commit_completed(self) -> None:
        """Make the files completed with ``defer`` durable in the archive: their folders
        fsynced (the moves), then the index committed — in that order, so the index never
        says archived for a file whose move a power cut could undo."""
        moved, self._moved = self._moved, set()
        files, self._unsynced_files = self._unsynced_files, []
        if self._abandoned:
            return
        fds = [os.open(path, os.O_RDONLY) for path in files]  # the receipts beside them
        try:
            _sync_files(fds)
        finally:
            for fd in fds:
                os.close(fd)
        for folder in sorted(moved):
            fsync_dir(folder)
        self.db.commit()

    def _conflict(self, device: str, file_id: str, name: str, activity: str, size: int,
                  sha256: str, kept: Path, reason: str, *, defer: bool = False
                  ) -> ArchiveConflict:
        """Keep the received file aside as a conflict, mark it so in the index, and return
        the error that refuses it to the device."""
        if defer:
            self.commit_completed()  # this commits: the moves before it go first
        record = keep_aside(self.root, self._part(device, file_id), Conflict(
            device, file_id, name, activity, size, sha256, reason,
            str(kept.relative_to(self.root)) if kept.is_relative_to(self.root) else str(kept),
            time.time()))
        self.db.execute("UPDATE files SET state='conflict', archive_path=?, offset=0 "
                        "WHERE device=? AND file_id=?", (record.bytes_path, device, file_id))
        self.db.commit()
        return ArchiveConflict(f"{name}: refused, {reason}; kept aside for a custodian")

    def _verify(self, device: str, activity: str, name: str, part: Path, size: int,
                sha256: str, sealed_by: str | None = None,
                chunks: ChunkCounter | None = None) -> bool:
        """The seal check on arrival. Returns whether a seal covers the file; raises if a
        seal exists and the file fails it. ``chunks`` counted the file's chunks as it
        arrived; without it they are counted in the file."""
        folder = self.root / device / activity
        if name.endswith(CHAIN_HEAD_SIG):
            return False  # checked with its chain head
        if name.endswith(CHAIN_HEAD):
            return self.verify_chain_head(device, activity, name, part.read_bytes())
        if name.endswith(SIGNATURE):
            manifest = folder / (name[: -len(SIGNATURE)] + MANIFEST)
            if not manifest.is_file():
                return False  # checked with its manifest, which comes next
            # Its manifest is here already: a signature that does not sign it is refused
            # now (it could only ever stand beside it as a false one).
            _, problems = check_manifest(manifest.read_bytes(), part.read_bytes(),
                                         self.registry())
            if problems:
                raise ArchiveError(f"{name}: does not sign {manifest.name}: "
                                   f"{'; '.join(p for _, p in problems)}")
            return True
        if name.endswith(MANIFEST):
            sig = folder / (name[: -len(MANIFEST)] + SIGNATURE)
            body, problems = check_manifest(part.read_bytes(),
                                            sig.read_bytes() if sig.exists() else None,
                                            self.registry())
            if body is None or problems:
                raise ArchiveError(f"{name}: seal does not verify: "
                                   f"{'; '.join(p for _, p in problems) or 'unreadable'}")
            if body.get("device") != device:
                raise ArchiveError(f"{name}: sealed by {body.get('device')}, sent by {device}")
            taken = self.db.execute("SELECT manifest FROM seals WHERE device=? AND sequence=?",
                                    (device, body.get("sequence"))).fetchone()
            if taken is not None and taken[0] != name:
                # The chain position is another manifest's: a second seal for it is a
                # forgery or a fork, never a replacement.
                raise _SealTaken(folder / taken[0],
                                 f"sequence {body.get('sequence')} of {device}'s chain is "
                                 f"sealed already by {taken[0]}")
            start, end = _mapping(body.get("start")), _mapping(body.get("end"))
            self.db.execute("INSERT OR IGNORE INTO seals VALUES (?,?,?,?,?,?,?,?)",
                            (device, body.get("sequence"), body.get("kind"), body.get("activity"),
                             body.get("officer"), start.get("utc_ms"), end.get("utc_ms"), name))
            return True
        # The manifest the device named for the file first; any other in the folder after.
        # The folder is listed only when the named manifest does not cover the file: with
        # thousands of files in an activity, a listing per file would make a docking
        # quadratic in its size.
        named = [folder / sealed_by] if sealed_by and (folder / sealed_by).is_file() else []

        def others() -> Any:
            yield from sorted(set(folder.glob(f"*{MANIFEST}")) - set(named))

        for manifest in itertools.chain(named, others()):
            body = json.loads(manifest.read_bytes())
            for record in file_records(body):
                if record.get("name") == name:
                    if record.get("stored_sha256") != sha256 or record.get("stored_bytes") != size:
                        raise ArchiveError(f"{name}: does not match its seal {manifest.name}")
                    if record.get("encrypted") and _chunk_count(part, name, chunks) \
                            != record.get("chunks"):
                        raise ArchiveError(f"{name}: chunk count differs from its seal")
                    return True
        return False  # no seal (yet) covers it: stored, receipted as unverified

    def verify_chain_head(self, device: str, activity: str, name: str, data: bytes) -> bool:
        """A device's signed chain head on arrival: canonical, signed by that device's
        enrolled key (its signature arrived first, beside it), or ArchiveError says why."""
        sig = self.root / device / activity / (name[: -len(CHAIN_HEAD)] + CHAIN_HEAD_SIG)
        head, problem = check_chain_head(data, sig.read_bytes() if sig.exists() else None,
                                         self.registry())
        if head is None or head.get("device") != device:
            raise ArchiveError(f"{name}: {problem or 'a chain head of another device'}")
        return True

    # --- docking, clock, ledger -----------------------------------------------------------------

    def docked(self, device: str, at: float, offered: list[tuple[str, str, str]] = ()) -> None:
        """A device came back (its hello): when, and what it says is waiting on it."""
        self.db.execute("INSERT INTO dockings (device, docked_at) VALUES (?, ?)", (device, at))
        self.offered(device, at, offered)

    def offered(self, device: str, at: float, offered: list[tuple[str, str, str]]) -> None:
        """What a device says is waiting on it (a hello, or a later page of one)."""
        self.db.executemany("INSERT OR IGNORE INTO offers VALUES (?,?,?,?,?)",
                            [(device, fid, name, activity, at) for fid, name, activity in offered])
        self.db.commit()

    def claimed(self, device: str, session: float, offered: list[tuple[str, str, str]]) -> None:
        """What a hello says is waiting on the device, before the docking is confirmed: a
        claim (``session`` is its hello's time). Claims count for nothing overdue until
        ``confirm_docking`` makes them offers."""
        self.db.executemany(
            "INSERT INTO claims VALUES (?,?,?,?,?,?) ON CONFLICT (device, file_id) "
            "DO UPDATE SET session=excluded.session",
            [(device, fid, name, activity, session, session) for fid, name, activity in offered])
        self.db.commit()

    def confirm_docking(self, device: str, session: float, new: bool = True) -> None:
        """The session that began at ``session`` is a docking (a charging hello, or a file
        received): record it (``new``), and its claims become offers (R13.4's clock starts)."""
        if new:
            self.db.execute("INSERT INTO dockings (device, docked_at) VALUES (?, ?)",
                            (device, session))
        self.db.execute("INSERT OR IGNORE INTO offers SELECT device, file_id, name, activity, "
                        "claimed_at FROM claims WHERE device=? AND session=?", (device, session))
        self.db.execute("DELETE FROM claims WHERE device=? AND session=?", (device, session))
        self.db.commit()

    def unconfirmed_claims(self, device: str | None = None) -> list[dict[str, Any]]:
        """Files offered only in sessions never confirmed as dockings, still not archived:
        per device and activity, how many and since when (for a custodian to judge)."""
        rows = self.db.execute(
            "SELECT c.device, c.activity, COUNT(*), MIN(c.claimed_at) FROM claims c "
            "WHERE (?1 IS NULL OR c.device=?1) AND NOT EXISTS (SELECT 1 FROM offers o WHERE "
            "o.device=c.device AND o.file_id=c.file_id) AND NOT EXISTS (SELECT 1 FROM files f "
            "WHERE f.device=c.device AND f.file_id=c.file_id AND f.state='archived') "
            "GROUP BY c.device, c.activity ORDER BY c.device, c.activity", (device,)).fetchall()
        return [{"device": d, "activity": a, "files": n, "first_claimed_at": at}
                for d, a, n, at in rows]

    def clear_claims(self, device: str, activity: str | None = None) -> int:
        """A custodian's decision: the device's unconfirmed claims, and its offers whose files
        never arrived (of one activity, or all), are cleared; returns how many."""
        where = "device=?" + (" AND activity=?" if activity is not None else "")
        args = (device,) + ((activity,) if activity is not None else ())
        missing = ("NOT EXISTS (SELECT 1 FROM files f WHERE f.device=offers.device AND "
                   "f.file_id=offers.file_id AND f.state='archived')")
        cleared = self.db.execute(f"DELETE FROM claims WHERE {where}", args).rowcount
        cleared += self.db.execute(f"DELETE FROM offers WHERE {where} AND {missing}", args).rowcount
        self.db.commit()
        return cleared

    def overdue(self, upload_hours: float, now: float, dock_every_hours: float) -> dict[str, Any]:
        """R13.4: activities whose evidence was not all stored within ``upload_hours`` of the
        device's return, and devices not seen at the dock for ``dock_every_hours``."""
        late: dict[tuple[str, str], dict[str, Any]] = {}
        for device, activity, name, offered_at, stored_at in self.db.execute(
                "SELECT o.device, o.activity, o.name, o.first_offered_at, f.stored_at FROM offers o "
                "LEFT JOIN files f ON f.device=o.device AND f.file_id=o.file_id "
                "AND f.state='archived'"):
            limit = offered_at + upload_hours * 3600
            if (stored_at is None and now > limit) or (stored_at is not None and stored_at > limit):
                entry = late.setdefault((device, activity), {"device": device, "activity": activity,
                                                             "returned_at": offered_at, "files": []})
                entry["files"].append({"name": name, "stored_at": stored_at})
        silent = [{"device": device, "last_docked_at": last}
                  for device, last in self.db.execute(
                      "SELECT device, MAX(docked_at) FROM dockings GROUP BY device")
                  if now - last > dock_every_hours * 3600]
        return {"activities": list(late.values()), "devices": silent}

    def close(self) -> None:
        self.sync()
        self._close_incoming()
        self.db.close()

    def _close_incoming(self) -> None:
        for incoming in self._writing.values():
            os.close(incoming.fd)
        self._writing, self._dirty = OrderedDict(), set()

    def abandon(self) -> None:
        """Stop as a crashed process would: nothing more is made durable or committed."""
        self._abandoned = True
        self._close_incoming()
        self.db.close()


class _SealTaken(Exception):
    """A manifest for a chain position another manifest holds (``path``)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path = path


class _Arrival:
    """What is learnt of an incoming file from its bytes as they are written, in order:
    the whole-file hash and the chunk count, so nothing is read back to check it."""

    def __init__(self, name: str) -> None:
        self.digest = hashlib.sha256()
        self.chunks = ChunkCounter(name)
        self.upto = 0  # bytes taken

    def take(self, data: bytes) -> None:
        self.digest.update(data)
        self.chunks.feed(data)
        self.upto += len(data)


@dataclass
class _Incoming:
    """An incoming file open for writing: its descriptor and the end written so far."""

    fd: int
    end: int


KEEP_OPEN = 128  # incoming files whose descriptor stays open between batches
SYNCFS_FROM = 8  # files in one batch from which one syncfs replaces an fsync per file


def make_durable(written: list[tuple[tuple[str, str], int, int]]) -> list[tuple[int, str, str]]:
    """fsync files handed over by :meth:`Archive.detach_written` and close the descriptors
    handed with them; returns how far each is now durable, (offset, device, file_id), for
    :meth:`Archive.record_offsets`. Touches no shared state, so it may run beside the
    thread that goes on writing.

    A batch of many small files (a backlog of photos, manifests and records) is made
    durable with one ``syncfs`` of the archive's filesystem instead of one fsync each: each
    fsync waits for a journal commit of its own, and a dock then stores a few hundred
    small files a second."""
    try:
        _sync_files([fd for _, fd, _ in written])
        for _, fd, _ in written:
            _drop_cached(fd)
        return [(end, device, file_id) for (device, file_id), _, end in written]
    finally:
        for _, fd, _ in written:
            os.close(fd)


def _drop_cached(fd: int) -> None:
    """Let the kernel drop a durable file's pages from its cache. What the archive stores
    is written once and read rarely, and kept cached it pushes out what is read (the index,
    the station's pages); dropped, its pages are reused for the next chunks. Measured on
    this project's 2-core VM: writing 512 MiB in 256 KiB chunks cost 0.5-3.6 s of CPU per
    GB while the page cache grew, 0.3-0.45 s/GB with the pages dropped after each fsync."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # advice only: no fadvise here, nothing lost
        pass


def _sync_files(fds: list[int]) -> None:
    """Make the files open at ``fds`` durable: many (``SYNCFS_FROM`` or more) with one
    syncfs of their filesystem, fewer (or where syncfs does not exist) one fsync each."""
    if len(fds) >= SYNCFS_FROM and _syncfs(fds[0]):
        return
    for fd in fds:
        os.fsync(fd)


def _syncfs(fd: int) -> bool:
    """syncfs(2) on the filesystem holding ``fd``: True once it is durable, False where the
    call does not exist (not Linux). An error writing back is an OSError, as fsync's."""
    libc = _libc()
    if libc is None:
        return False
    if libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")
    return True


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syncfs  # noqa: B018 - present on Linux (glibc 2.14+, musl)
    except (OSError, AttributeError):
        return None
    return libc



def _chunk_count(path: Path, name: str, counted: ChunkCounter | None = None) -> int:
    """How many encrypted chunks a stored evidence file holds: as ``counted`` while it
    arrived, or else read through a memory map (its heads only are touched: no copy of a
    segment's megabytes)."""
    if counted is not None:
        try:
            return counted.count()
        except EvidenceFileError as exc:
            raise ArchiveError(str(exc)) from None
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return 0
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            try:
                parsed = parse(view, name)  # type: ignore[arg-type]
            except EvidenceFileError as exc:
                raise ArchiveError(str(exc)) from None
            count = len(parsed.chunks)
            for chunk in parsed.chunks:  # the map cannot close while views into it live
                for part in (getattr(chunk, f.name) for f in dataclasses.fields(chunk)):
                    if isinstance(part, memoryview):
                        part.release()
            del parsed
            return count


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _safe_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ArchiveError(f"{name!r} is not an acceptable file name")
