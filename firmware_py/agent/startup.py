"""What the agent finds when it starts: an activity left open, and a power cut (Art. 12).

**An open activity goes on.** Only the officer ends an activity (R8.3), so one whose
``activity.jsonl`` has no ``activity_ended`` line (and no ``activity.json`` summary) is
still open when the device starts — after a shutdown in order or after losing its power —
and the agent carries on with it: its record is read back
(``firmware_py.fieldwork.activity.find_open_activity``) with its recordings, photos,
markers, interruptions and the one still open, if any.

**A power cut.** A run that ends in order writes ``shutdown`` into the audit log. When the
previous run's last entry is anything else, its power went: a pulled or flat battery, a
crash. The restarted agent logs the cut; when a recording was running in an open
activity, that is an automatic interruption with reason (1), device fault, from the
last sign of life to the restart.

**The last sign of life** is the latest time any file shows the device alive: the last
good chunk of a segment the cut left open (flushed every half second while recording),
the last line of the audit log, the last line of the activity's log. The footage ends
there; what came after it (at most the unflushed half second) went with the power.
Times are wall time (UTC): the monotonic clock starts again at a real boot.

**Also kept for the next start**: the heartbeat (``Heartbeat``), the last clock correction
(``ClockMemory``); and what a cut left unsealed is sealed (``recover_seals``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from device.clock import Clock, Timestamp
from firmware_py.evidence.seal import MANIFEST, Sealer, finish_interrupted, recover, unsealed
from firmware_py.evidence.store import EvidenceStore, write_atomic
from firmware_py.fieldwork.activity import ActivityLogContents

log = logging.getLogger(__name__)

# --- the power cut ---------------------------------------------------------------------

@dataclass(frozen=True)
class PowerCut:
    """The previous run lost its power: when it was last alive, and when it came back."""

    last_alive_utc: float
    last_alive_from: str  # "segment", "audit_log" or "activity_log"
    back: Timestamp
    recording: bool  # a recording was running in the open activity
    activity: str | None

    @property
    def off_s(self) -> float:
        return max(0.0, self.back.utc - self.last_alive_utc)

    @property
    def lost_at(self) -> float:
        """The last sign of life on this run's monotonic clock (before its boot on a device
        whose monotonic clock starts at zero: then negative)."""
        return self.back.monotonic - self.off_s

    def to_json(self) -> dict[str, Any]:
        last = Timestamp(self.last_alive_utc, self.back.utc_offset_s, self.lost_at,
                         self.back.source)
        return {"last_alive": last.isoformat(), "last_alive_utc": round(self.last_alive_utc, 3),
                "last_alive_from": self.last_alive_from, "back": self.back.isoformat(),
                "off_s": round(self.off_s, 3), "recording": self.recording,
                "activity": self.activity}


def power_cut(previous_end: dict[str, Any] | None, activity: ActivityLogContents | None,
              now: Timestamp, heartbeat_utc: float | None = None) -> PowerCut | None:
    """The power cut that ended the previous run, or None when it shut down in order
    (``previous_end``: its last audit entry other than a checkpoint; None on a first boot).
    ``heartbeat_utc`` is the last beat the previous run wrote (``Heartbeat``): while idle it
    is the latest sign of life there is."""
    if previous_end is None or previous_end.get("kind") == "shutdown":
        return None
    signs = [(float(previous_end["time"]["utc"]), "audit_log")]
    if heartbeat_utc is not None:
        signs.append((heartbeat_utc, "heartbeat"))
    if activity is not None:
        if activity.last_time is not None:
            signs.append((float(activity.last_time["utc"]), "activity_log"))
        chunk = last_good_chunk_utc(activity.activity.path)
        if chunk is not None:
            signs.append((chunk, "segment"))
    utc, source = max(signs)
    return PowerCut(utc, source, now, bool(activity and activity.recording),
                    activity.activity.id if activity else None)


def _manifests(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(Path(directory).glob(f"*{MANIFEST}")):
        try:
            found.append(json.loads(path.read_bytes()))
        except (OSError, json.JSONDecodeError):
            continue
    return found


def last_good_chunk_utc(directory: Path) -> float | None:
    """The newest last-good-chunk time of the cut-short segments sealed in ``directory``."""
    times = [m["cut_short"]["last_good_chunk_utc_ms"] / 1000 for m in _manifests(directory)
             if isinstance(m.get("cut_short"), dict)
             and m["cut_short"].get("last_good_chunk_utc_ms") is not None]
    return max(times, default=None)


def cut_recording_files(activity: ActivityLogContents) -> list[str]:
    """The segment files of the recording the power cut ended: sealed in the activity's
    directory and named by no recording its log closed."""
    listed = {name for r in activity.recordings for name in r.get("files", [])}
    files = []
    for manifest in _manifests(activity.activity.path):
        if manifest.get("kind") != "segment":
            continue
        for f in manifest.get("files", []):
            if f.get("role") == "media" and f["name"] not in listed:
                files.append((manifest["sequence"], f["name"]))
    return [name for _, name in sorted(files)]


HEARTBEAT_PERIOD_S = 10.0  # how precisely a power cut while idle is placed
HEARTBEAT_WIDTH = 20  # bytes, rewritten in place: no rename, no new block


def write_heartbeat(path: Path, utc: float) -> None:
    """Overwrite the beat in place and fsync it: one small block a beat, so a power cut
    while idle is known to within one period, not from the last audit entry."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, f"{utc:<{HEARTBEAT_WIDTH}.3f}".encode()[:HEARTBEAT_WIDTH], 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_heartbeat(path: Path) -> float | None:
    try:
        value = float(Path(path).read_bytes()[:HEARTBEAT_WIDTH])
    except (OSError, ValueError):
        return None
    return value if math.isfinite(value) else None


