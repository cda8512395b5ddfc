"""Playable copies of verified evidence: one MP4 per recording, the photos as JPEG, each
with Content Credentials (``bodycam export … --format mp4``).

Everything asked for is first verified and decrypted by ``firmware_py.evidence.export``
(nothing is written if anything fails). The segments of each recording — the same
activity and the same ``recording_origin_us`` — are then joined losslessly by
``dock.exports.remux`` with chapters where the officer pressed record, marked a moment or
took a photo, and where an interruption stopped or resumed the recording; each copy is
signed (``dock.exports.credentials``) with assertions naming the sealed originals it came
from. ``export.json`` beside the copies lists, per copy, its SHA-256 and those originals.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from dock.exports.credentials import ExportKey, sign_copy
from dock.exports.remux import Chapter, remux_to_mp4
from firmware_py.evidence.export import export
from firmware_py.evidence.keys import EnrolledDevice
from firmware_py.evidence.seal import MANIFEST
from firmware_py.evidence.store import sha256_file
from firmware_py.evidence.verify import ItemReport, Report
from firmware_py.recording.segment import PTS_ORIGIN

log = logging.getLogger(__name__)

INDEX = "export.json"
PTS_ORIGIN_S = PTS_ORIGIN / 90000  # media time of a recording's first frame


@dataclass
class Recording:
    """The segments of one recording, in order, and where they were sealed."""

    device: str
    activity: str
    folder: str  # the activity's directory name
    origin_us: int | None  # None for a segment sealed by recovery (a recording of its own)
    segments: list[ItemReport] = field(default_factory=list)


@dataclass(frozen=True)
class Copy:
    """One exported file and the originals it came from."""

    path: Path
    sha256: str
    kind: str  # "recording" or "photo"
    sources: list[dict[str, Any]]


@dataclass(frozen=True)
class PlayableExport:
    report: Report
    copies: list[Copy]


def recordings(report: Report) -> list[Recording]:
    """Segments grouped by recording (device, activity, origin), each in file order."""
    groups: dict[tuple[str, str, Any], Recording] = {}
    for item in report.items:
        body = item.body or {}
        if body.get("kind") != "segment":
            continue
        origin = body.get("recording_origin_us")
        key = (str(item.device), str(item.path.parent.name),
               origin if isinstance(origin, int) else ("cut", body.get("file_number")))
        group = groups.setdefault(key, Recording(str(item.device), str(body.get("activity")),
                                                 item.path.parent.name,
                                                 origin if isinstance(origin, int) else None))
        group.segments.append(item)
    for group in groups.values():
        group.segments.sort(key=lambda i: int((i.body or {}).get("file_number") or 0))
    return sorted(groups.values(), key=lambda g: (g.device, g.folder,
                                                  int((g.segments[0].body or {})
                                                      .get("file_number") or 0)))


def _media_name(item: ItemReport, role: str) -> str | None:
    for record in (item.body or {}).get("files", []):
        if record.get("role") == role:
            return str(record["name"]).removesuffix(".bce")
    return None


def _source(item: ItemReport) -> dict[str, Any]:
    body = item.body or {}
    start, end = body.get("start") or {}, body.get("end") or {}
    return {"manifest": item.manifest, "sequence": item.sequence,
            "manifest_sha256": item.digest, "kind": body.get("kind"),
            "file_number": body.get("file_number"),
            "files": [{"name": r.get("name"), "plaintext_sha256": r.get("plaintext_sha256")}
                      for r in body.get("files", [])],
            "start_utc_ms": start.get("utc_ms"), "end_utc_ms": end.get("utc_ms"),
            "start_local": start.get("local"), "time_source": start.get("source")}


def _metadata_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_bytes().splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a cut-short sidecar's last line may be partial
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def _chapters(recording: Recording, plain: Path, report: Report) -> tuple[list[Chapter],
                                                                           dict[str, Any]]:
    """Chapters in media time, and what the metadata says of place (first fix)."""
    if recording.origin_us is None:
        return [], {}
    origin_s = recording.origin_us / 1e6

    def at(monotonic: float) -> float:
        return PTS_ORIGIN_S + monotonic - origin_s

    chapters: list[Chapter] = []
    place: dict[str, Any] = {}
    start_s, end_s = None, None
    for item in recording.segments:
        meta = _media_name(item, "metadata")
        if meta is None or not (plain / recording.folder / meta).exists():
            continue
        for entry in _metadata_lines(plain / recording.folder / meta):
            kind = entry.get("kind")
            when = entry.get("time") if isinstance(entry.get("time"), dict) else {}
            if kind == "segment":
                begun = (entry.get("start") or {}).get("monotonic")
                if isinstance(begun, (int, float)):
                    start_s = at(begun) if start_s is None else min(start_s, at(begun))
                pressed = entry.get("pressed_at")
                if isinstance(pressed, dict) and isinstance(pressed.get("monotonic"), (int, float)):
                    chapters.append(Chapter(at(pressed["monotonic"]),
                                            f"Record pressed {pressed.get('local', '')}".strip()))
            elif kind == "end":
                ended = (entry.get("end") or {}).get("monotonic")
                if isinstance(ended, (int, float)):
                    end_s = at(ended)
            elif kind == "marker" and isinstance(when.get("monotonic"), (int, float)):
                label = "Incident marker" if entry.get("incident") else "Marker"
                chapters.append(Chapter(at(when["monotonic"]), f"{label} {when.get('local', '')}"))
            elif kind == "photo" and isinstance(when.get("monotonic"), (int, float)):
                chapters.append(Chapter(at(when["monotonic"]),
                                        f"Photo {entry.get('file_number', '')} {when.get('local', '')}"))
            elif kind == "gnss" and not place and entry.get("valid") \
                    and isinstance(entry.get("lat"), (int, float)):
                # The first valid fix of the recording: where it was made.
                place = {"latitude": entry["lat"], "longitude": entry.get("lon"),
                         "altitude_m": entry.get("alt_m"), "at_local": when.get("local")}
            elif kind == "gnss_fix" and not place and "latitude" in entry:
                place = {"latitude": entry.get("latitude"), "longitude": entry.get("longitude"),
                         "at_local": when.get("local")}
    chapters.extend(_interruption_chapters(recording, report, at, start_s, end_s))
    if start_s is not None:
        chapters.insert(0, Chapter(start_s, "Start of recording"))
    # Every segment's header repeats the press: one chapter per place and title.
    unique = list({(round(c.start_s, 3), c.title): c for c in chapters}.values())
    return sorted(unique, key=lambda c: c.start_s), place


def _interruption_chapters(recording: Recording, report: Report, at: Any,
                           start_s: float | None, end_s: float | None) -> list[Chapter]:
    """An interruption that stopped this recording, or that this recording resumed from."""
    out = []
    if start_s is None or end_s is None:
        return out
    for item in report.items:
        body = item.body or {}
        if (body.get("kind") != "work_record" or item.device != recording.device
                or item.path.parent.name != recording.folder):
            continue
        record_path = item.path.with_name(f"interruption-{int(body.get('interruption') or 0):02d}.json")
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        reason = (record.get("reason") or {}).get("en") or "reason not given"
        number = record.get("interruption")
        stopped = (record.get("stopped") or {}).get("monotonic")
        resumed = (record.get("resumed") or {}).get("monotonic")
        if isinstance(stopped, (int, float)) and start_s <= at(stopped) <= end_s + 1.0:
            out.append(Chapter(min(at(stopped), end_s),
                               f"Interruption {number}: recording stopped ({reason})"))
        if isinstance(resumed, (int, float)) and start_s - 1.0 <= at(resumed) <= end_s:
            out.append(Chapter(max(at(resumed), start_s),
                               f"Resumed after interruption {number} ({reason}, "
                               f"{record.get('off_s', '?')} s off)"))
    return out


def _utc_text(ms: Any) -> str | None:
    if not isinstance(ms, int):
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _evidence(items: list[ItemReport], what: str, place: dict[str, Any]) -> dict[str, Any]:
    first = items[0].body or {}
    return {"what": what, "device": first.get("device"), "unit": first.get("unit"),
            "officer": first.get("officer"), "activity": first.get("activity"),
            "signing_key": first.get("signing_key"),
            # As text: the C2PA SDK writes a list of small integers as a CBOR byte string.
            "chain_positions": ", ".join(str(i.sequence) for i in items),
            "sealed": [_source(i) for i in items], "place": place or None,
            "edits": "none except container change"}


def export_playable(paths: list[Path], registry: dict[str, EnrolledDevice],
                    agency_key: X25519PrivateKey, out: Path, key: ExportKey) -> PlayableExport:
    """Verify ``paths``, then write one MP4 per recording and each photo as JPEG under
    ``out/<activity>/``, every one with Content Credentials, and ``out/export.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    copies: list[Copy] = []
    with tempfile.TemporaryDirectory(prefix=".plain-", dir=out) as tmp:
        plain = Path(tmp)
        report = export(paths, registry, agency_key, plain)  # refuses unless all verifies
        for recording in recordings(report):
            segments = [plain / recording.folder / name for name in
                        (_media_name(i, "media") for i in recording.segments) if name]
            if not segments:
                continue
            chapters, place = _chapters(recording, plain, report)
            folder = out / recording.folder
            folder.mkdir(exist_ok=True)
            stem = recording.segments[0].manifest[: -len(MANIFEST)]
            unsigned = plain / f"{stem}.mp4"
            first = recording.segments[0].body or {}
            title = f"{recording.device} {recording.activity} recording from file {first.get('file_number')}"
            remux_to_mp4(segments, unsigned, chapters,
                         {"title": title, "comment": "bodycam: sealed evidence, container "
                          "changed only (see the Content Credentials)"})
            target = folder / f"{stem}.mp4"
            evidence = _evidence(recording.segments, "recording", place)
            sign_copy(unsigned, target, key, target.name,
                      _utc_text((first.get("start") or {}).get("utc_ms")), evidence)
            copies.append(Copy(target, sha256_file(target), "recording", evidence["sealed"]))
        for item in report.items:
            body = item.body or {}
            photo = _media_name(item, "photo") if body.get("kind") == "photo" else None
            if photo is None:
                continue
            folder = out / item.path.parent.name
            folder.mkdir(exist_ok=True)
            target = folder / photo
            evidence = _evidence([item], "photo", {})
            sign_copy(plain / item.path.parent.name / photo, target, key, target.name,
                      _utc_text((body.get("start") or {}).get("utc_ms")), evidence)
            copies.append(Copy(target, sha256_file(target), "photo", evidence["sealed"]))
        shutil.copyfile(plain / "verification-report.json", out / "verification-report.json")
    index = {"format": "bodycam-export/1", "copies": [
        {"file": str(c.path.relative_to(out)), "sha256": c.sha256, "kind": c.kind,
         "sources": c.sources} for c in copies]}
    (out / INDEX).write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return PlayableExport(report, copies)

