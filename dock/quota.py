"""Quotas: what one device may make the dock hold, and the disk space the dock keeps free.

A file is announced (``init``) with its size before any byte of it comes; the dock decides
there whether to take it. It refuses a new file when

* its declared size is more than a recorder's storage holds (``max_file_bytes``): no real
  evidence file is that large, and the chunks of a fake one would fill the archive;
* the device has ``device_open_files`` incoming files open already (abandoned ones count,
  until they expire), or the bytes still to come for them, with this file's, would pass
  ``device_bytes_in_flight``;
* the archive's file system would keep less than ``reserve_bytes`` free once the file is
  whole: evidence already on its way must still find room, and the index must still grow.

A refused file stays on the device (no receipt, nothing deleted) and is offered again at the
next docking. A file already begun is never refused: resuming costs nothing new.

Incoming files that made no progress for ``partial_expiry_s`` are abandoned: their partial
bytes and index rows are removed (``Archive.expire_partial``) and the removal logged.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GIB = 1 << 30


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class Quota:
    max_file_bytes: int = 256 * GIB  # more than any recorder's storage
    device_open_files: int = 512  # a docking's window of small files fits many times over
    device_bytes_in_flight: int = 256 * GIB
    reserve_bytes: int = 1 * GIB
    partial_expiry_s: float = 7 * 24 * 3600.0
    free: Callable[[Path], int] = field(default=free_bytes, compare=False)


def refusal(quota: Quota, root: Path, open_files: list[tuple[int, int]], size: int) -> str | None:
    """Why a new file of ``size`` bytes is refused, or None to take it. ``open_files`` are
    the device's incoming files (declared size, bytes stored) and ``root`` the archive."""
    if size > quota.max_file_bytes:
        return (f"declares {size} bytes, more than a recorder holds "
                f"({quota.max_file_bytes} bytes at this dock)")
    if len(open_files) >= quota.device_open_files:
        return (f"{len(open_files)} incoming files of this device are open already "
                f"(at most {quota.device_open_files}); finish or wait for them to expire")
    coming = sum(max(total - stored, 0) for total, stored in open_files) + size
    if coming > quota.device_bytes_in_flight:
        return (f"{coming} bytes would be on their way from this device, over its "
                f"{quota.device_bytes_in_flight}")
    free = quota.free(root)
    if free - size < quota.reserve_bytes:
        return (f"the dock keeps {quota.reserve_bytes} bytes free and has {free}: no new "
                "files until a custodian makes room (the device keeps its own)")
    return None