class Heartbeat:
    """The device's latest sign of life (``paths.HEARTBEAT``), beaten every period."""

    def __init__(self, path: Path, period_s: float = HEARTBEAT_PERIOD_S) -> None:
        self.path = Path(path)
        self.period_s = period_s
        self._next = 0.0  # monotonic time of the next beat

    def last(self) -> float | None:
        """The UTC of the last beat the previous run wrote, if any."""
        return read_heartbeat(self.path)

    def beat(self, monotonic: float, utc: Callable[[], float]) -> None:
        """Beat when one is due (``utc`` gives the wall time to write)."""
        if monotonic >= self._next:
            self._next = monotonic + self.period_s
            write_heartbeat(self.path, utc())


# --- the clock correction --------------------------------------------------------------

class ClockMemory:
    """The last clock correction (GNSS or dock), kept across restarts in
    ``paths.CLOCK_STATE``: a power cut loses it, and without it every time the next run
    writes before its next fix — the stop of the interruption the cut caused among them —
    would carry the raw clock's error."""

    def __init__(self, clock: Clock, path: Path) -> None:
        self._clock = clock
        self.path = Path(path)
        self._saved = 0.0  # the correction last written

    def resume(self) -> dict[str, Any] | None:
        """Apply the saved correction; the facts to log, or None when there was none."""
        try:
            saved = json.loads(self.path.read_text())
            correction = float(saved["correction_s"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", self.path.name, exc)
            return None
        if not math.isfinite(correction):
            return None
        self._clock.resume_correction(correction)
        self._saved = correction
        return {"correction_s": round(correction, 3), "found_by": saved.get("source"),
                "found_at": saved.get("at")}

    def save(self) -> None:
        """Write the clock's correction when it changed since the last write."""
        correction = self._clock.correction_s
        if correction == self._saved:
            return
        now = self._clock.now()
        write_atomic(self.path, json.dumps({"correction_s": correction, "source": str(now.source),
                                            "at": now.isoformat()}).encode())
        self._saved = correction


class TrustedTimeMemory:
    """The last trusted time the device saw, kept across boots in ``paths.TRUSTED_TIME``:
    no GNSS time before it is used for the clock (``device.timetrust.TimeTrust``). Written
    at most every ``period_s`` while the clock's time comes from a trusted source."""

    def __init__(self, path: Path, period_s: float = 60.0) -> None:
        self.path = Path(path)
        self.period_s = period_s
        self._written_at: float | None = None  # monotonic

    def load(self) -> float | None:
        try:
            utc = float(json.loads(self.path.read_text())["utc"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", self.path.name, exc)
            return None
        return utc if math.isfinite(utc) else None

    def save(self, utc: float, monotonic: float, source: str, force: bool = False) -> bool:
        """Keep ``utc`` as the last trusted time (rate-limited unless ``force``)."""
        if not force and self._written_at is not None \
                and monotonic - self._written_at < self.period_s:
            return False
        try:
            write_atomic(self.path, json.dumps({"utc": utc, "source": source}).encode())
        except OSError as exc:
            log.warning("could not keep the trusted time in %s: %s", self.path, exc)
            return False
        self._written_at = monotonic
        return True


# --- seals a power cut left open -------------------------------------------------------

def recover_seals(store: EvidenceStore, sealer: Sealer,
                  officer: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Seal what a power cut left open, so the chain runs on past it (R18.1): yields the
    audit entries (kind, facts) to log, one per manifest finished or segment recovered."""
    for path in finish_interrupted(store.root, store.chain_head()[1]):
        yield "seal_finished", {"manifest": path.name}
    for stem in unsealed(store.root):
        parts = stem.name.split("_")
        number = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
        seal = recover(sealer, stem, {"activity": stem.parent.name, "officer": officer,
                                      "file_number": number})
        yield "segment_recovered", {"manifest": seal.manifest_path.name,
                                    "chain": seal.manifest["sequence"],
                                    **(seal.manifest["cut_short"] or {})}
