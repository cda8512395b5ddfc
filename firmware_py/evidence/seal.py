"""Seals (R18.1): a signed manifest per segment, photo and record, chained over the device's life.

A manifest names the device, unit, officer and activity, its place in the device's chain
(``sequence``, and ``prev`` — the SHA-256 of the previous manifest), the times with their
source, and for each file the SHA-256 and size of its plaintext and of its stored bytes.
It is serialised canonically (RFC 8785 with integers only) into ``<stem>.manifest.json`` and
signed with the device's Ed25519 key into ``<stem>.manifest.sig`` (64 raw bytes), so
``openssl pkeyutl -verify -rawin`` checks it without this software. The chain head is kept
in the evidence store's state file, written before the manifest is published; a seal
interrupted in between is found and finished at the next start.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.clock import Timestamp
from firmware_py.evidence.canonical import canonical
from firmware_py.evidence.evidence_file import SUFFIX, EvidenceFileError, StoredFile, parse
from firmware_py.evidence.keys import DeviceIdentity
from firmware_py.evidence.store import EvidenceStore, fsync_dir

log = logging.getLogger(__name__)

FORMAT = "bodycam-manifest/1"
MANIFEST = ".manifest.json"
SIGNATURE = ".manifest.sig"
RESERVED = {"format", "kind", "device", "unit", "sequence", "prev", "signing_key",
            "agency_key", "start", "end", "files", "cut_short"}


def time_record(at: Timestamp) -> dict[str, Any]:
    """A time as sealed: integers only (canonical JSON has no floats here)."""
    # Truncated, as the local rendering is, so the two never disagree by a millisecond.
    return {"utc_ms": int(at.utc * 1000), "utc_offset_s": at.utc_offset_s,
            "monotonic_us": round(at.monotonic * 1e6), "source": str(at.source),
            "local": at.isoformat()}


def file_record(role: str, stored: StoredFile) -> dict[str, Any]:
    return {"role": role, "name": stored.path.name,
            "plaintext_sha256": stored.plaintext_sha256, "plaintext_bytes": stored.plaintext_bytes,
            "stored_sha256": stored.stored_sha256, "stored_bytes": stored.stored_bytes,
            "chunks": stored.chunks, "complete": stored.complete,
            "encrypted": stored.path.name.endswith(SUFFIX)}


def plain_file(role: str, path: Path) -> StoredFile:
    """A record kept in the clear (activity summary, work record): its hashes are one."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return StoredFile(path, digest, len(data), digest, len(data), 0, True, None)


def manifest_paths(stem: Path) -> tuple[Path, Path]:
    return stem.with_name(stem.name + MANIFEST), stem.with_name(stem.name + SIGNATURE)


