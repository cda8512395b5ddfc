"""The dock's access log (R14.2): who read, exported or copied which evidence, and when.

One JSON object per line in ``<archive>/access.jsonl``, appended and fsynced; each line
holds the SHA-256 of the line before it (``prev``, the first: 64 zeros), so a line removed
or edited breaks the chain from there on, as the device's audit log does.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from firmware_py.evidence.canonical import GENESIS

ACCESS_LOG = "access.jsonl"


def record(archive: Path, who: str, action: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Append one entry: ``who`` did ``action`` (``export``, ``archive_copy``, …)."""
    path = Path(archive) / ACCESS_LOG
    prev = GENESIS
    if path.exists():
        lines = path.read_bytes().splitlines()
        if lines:
            prev = hashlib.sha256(lines[-1]).hexdigest()
    entry = {"at_utc_ms": int(time.time() * 1000), "who": who, "action": action,
             "prev": prev, **fields}
    line = json.dumps(entry, sort_keys=True, ensure_ascii=False).encode() + b"\n"
    with open(path, "ab") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return entry


def read(archive: Path) -> list[dict[str, Any]]:
    path = Path(archive) / ACCESS_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
