"""The simulated acoustic space, and the speaker and microphone that share it.

``AcousticSpace`` is what the device's microphone would hear at any virtual time: a
low-level ambient hiss with an occasional voice-like burst (so a working microphone
never records digital silence — that is reserved for the "silent" fault), plus every
clip the speaker plays. It is addressed by absolute sample index, so any block can be
rendered in any order and contiguous blocks join without a seam.

``SimSpeaker`` and ``SimMicrophone`` implement ``device.speaker.Speaker`` and
``device.microphone.Microphone`` on top of it, driven by the virtual clock: the
microphone emits every whole block due when the scenario runner calls ``tick(now)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from device.microphone import AudioBlock, AudioConfig, AudioOutput

log = logging.getLogger(__name__)

MIC_FAULT_KINDS = ("stopped", "silent")

_HISS_RMS = 90.0  # about -51 dBFS: a quiet room through a small electret capsule
_NOISE_TABLE_S = 8  # the hiss repeats after this long, far beyond any test's notice
_BURST_SLOT_S = 6.0  # at most one voice-like burst per slot
_BURST_PROBABILITY = 0.5
_BURST_PEAK = 2500.0  # about -25 dBFS at the loudest syllable
_CLIP_KEEP_S = 60.0  # finished clips are dropped once this far behind the newest render
_DUE_EPSILON_S = 1e-6  # absorbs float error of a clock stepped in fractions of a second


@dataclass
class _Clip:
    start: int  # sample index in the space
    samples: np.ndarray  # float32 mono at the space's rate
    end: int  # exclusive; may be cut short of start + len(samples)


class AcousticSpace:
    """Ambient sound plus played clips, rendered by time at one sample rate."""

    def __init__(self, sample_rate: int, seed: int = 0) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self._seed = seed
        rng = np.random.default_rng(seed)
        self._noise = (rng.standard_normal(_NOISE_TABLE_S * sample_rate) * _HISS_RMS).astype(np.float32)
        self._bursts: dict[int, tuple[int, np.ndarray] | None] = {}
        self._clips: dict[int, _Clip] = {}
        self._next_clip_id = 0
        self._newest_render = 0

    # --- clips -----------------------------------------------------------------------

    def add_clip(self, samples: np.ndarray, sample_rate: int, start_time: float) -> int:
        """Add int16 mono PCM starting at ``start_time``; returns a handle for ``cut_clip``."""
        pcm = np.asarray(samples)
        if pcm.ndim == 2:
            pcm = pcm.mean(axis=1)  # a stereo clip reaches the microphone as one sound
        pcm = pcm.astype(np.float32)
        if sample_rate != self.sample_rate:
            pcm = _resample_linear(pcm, sample_rate, self.sample_rate)
        start = self._index(start_time)
        clip_id = self._next_clip_id
        self._next_clip_id += 1
        self._clips[clip_id] = _Clip(start=start, samples=pcm, end=start + len(pcm))
        return clip_id

    def cut_clip(self, clip_id: int, at_time: float) -> None:
        """End a clip early at ``at_time`` (a speaker stopped or replaced it)."""
        clip = self._clips.get(clip_id)
        if clip is not None:
            clip.end = max(clip.start, min(clip.end, self._index(at_time)))

    def clip_end_time(self, clip_id: int) -> float:
        clip = self._clips[clip_id]
        return clip.end / self.sample_rate

    # --- rendering -------------------------------------------------------------------

    def render(self, t0: float, n: int) -> np.ndarray:
        """``n`` int16 mono samples heard from ``t0`` on: ambient plus overlapping clips."""
        first = self._index(t0)
        return self.render_samples(first, n)

    def render_samples(self, first: int, n: int) -> np.ndarray:
        """Like ``render`` but by absolute sample index, free of float rounding."""
        mix = self._ambient(first, n)
        last = first + n
        for clip in self._clips.values():
            lo, hi = max(first, clip.start), min(last, clip.end)
            if lo < hi:
                mix[lo - first:hi - first] += clip.samples[lo - clip.start:hi - clip.start]
        self._newest_render = max(self._newest_render, last)
        self._drop_old_clips()
        return np.clip(np.rint(mix), -32768, 32767).astype(np.int16)

    def _ambient(self, first: int, n: int) -> np.ndarray:
        table = self._noise
        idx = (np.arange(first, first + n) % len(table))
        mix = table[idx].astype(np.float64)
        sr = self.sample_rate
        slot_len = _BURST_SLOT_S * sr
        for slot in range(int(first // slot_len), int((first + n) // slot_len) + 1):
            burst = self._cached_burst(slot)
            if burst is None:
                continue
            b_start, b_samples = burst
            lo, hi = max(first, b_start), min(first + n, b_start + len(b_samples))
            if lo < hi:
                mix[lo - first:hi - first] += b_samples[lo - b_start:hi - b_start]
        return mix

    def _cached_burst(self, slot: int) -> tuple[int, np.ndarray] | None:
        # A microphone renders a burst in many small blocks; synthesising it each time
        # would cost more than everything else the space does.
        if slot not in self._bursts:
            if len(self._bursts) >= 4:
                self._bursts.pop(next(iter(self._bursts)))
            self._bursts[slot] = self._burst(slot)
        return self._bursts[slot]

    def _burst(self, slot: int) -> tuple[int, np.ndarray] | None:
        """The voice-like burst of one slot, if it has one; a pure function of seed and slot.

        A harmonic tone at a speaking pitch, gated into syllables at about 4 Hz — enough to
        look like distant talk on a level meter and a spectrum, not meant to be speech.
        """
        if slot < 0:
            return None
        rng = np.random.default_rng([self._seed, slot, 0xB0D1])
        if rng.random() >= _BURST_PROBABILITY:
            return None
        sr = self.sample_rate
        duration = rng.uniform(0.4, 1.5)
        offset = rng.uniform(0.0, _BURST_SLOT_S - duration)
        pitch = rng.uniform(110.0, 230.0)
        syllable_hz = rng.uniform(3.0, 5.0)
        t = np.arange(int(duration * sr)) / sr
        nyquist = sr / 2
        tone = sum(
            np.sin(2 * np.pi * pitch * h * t) / h
            for h in range(1, 6) if pitch * h < nyquist
        )
        envelope = np.clip(np.sin(np.pi * syllable_hz * t), 0.0, None) ** 2
        fade = np.minimum(1.0, np.minimum(t, duration - t) / 0.05)
        samples = _BURST_PEAK / 1.5 * tone * envelope * fade
        start = round((slot * _BURST_SLOT_S + offset) * sr)
        return start, samples

    def _drop_old_clips(self) -> None:
        horizon = self._newest_render - int(_CLIP_KEEP_S * self.sample_rate)
        for clip_id in [c for c, clip in self._clips.items() if clip.end < horizon]:
            del self._clips[clip_id]

    def _index(self, t: float) -> int:
        return round(t * self.sample_rate)


def _resample_linear(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    # Linear interpolation is crude (it aliases) but prompts and tones survive it, and
    # the point is timing and level, not fidelity.
    n_out = max(1, round(len(pcm) * rate_out / rate_in))
    t_out = np.arange(n_out) * (rate_in / rate_out)
    return np.interp(t_out, np.arange(len(pcm)), pcm).astype(np.float32)


class SimSpeaker:
    """A ``device.speaker.Speaker`` that plays into an ``AcousticSpace``."""

    def __init__(self, space: AcousticSpace, clock: Callable[[], float]) -> None:
        self._space = space
        self._clock = clock
        self._clip: int | None = None
        self._end_time = 0.0
        self._closed = False
        self.played: list[tuple[float, float]] = []  # (start time, nominal duration) per play

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        if self._closed:
            raise RuntimeError("speaker is closed")
        now = self._clock()
        self.stop()  # a clip still playing is cut off where the new one starts
        self._clip = self._space.add_clip(samples, sample_rate, now)
        self._end_time = self._space.clip_end_time(self._clip)
        duration = len(samples) / sample_rate
        self.played.append((now, duration))
        log.debug("speaker plays %.3f s from %.3f s", duration, now)

    def stop(self) -> None:
        if self._clip is not None and self.is_playing:
            now = self._clock()
            self._space.cut_clip(self._clip, now)
            self._end_time = now
        self._clip = None

    @property
    def is_playing(self) -> bool:
        return self._clip is not None and self._clock() < self._end_time

    def close(self) -> None:
        self.stop()
        self._closed = True


class SimMicrophone:
    """A ``device.microphone.Microphone`` listening to an ``AcousticSpace`` in virtual time."""

    def __init__(self, config: AudioConfig, clock: Callable[[], float], space: AcousticSpace) -> None:
        if config.sample_rate != space.sample_rate:
            raise ValueError(
                f"microphone rate {config.sample_rate} differs from the space's {space.sample_rate}")
        block = config.sample_rate * config.block_ms / 1000
        if block != int(block) or block <= 0:
            raise ValueError(f"{config.block_ms} ms is not a whole number of samples at {config.sample_rate} Hz")
        self.config = config
        self._clock = clock
        self._space = space
        self._block = int(block)
        self._output: AudioOutput | None = None
        self._first_sample = 0
        self._next_block = 0
        self._blocks_delivered = 0
        self._fault: str | None = None
        self._closed = False

    def start(self, output: AudioOutput) -> None:
        if self._closed:
            raise RuntimeError("microphone is closed")
        if self._output is not None:
            raise RuntimeError("microphone already started")
        self._output = output
        self._first_sample = round(self._clock() * self.config.sample_rate)
        self._next_block = 0
        self._blocks_delivered = 0
        log.info("microphone started at %.3f s: %d Hz, %d ch, %d ms blocks",
                 self._first_sample / self.config.sample_rate, self.config.sample_rate,
                 self.config.channels, self.config.block_ms)

    def stop(self) -> None:
        if self._output is not None:
            log.info("microphone stopped after %d blocks", self._blocks_delivered)
        self._output = None

    @property
    def blocks_delivered(self) -> int:
        return self._blocks_delivered

    def close(self) -> None:
        self.stop()
        self._closed = True

    @property
    def running(self) -> bool:
        return self._output is not None

    def tick(self, now: float) -> int:
        """Deliver every whole block that has ended by ``now``; returns how many."""
        if self._output is None:
            return 0
        sr = self.config.sample_rate
        heard = math.floor(now * sr + _DUE_EPSILON_S * sr) - self._first_sample
        due = heard // self._block
        produced = 0
        while self._next_block < due:
            self._capture(self._next_block)
            self._next_block += 1
            produced += 1
        return produced

    def fail(self, kind: str) -> None:
        """Inject a fault: ``"stopped"`` (no blocks) or ``"silent"`` (digital zeros)."""
        if kind not in MIC_FAULT_KINDS:
            raise ValueError(f"unknown microphone fault {kind!r}; expected one of {MIC_FAULT_KINDS}")
        log.warning("microphone fault injected: %s", kind)
        self._fault = kind

    def recover(self) -> None:
        if self._fault is not None:
            log.warning("microphone recovered from fault: %s", self._fault)
        self._fault = None

    @property
    def fault(self) -> str | None:
        return self._fault

    def _capture(self, index: int) -> None:
        assert self._output is not None
        if self._fault == "stopped":
            return  # those samples are never captured; the next block shows the gap
        first = self._first_sample + index * self._block
        channels = self.config.channels
        if self._fault == "silent":
            samples = np.zeros((self._block, channels), dtype=np.int16)
        else:
            mono = self._space.render_samples(first, self._block)
            samples = np.repeat(mono[:, None], channels, axis=1)
        sr = self.config.sample_rate
        timestamp_us = first * 1_000_000 // sr
        self._output.output_audio(AudioBlock(samples=samples, sample_rate=sr, timestamp_us=timestamp_us))
        self._blocks_delivered += 1