def stem_of(path: Path) -> Path:
    """``X.ts.bce`` / ``X.meta.jsonl.bce`` / ``X.jpg.bce`` → ``X``; a plain file: its stem."""
    name = path.name
    for suffix in (".ts.bce", ".meta.jsonl.bce", ".jpg.bce", ".json.bce"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_name(path.name.split(".")[0])


@dataclass(frozen=True)
class Seal:
    manifest: dict[str, Any]
    manifest_path: Path
    signature_path: Path
    digest: str


class Sealer:
    def __init__(self, identity: DeviceIdentity, store: EvidenceStore) -> None:
        self.identity = identity
        self.store = store

    def seal(self, kind: str, stem: Path, files: list[tuple[str, StoredFile]],
             fields: dict[str, Any], start: Timestamp | None = None,
             end: Timestamp | None = None, cut_short: dict[str, Any] | None = None) -> Seal:
        sequence, prev = self.store.chain_head()
        clash = set(fields) & RESERVED
        if clash:
            raise ValueError(f"manifest fields {sorted(clash)} are the sealer's own")
        manifest = {
            "format": FORMAT, "kind": kind, "device": self.identity.device,
            "unit": self.identity.unit, "sequence": sequence + 1, "prev": prev,
            "signing_key": self.identity.key_id, "agency_key": self.identity.agency_key_id,
            "start": time_record(start) if start else None,
            "end": time_record(end) if end else None,
            "files": [file_record(role, stored) for role, stored in files],
            "cut_short": cut_short, **fields,
        }
        body = canonical(manifest)
        digest = hashlib.sha256(body).hexdigest()
        manifest_path, signature_path = manifest_paths(stem)
        # Both files are written aside first; advancing the chain is the commit point; then
        # they are published. A cut before the commit leaves only temporary files (the
        # evidence is sealed again at the next start); a cut after it leaves temporary files
        # whose hash is the chain head, which ``finish_interrupted`` publishes.
        staged = [_stage(manifest_path, body),
                  _stage(signature_path, self.identity.signing_key.sign(body))]
        self.store.advance_chain(sequence + 1, digest)
        for temp, final in zip(staged, (manifest_path, signature_path)):
            _publish(temp, final)
        fsync_dir(manifest_path.parent)
        return Seal(manifest, manifest_path, signature_path, digest)


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _stage(path: Path, data: bytes) -> Path:
    temp = _temp(path)
    with open(temp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(temp, 0o444)
    return temp


def _publish(temp: Path, path: Path) -> None:
    os.link(temp, path)  # fails if the name exists: a seal is never replaced
    os.unlink(temp)




def finish_interrupted(evidence: Path, head: str) -> list[Path]:
    """Publish a seal cut after its commit point; drop staged seals that never committed."""
    finished = []
    for temp in Path(evidence).rglob(f".*{MANIFEST}.tmp"):
        final = temp.with_name(temp.name[1:-len(".tmp")])
        sig_temp = _temp(final.with_name(final.name[: -len(MANIFEST)] + SIGNATURE))
        if hashlib.sha256(temp.read_bytes()).hexdigest() == head and sig_temp.exists():
            _publish(temp, final)
            _publish(sig_temp, sig_temp.with_name(sig_temp.name[1:-len(".tmp")]))
            finished.append(final)
        else:
            temp.unlink()
            if sig_temp.exists():
                sig_temp.unlink()
    return finished


# --- recovery after a power cut ----------------------------------------------------------

def unsealed(evidence: Path) -> list[Path]:
    """Stems of encrypted files that have no manifest (left open by a power cut)."""
    root = Path(evidence)
    stems = {stem_of(p) for p in root.rglob(f"*{SUFFIX}")}
    stems |= {p.with_suffix("") for p in root.rglob("activity.json")}
    stems |= {p.with_suffix("") for p in root.rglob("interruption-*.json")
              if not p.name.endswith(MANIFEST)}  # a work record's own seal is no record
    return sorted(s for s in stems if not manifest_paths(s)[0].exists())


def recover(sealer: Sealer, stem: Path, header_fields: dict[str, Any]) -> Seal:
    """Seal what a cut file holds: its complete chunks, marked as cut short.

    The device cannot decrypt what it wrote, so the plaintext hash of a cut file is
    unknown (null); the stored bytes are hashed and signed, and the agency's key checks
    every chunk's authentication when it opens the file.
    """
    files: list[tuple[str, StoredFile]] = []
    last_ms: int | None = None
    discarded = 0
    for name, role in ((f"{stem.name}.json", "record"), (f"{stem.name}.txt", "text")):
        if stem.name in ("activity",) or stem.name.startswith("interruption-"):
            path = stem.with_name(name)
            if path.exists():
                files.append((role, plain_file(role, path)))
    if files:
        kind = "activity" if stem.name == "activity" else "work_record"
        return sealer.seal(kind, stem, files, header_fields, cut_short={"recovered": True})
    for role, suffix in (("media", ".ts.bce"), ("metadata", ".meta.jsonl.bce"),
                         ("photo", ".jpg.bce"), ("metadata", ".json.bce")):
        path = stem.with_name(stem.name + suffix)
        if not path.exists():
            continue
        data = path.read_bytes()
        try:
            parsed = parse(data, path.name)
        except EvidenceFileError:
            parsed = None
        keep = parsed.end_of_chunks if parsed else 0
        if keep < len(data) or parsed is None:
            # The torn tail is an incomplete chunk (or the whole file a torn header):
            # unreadable by anyone. Keep it aside for the record, outside the sealed bytes.
            torn = path.with_name(path.name + ".torn")
            torn.write_bytes(data[keep:])
            discarded += len(data) - keep
            os.chmod(path, 0o644)
            if parsed is None:
                path.unlink()
                continue
            with open(path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(path, 0o444)
        kept = data[:keep]
        chunks = parsed.chunks
        if chunks:
            last_ms = max(last_ms or 0, chunks[-1].written_at_ms)
        files.append((role, StoredFile(path, None, None, hashlib.sha256(kept).hexdigest(),
                                       len(kept), len(chunks), False,
                                       chunks[-1].written_at_ms if chunks else None)))
    kind = "photo" if any(r == "photo" for r, _ in files) else "segment"
    return sealer.seal(kind, stem, files, header_fields,
                       cut_short={"last_good_chunk_utc_ms": last_ms, "discarded_bytes": discarded,
                                  "empty": not files})
