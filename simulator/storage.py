"""Simulated storage: a byte quota over a real directory, with a "card filling up" fault.

Free space is the quota less the bytes of the files under the directory less a ballast
that faults add. The directory is rescanned on every read: reads come every few seconds,
and a cached size would hide what the recorder just wrote or deleted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from device.hardware import HardwareError
from device.storage import StorageReading

log = logging.getLogger(__name__)


class QuotaStorage:
    """A storage of ``quota_bytes`` holding the files under ``path``; creates nothing."""

    def __init__(self, path: Path, quota_bytes: int) -> None:
        if quota_bytes <= 0:
            raise ValueError(f"quota must be positive, got {quota_bytes}")
        self._path = Path(path)
        self._quota = int(quota_bytes)
        self._ballast = 0

    @property
    def path(self) -> Path:
        return self._path

    @property
    def total_bytes(self) -> int:
        return self._quota

    @property
    def ballast_bytes(self) -> int:
        return self._ballast

    def used_bytes(self) -> int:
        """Bytes of the regular files under ``path`` (apparent size, symlinks not followed)."""
        if not self._path.is_dir():
            raise HardwareError(f"storage path {self._path} does not exist")
        return _tree_size(self._path)

    def read(self) -> StorageReading:
        free = self._quota - self.used_bytes() - self._ballast
        return StorageReading(path=str(self._path), total_bytes=self._quota,
                              free_bytes=max(0, free))

    def fill(self, nbytes: int) -> None:
        """Fault: something else takes ``nbytes`` of the card."""
        if nbytes < 0:
            raise ValueError(f"cannot fill a negative amount ({nbytes} bytes)")
        self._ballast += nbytes
        log.info("simulated storage: %d bytes of ballast", self._ballast)

    def fill_to(self, free_bytes: int) -> None:
        """Fault: set the ballast so that exactly ``free_bytes`` are free now."""
        if free_bytes < 0:
            raise ValueError(f"free bytes cannot be negative ({free_bytes})")
        self._ballast = max(0, self._quota - self.used_bytes() - free_bytes)
        log.info("simulated storage: %d bytes of ballast", self._ballast)

    def clear_fill(self) -> None:
        self._ballast = 0


def _tree_size(path: Path) -> int:
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass  # deleted while we looked: it no longer takes space
        except FileNotFoundError:
            pass
    return total
