"""Microphone protocol: PCM blocks handed to an output, as sounddevice's InputStream does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000
    channels: int = 1
    block_ms: int = 20


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """``samples`` is int16 with shape (frames, channels); the time is of the first frame."""

    samples: np.ndarray
    sample_rate: int
    timestamp_us: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def rms_dbfs(samples: np.ndarray) -> float:
    """Level of int16 PCM relative to full scale; -inf for digital silence."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    if rms == 0.0:
        return float("-inf")
    return 20.0 * float(np.log10(rms / 32768.0))


class AudioOutput(Protocol):
    def output_audio(self, block: AudioBlock) -> None: ...


@runtime_checkable
class Microphone(Protocol):
    config: AudioConfig

    def start(self, output: AudioOutput) -> None: ...

    def stop(self) -> None: ...

    @property
    def blocks_delivered(self) -> int: ...

    def close(self) -> None: ...
