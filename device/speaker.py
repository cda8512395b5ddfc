"""Speaker protocol: play a PCM clip (announcements, prompts, tones)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Speaker(Protocol):
    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        """Start playing int16 mono PCM; a clip already playing is replaced."""

    def stop(self) -> None: ...

    @property
    def is_playing(self) -> bool: ...

    def close(self) -> None: ...
