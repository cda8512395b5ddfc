"""Audit log (R7.6, R18.2): every event the device saw, append-only and hash-chained.

One JSON object per line. Each entry carries its sequence number, the time (UTC, local
offset, monotonic, time source), a ``kind`` and its facts, and ``prev`` — the SHA-256 of
the previous line's bytes — so an edited, removed or reordered line breaks the chain at
that point. Each line is flushed and fsynced as written: the log must survive a power cut
as well as the evidence does. Signed checkpoints over the chain come with evidence sealing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from device.clock import Clock
from firmware_py.evidence.canonical import GENESIS

CHECKPOINT_EVERY = 50


class AuditLogError(ValueError):
    """The log on disk is not an intact chain; the message names the line."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    kind: str
    time: dict[str, Any]
    fields: dict[str, Any]
    prev: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "kind": self.kind, "fields": self.fields,
                "prev": self.prev}


def _encode(entry: dict[str, Any]) -> bytes:
    # Not ``firmware_py.evidence.canonical.canonical``: audit entries carry floats and any
    # value as text (``default=str``), which sealed records may not, and the chain is over
    # these line bytes as written since the first log (the same sorted keys and separators).
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode() + b"\n"


class AuditLog:
    def __init__(self, path: Path, clock: Clock, durable: bool = True) -> None:
        self.path = Path(path)
        self._clock = clock
        self._durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The previous run's last entry other than a checkpoint: ``shutdown`` after a run
        # that ended in order, anything else after a power cut; None on a first boot.
        self.previous_run_end: dict[str, Any] | None = None
        self._seq, self._prev = self._resume()
        self._fh = self.path.open("ab")
        self._sign: Callable[[bytes], bytes] | None = None
        self._key_id = ""
        self._since_checkpoint = 0
        # The agent's loop and the dock link's thread both write here on a docked recorder;
        # one line and its place in the chain are written as one step.
        self._lock = threading.RLock()

    def sign_with(self, sign: Callable[[bytes], bytes], key_id: str) -> None:
        """Sign checkpoints from now on (once the device's identity is loaded)."""
        self._sign, self._key_id = sign, key_id

    def checkpoint(self) -> AuditEntry | None:
        """Sign the head of the chain; nothing to do without a key or new entries."""
        with self._lock:
            if self._sign is None or self._since_checkpoint == 0:
                return None
            head = self._prev
            signature = base64.b64encode(self._sign(bytes.fromhex(head))).decode()
            entry = self._write("checkpoint", {"head": head, "covers": self._seq,
                                               "key": self._key_id, "signature": signature})
            self._since_checkpoint = 0
            return entry

    def _resume(self) -> tuple[int, str]:
        """Continue the chain of a log left by an earlier run (after a restart or power cut)."""
        seq, prev = 0, GENESIS
        if not self.path.exists():
            return seq, prev
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A power cut mid-line: keep the torn bytes out of the chain but not out of sight.
            cut = data.rfind(b"\n") + 1
            with self.path.open("r+b") as fh:
                fh.truncate(cut)
            torn = self.path.with_suffix(self.path.suffix + ".torn")
            with torn.open("ab") as fh:
                fh.write(data[cut:] + b"\n")
            data = data[:cut]
        for entry, line in _iter_lines(data, self.path):
            seq, prev = entry["seq"] + 1, hashlib.sha256(line).hexdigest()
            if entry.get("kind") != "checkpoint":
                self.previous_run_end = entry
        return seq, prev

    def append(self, kind: str, fields: dict[str, Any] | None = None) -> AuditEntry:
        with self._lock:
            entry = self._write(kind, fields)
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                self.checkpoint()
            return entry

    def _write(self, kind: str, fields: dict[str, Any] | None) -> AuditEntry:
        entry = AuditEntry(self._seq, kind, self._clock.now().to_json(), dict(fields or {}),
                           self._prev)
        line = _encode(entry.to_json())
        self._fh.write(line)
        self._fh.flush()
        if self._durable:
            os.fsync(self._fh.fileno())
        self._seq += 1
        self._prev = hashlib.sha256(line).hexdigest()
        return entry

    @property
    def head(self) -> str:
        """Hash of the last line: what a signed checkpoint will cover."""
        return self._prev

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self.checkpoint()
                self._fh.close()


def _iter_lines(data: bytes, path: Path) -> Iterator[tuple[dict[str, Any], bytes]]:
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditLogError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict) or "seq" not in entry or "prev" not in entry:
            raise AuditLogError(f"{path}:{number}: not an audit entry")
        yield entry, line


def scan(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Every readable entry, and the first break in the chain (None when intact)."""
    entries: list[dict[str, Any]] = []
    prev, seq = GENESIS, 0
    problem: str | None = None
    path = Path(path)
    for number, line in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = problem or f"{path}:{number}: not JSON ({exc.msg})"
            continue
        if not isinstance(entry, dict) or "seq" not in entry or "prev" not in entry:
            problem = problem or f"{path}:{number}: not an audit entry"
            continue
        if problem is None and entry["prev"] != prev:
            problem = (f"{path}:{number}: entry {entry['seq']}: chain broken (an entry before "
                       "it was altered, removed or reordered)")
        elif problem is None and entry["seq"] != seq:
            problem = f"{path}:{number}: entry {entry['seq']}: expected sequence {seq}"
        elif (problem is None and entry.get("kind") == "checkpoint"
              and entry.get("fields", {}).get("head") != prev):
            problem = f"{path}:{number}: checkpoint {entry['seq']} does not sign the entries before it"
        prev, seq = hashlib.sha256(line).hexdigest(), entry["seq"] + 1
        entries.append(entry)
    if problem is None and not line_ends_cleanly(path):
        problem = f"{path}: the last line is torn (written during a power cut?)"
    return entries, problem


def line_ends_cleanly(path: Path) -> bool:
    data = Path(path).read_bytes()
    return not data or data.endswith(b"\n")


def read(path: Path) -> list[dict[str, Any]]:
    """Every entry, after checking the whole chain; raises AuditLogError at the first break."""
    entries, problem = scan(path)
    if problem is not None:
        raise AuditLogError(problem)
    return entries


def verify_checkpoints(entries: list[dict[str, Any]], keys: dict[str, Any]) -> tuple[int, str | None]:
    """Check each checkpoint's signature with the enrolled device keys (by key id)."""
    from cryptography.exceptions import InvalidSignature

    checked = 0
    for entry in entries:
        if entry.get("kind") != "checkpoint":
            continue
        fields = entry.get("fields", {})
        device = keys.get(fields.get("key"))
        if device is None:
            return checked, f"checkpoint {entry['seq']}: signed by key {fields.get('key')}, which no enrolled device has"
        try:
            device.public_key.verify(base64.b64decode(fields["signature"]), bytes.fromhex(fields["head"]))
        except (InvalidSignature, ValueError, KeyError):
            return checked, f"checkpoint {entry['seq']}: signature does not match"
        checked += 1
    return checked, None
