"""Storage backend: free space of the filesystem holding the evidence directory (statvfs)."""

from __future__ import annotations

import os
from pathlib import Path

from device.hardware import HardwareError
from device.storage import StorageReading


class StatvfsStorage:
    """Total and free bytes of the filesystem under ``path``; creates nothing.

    Free space is ``f_bavail`` (what this unprivileged process may still write), not
    ``f_bfree``: the blocks reserved for root are not ours to fill.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def read(self) -> StorageReading:
        try:
            st = os.statvfs(self._path)
        except FileNotFoundError as exc:
            raise HardwareError(f"storage path {self._path} does not exist") from exc
        except OSError as exc:
            raise HardwareError(f"storage path {self._path} cannot be read: {exc}") from exc
        return StorageReading(path=str(self._path),
                              total_bytes=st.f_blocks * st.f_frsize,
                              free_bytes=st.f_bavail * st.f_frsize)
