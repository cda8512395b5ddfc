"""Conflicts: uploads that would have replaced evidence already in the archive, kept aside.

The archive is write-once: once ``<device>/<activity>/<name>`` holds a receipted file,
nothing replaces it. A later upload under the same name with other bytes, or a manifest
whose place in the device's chain (its sequence number) is already taken by another
manifest, is refused to the device and kept here for a custodian — never over the
original — as two files in ``<archive>/<device>/.conflicts/``:

* ``<file_id>.bytes``: what was sent, as it arrived;
* ``<file_id>.conflict.json``: what it claimed to be, what it collided with, why, when.

The folder's leading dot keeps it apart from every activity (no activity or file name the
protocol carries starts with a dot), and ``bodycam verify`` over the archive lists these
records (``firmware_py.evidence.verify.find_conflicts``), so a conflict cannot go unseen.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from firmware_py.evidence.store import fsync_dir
from firmware_py.evidence.verify import CONFLICTS, CONFLICT_RECORD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conflict:
    """One upload refused because it collided with archived evidence."""

    device: str
    file_id: str
    name: str
    activity: str
    size: int
    sha256: str
    reason: str  # what it collided with, in words
    kept_with: str  # the archived file it did not replace (relative to the archive)
    received_at: float
    bytes_path: str = ""  # where its bytes are kept (relative to the archive)


def keep_aside(root: Path, part: Path, conflict: Conflict) -> Conflict:
    """Move the received bytes ``part`` into the device's conflicts folder and write the
    record beside them; returns the record as written. Durable before it returns."""
    folder = Path(root) / conflict.device / CONFLICTS
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{conflict.file_id}.bytes"
    os.replace(part, target)  # the file id is the content's: a name only these bytes take
    record = Conflict(**{**asdict(conflict), "bytes_path": str(target.relative_to(root))})
    tmp = folder / f".{conflict.file_id}.tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(asdict(record), indent=1, ensure_ascii=False))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / f"{conflict.file_id}{CONFLICT_RECORD}")
    fsync_dir(folder)
    log.warning("conflict kept aside: %s sent %s/%s (%d bytes) over %s: %s", conflict.device,
                conflict.activity, conflict.name, conflict.size, conflict.kept_with,
                conflict.reason)
    return record


def conflicts(root: Path, device: str | None = None) -> list[Conflict]:
    """Every conflict kept in the archive at ``root`` (of one device, or of all)."""
    pattern = f"{device or '*'}/{CONFLICTS}/*{CONFLICT_RECORD}"
    found = []
    for path in sorted(Path(root).glob(pattern)):
        try:
            found.append(Conflict(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            log.error("unreadable conflict record %s", path)
    return found
