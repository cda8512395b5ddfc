"""Evidence store on the device: where segments, photos and their metadata are written.

One directory per activity under the evidence directory; files named by device, activity,
sequence and time, e.g. ``BC-0001_20261129T010100Z_000042_20261129T010312Z.ts``. The
sequence number runs over the device's whole life (kept in ``.device-state.json``, written
atomically), so a removed file shows as a gap. Evidence files are created exclusively
(never overwritten), fsynced as written, and made read-only when closed: nothing on the
device edits or deletes them (R5.1) — removal belongs to the dock's signed receipt.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from firmware_py.evidence.canonical import GENESIS
from firmware_py.paths import DEVICE_STATE

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def utc_compact(utc: float) -> str:
    return datetime.fromtimestamp(utc, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class ActivityDir:
    """One enforcement action on site: its id and its directory."""

    id: str
    path: Path
    opened_utc: float


class DurableFile:
    """A new evidence file: exclusive create, bytes counted, ``flush`` reaches the disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "xb")  # never overwrite evidence
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self._fh.write(data)
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
            make_read_only(self.path)

    @property
    def closed(self) -> bool:
        return self._fh.closed


def make_read_only(path: Path) -> None:
    os.chmod(path, READ_ONLY)


def write_atomic(path: Path, data: bytes, mode: int | None = None, *,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a power cut leaves the old file or the new one,
    never a part: written beside it, fsynced (with ``mode`` set, e.g. read-only), renamed.
    With ``durable=False`` the caller makes the file and its folder durable later (the dock
    does so for a whole round of files at once)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    """SHA-256 (lowercase hex) of the file at ``path``, read a block at a time."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EvidenceStore:
    STATE = DEVICE_STATE

    def __init__(self, root: Path, device_id: str) -> None:
        self.root = Path(root)
        self.device_id = device_id
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_path = self.root / self.STATE
        self._state = self._load_state()

    def _load_state(self) -> dict[str, Any]:
        if not self._state_path.exists():
            return {"next_sequence": 1}
        try:
            state = json.loads(self._state_path.read_text())
            if not isinstance(state.get("next_sequence"), int) or state["next_sequence"] < 1:
                raise ValueError("next_sequence missing or not a positive integer")
            return state
        except (ValueError, json.JSONDecodeError) as exc:
            # Never reuse a number: rebuild it from the files present, past the highest,
            # and the chain head from the newest manifest.
            highest = max((_sequence_of(p) for p in self.root.rglob("*_*_*_*")), default=0)
            state = {"next_sequence": highest + 1, "rebuilt_because": str(exc),
                     **self._chain_from_manifests()}
            write_atomic(self._state_path, json.dumps(state).encode())
            return state

    def _chain_from_manifests(self) -> dict[str, Any]:
        import hashlib

        best: tuple[int, str] = (0, GENESIS)
        for path in self.root.rglob("*.manifest.json"):
            try:
                data = path.read_bytes()
                sequence = int(json.loads(data)["sequence"])
            except (ValueError, KeyError, json.JSONDecodeError):
                continue
            if sequence > best[0]:
                best = (sequence, hashlib.sha256(data).hexdigest())
        return {"chain_sequence": best[0], "chain_head": best[1]}

    def chain_head(self) -> tuple[int, str]:
        """The last sealed manifest's place in the chain and its SHA-256."""
        return int(self._state.get("chain_sequence", 0)), str(self._state.get("chain_head", GENESIS))

    def advance_chain(self, sequence: int, digest: str) -> None:
        self._state["chain_sequence"] = sequence
        self._state["chain_head"] = digest
        write_atomic(self._state_path, json.dumps(self._state).encode())

    def next_sequence(self) -> int:
        """Take the next file number of the device's life (persisted first)."""
        sequence = self._state["next_sequence"]
        self._state["next_sequence"] = sequence + 1
        write_atomic(self._state_path, json.dumps(self._state).encode())
        return sequence

    def open_activity(self, utc: float) -> ActivityDir:
        activity_id = utc_compact(utc)
        path = self.root / activity_id
        suffix = 1
        while path.exists():  # two activities in one second: keep both
            suffix += 1
            activity_id = f"{utc_compact(utc)}-{suffix}"
            path = self.root / activity_id
        path.mkdir(parents=True)
        return ActivityDir(activity_id, path, utc)

    def evidence_path(self, activity: ActivityDir, sequence: int, utc: float, suffix: str) -> Path:
        return activity.path / f"{self.device_id}_{activity.id}_{sequence:06d}_{utc_compact(utc)}{suffix}"


def _sequence_of(path: Path) -> int:
    parts = path.name.split("_")
    try:
        return int(parts[2])
    except (IndexError, ValueError):
        return 0
