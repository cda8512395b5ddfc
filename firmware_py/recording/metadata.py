"""Per-segment metadata (R10.2): a JSON-lines sidecar flushed together with the media.

The first line describes the segment (device, officer, activity, sequence, start time and
time source, codec parameters); then one line per GNSS fix (at the receiver's rate,
≥ 1 Hz), marker, photo or clock event, in time order; the last line closes it (end time,
frame count, bytes). The pipeline flushes the sidecar each time it flushes the media, so
after a power cut the two agree up to the last flush: a sidecar without its end line marks
a segment cut short.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from device.clock import Clock, Timestamp
from device.gnss import GnssFix
from firmware_py.evidence.evidence_file import StoredFile

FORMAT_VERSION = 1


def encode_line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"


def time_at(clock: Clock, monotonic: float) -> Timestamp:
    """The corrected wall time at an earlier monotonic instant (a frame's capture time)."""
    now = clock.now()
    return Timestamp(now.utc - (now.monotonic - monotonic), now.utc_offset_s, monotonic, now.source)


def fix_record(fix: GnssFix, at: Timestamp) -> dict[str, Any]:
    return {
        "kind": "gnss", "time": at.to_json(),
        "gnss_time": fix.time_utc.isoformat() if fix.time_utc else None,
        "valid": fix.valid, "lat": fix.latitude, "lon": fix.longitude, "alt_m": fix.altitude_m,
        "speed_mps": fix.speed_mps, "course_deg": fix.course_deg, "quality": fix.quality,
        "satellites": fix.satellites, "hdop": fix.hdop, "pdop": fix.pdop, "mode": fix.mode,
    }


class MetadataLog:
    """Writes the sidecar into ``file`` (an encrypting evidence file)."""

    def __init__(self, file: Any, header: dict[str, Any]) -> None:
        self.path = file.path
        self._file = file
        self._file.write(encode_line({"kind": "segment", "format": FORMAT_VERSION, **header}))
        self.records = 0

    def record(self, record: dict[str, Any]) -> None:
        self._file.write(encode_line(record))
        self.records += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self, footer: dict[str, Any]) -> StoredFile:
        self._file.write(encode_line({"kind": "end", **footer}))
        return self._file.close()


def read(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a (decrypted) sidecar; a torn last line is left out."""
    return parse_lines(Path(path).read_bytes())


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    records = []
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        records.append(json.loads(line))
    return records
