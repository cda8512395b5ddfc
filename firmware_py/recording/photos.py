"""Photos (R11.1): a full-resolution still stored beside the segments, encrypted as it is
written, with metadata like theirs, sealed into the chain.

The pipeline (``Recorder.save_photo``) hands the still here and notes the photo in the
metadata of the segment being written, if any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from device.camera import StillImage
from device.clock import Clock, Timestamp
from device.gnss import GnssFix
from firmware_py.evidence.evidence_file import EncryptingFile
from firmware_py.evidence.seal import Sealer
from firmware_py.evidence.store import ActivityDir, EvidenceStore
from firmware_py.recording.metadata import fix_record, time_at


@dataclass(frozen=True)
class SavedPhoto:
    file: str
    file_number: int
    at: Timestamp
    facts: dict[str, Any]  # for the audit log and the activity record


class PhotoWriter:
    """Stores, describes and seals stills. ``evidence_file(path, role)`` opens a new
    encrypted evidence file; ``identity(activity, file_number)`` and
    ``sealed_fields(activity, file_number)`` give the fields a segment's metadata and seal
    carry too."""

    def __init__(self, clock: Clock, store: EvidenceStore, sealer: Sealer,
                 evidence_file: Callable[[Path, str], EncryptingFile],
                 time_quality: Callable[[], dict[str, Any]]) -> None:
        self._clock = clock
        self._store = store
        self._sealer = sealer
        self._evidence_file = evidence_file
        self._time_quality = time_quality

    def save(self, still: StillImage, activity: ActivityDir, fix: GnssFix | None,
             identity: Callable[[ActivityDir, int], dict[str, Any]],
             sealed_fields: Callable[[ActivityDir, int], dict[str, Any]]) -> SavedPhoto:
        at = time_at(self._clock, still.timestamp_us / 1e6)
        sequence = self._store.next_sequence()
        path = self._store.evidence_path(activity, sequence, at.utc, ".jpg.bce")
        media = self._evidence_file(path, "photo")
        media.write(still.jpeg)
        stored_photo = media.close()
        meta = {"kind": "photo", "format": 1, **identity(activity, sequence),
                "file": path.name, "time": at.to_json(), "time_quality": self._time_quality(),
                "width": still.width, "height": still.height, "bytes": len(still.jpeg),
                "gnss": fix_record(fix, time_at(self._clock, fix.received_at)) if fix else None}
        meta_file = self._evidence_file(path.with_name(path.name.replace(".jpg.bce", ".json.bce")),
                                        "metadata")
        meta_file.write(json.dumps(meta, ensure_ascii=False, indent=1).encode())
        stored_meta = meta_file.close()
        seal = self._sealer.seal("photo", path.with_name(path.name[:-len(".jpg.bce")]),
                                 [("photo", stored_photo), ("metadata", stored_meta)],
                                 sealed_fields(activity, sequence), start=at, end=at)
        return SavedPhoto(path.name, sequence, at,
                          {"file": path.name, "file_number": sequence, "bytes": len(still.jpeg),
                           "width": still.width, "height": still.height,
                           "manifest": seal.manifest_path.name,
                           "chain": seal.manifest["sequence"]})
