"""Storage protocol: free space where evidence is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class StorageReading:
    path: str
    total_bytes: int
    free_bytes: int  # available to this process (statvfs f_bavail)

    @property
    def used_fraction(self) -> float:
        return 1.0 - self.free_bytes / self.total_bytes if self.total_bytes else 1.0


@runtime_checkable
class Storage(Protocol):
    @property
    def path(self) -> Path: ...

    def read(self) -> StorageReading: ...
