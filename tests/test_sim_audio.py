"""The simulated acoustic space: ambient sound, speaker clips heard by the microphone, faults."""

from __future__ import annotations

import numpy as np
import pytest

from device.microphone import AudioBlock, AudioConfig, Microphone, rms_dbfs
from device.speaker import Speaker
from simulator.audio import AcousticSpace, SimMicrophone, SimSpeaker
from simulator.clock import VirtualClock

RATE = 16_000
CONFIG = AudioConfig(sample_rate=RATE, channels=1, block_ms=20)
BLOCK = 320


class Collect:
    def __init__(self) -> None:
        self.blocks: list[AudioBlock] = []

    def output_audio(self, block: AudioBlock) -> None:
        self.blocks.append(block)


def tone(freq: float, seconds: float, rate: int = RATE, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def level_at(block: AudioBlock, freq: float) -> float:
    """Magnitude of the spectrum at ``freq`` (a whole bin for 20 ms blocks at 50 Hz spacing)."""
    mono = block.samples[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mono))
    return float(spectrum[round(freq * len(mono) / block.sample_rate)])


def rig(start: float = 0.0, seed: int = 0, config: AudioConfig = CONFIG):
    clock = VirtualClock(start)
    space = AcousticSpace(config.sample_rate, seed=seed)
    return clock, space, SimSpeaker(space, clock), SimMicrophone(config, clock, space)


def run_until(clock: VirtualClock, mic: SimMicrophone, t: float, step: float = 0.05) -> None:
    while clock.now < t:
        clock.advance_to(min(clock.now + step, t))
        mic.tick(clock.now)


def in_window(blocks: list[AudioBlock], t0: float, t1: float) -> list[AudioBlock]:
    """Blocks lying wholly inside [t0, t1)."""
    return [b for b in blocks
            if b.timestamp_us >= t0 * 1e6 and b.timestamp_us + b.duration_s * 1e6 <= t1 * 1e6]


def test_implements_protocols() -> None:
    _, _, speaker, mic = rig()
    assert isinstance(speaker, Speaker)
    assert isinstance(mic, Microphone)


def test_blocks_are_contiguous_and_never_digital_silence() -> None:
    clock, _, _, mic = rig(start=5.0)
    out = Collect()
    mic.start(out)
    run_until(clock, mic, 35.0, step=0.033)  # a pace that does not divide the block
    assert len(out.blocks) == mic.blocks_delivered == 1500
    stamps = [b.timestamp_us for b in out.blocks]
    assert stamps[0] == 5_000_000
    assert set(np.diff(stamps).tolist()) == {20_000}
    for b in out.blocks:
        assert b.samples.dtype == np.int16 and b.samples.shape == (BLOCK, 1)
        assert b.sample_rate == RATE
    levels = [rms_dbfs(b.samples) for b in out.blocks]
    assert min(levels) > -70
    assert max(levels) > min(levels) + 15  # a voice-like burst rises above the hiss


def test_space_is_deterministic_and_seamless() -> None:
    a, b = AcousticSpace(RATE, seed=1), AcousticSpace(RATE, seed=1)
    whole = a.render(2.0, 2 * BLOCK)
    halves = np.concatenate([b.render(2.0, BLOCK), b.render(2.0 + BLOCK / RATE, BLOCK)])
    assert np.array_equal(whole, halves)
    assert not np.array_equal(whole, AcousticSpace(RATE, seed=2).render(2.0, 2 * BLOCK))


def test_stereo_blocks_carry_the_same_signal_on_both_channels() -> None:
    config = AudioConfig(sample_rate=48_000, channels=2, block_ms=10)
    clock, _, _, mic = rig(config=config)
    out = Collect()
    mic.start(out)
    run_until(clock, mic, 0.1)
    assert len(out.blocks) == 10
    assert out.blocks[0].samples.shape == (480, 2)
    assert np.array_equal(out.blocks[3].samples[:, 0], out.blocks[3].samples[:, 1])


def test_played_tone_is_heard_during_playback_only() -> None:
    clock, _, speaker, mic = rig()
    out = Collect()
    mic.start(out)
    run_until(clock, mic, 1.0)
    speaker.play(tone(1000, 0.5), RATE)
    assert speaker.is_playing
    assert speaker.played == [(1.0, 0.5)]
    run_until(clock, mic, 1.49)
    assert speaker.is_playing
    run_until(clock, mic, 1.5)
    assert not speaker.is_playing
    run_until(clock, mic, 2.5)

    before = max(level_at(b, 1000) for b in in_window(out.blocks, 0.0, 1.0))
    during = [level_at(b, 1000) for b in in_window(out.blocks, 1.0, 1.5)]
    after = max(level_at(b, 1000) for b in in_window(out.blocks, 1.5, 2.5))
    assert len(during) == 25
    assert min(during) > 50 * before
    assert min(during) > 50 * after


def test_clip_at_another_rate_is_resampled() -> None:
    clock, _, speaker, mic = rig()
    out = Collect()
    mic.start(out)
    speaker.play(tone(1000, 0.3, rate=48_000), 48_000)
    run_until(clock, mic, 0.29)
    assert speaker.is_playing
    run_until(clock, mic, 0.6)
    assert not speaker.is_playing
    during = [level_at(b, 1000) for b in in_window(out.blocks, 0.0, 0.3)]
    after = [level_at(b, 1000) for b in in_window(out.blocks, 0.3, 0.6)]
    assert min(during) > 50 * max(after)


def test_new_clip_cuts_the_one_playing_and_stop_ends_it() -> None:
    clock, _, speaker, mic = rig()
    out = Collect()
    mic.start(out)
    speaker.play(tone(1000, 2.0), RATE)
    run_until(clock, mic, 0.4)
    speaker.play(tone(500, 1.0), RATE)  # replaces the 1 kHz clip at 0.4 s
    run_until(clock, mic, 0.8)
    assert speaker.is_playing
    speaker.stop()
    assert not speaker.is_playing
    run_until(clock, mic, 1.2)
    assert speaker.played == [(0.0, 2.0), (0.4, 1.0)]

    def peak(freq: float, t0: float, t1: float) -> float:
        return max(level_at(b, freq) for b in in_window(out.blocks, t0, t1))

    floor_1k = peak(1000, 0.8, 1.2)
    assert peak(1000, 0.0, 0.4) > 50 * floor_1k
    assert peak(1000, 0.4, 0.8) < 2 * floor_1k  # cut off, not mixed on
    assert peak(500, 0.4, 0.8) > 50 * peak(500, 0.8, 1.2)  # stop silenced the second


def test_silent_fault_gives_digital_zeros_then_recovers() -> None:
    clock, _, _, mic = rig()
    out = Collect()
    mic.start(out)
    run_until(clock, mic, 0.2)
    mic.fail("silent")
    run_until(clock, mic, 0.4)
    mic.recover()
    run_until(clock, mic, 0.6)
    levels = [rms_dbfs(b.samples) for b in out.blocks]
    assert len(levels) == 30
    assert all(lv > -70 for lv in levels[:10] + levels[20:])
    assert all(lv == float("-inf") for lv in levels[10:20])


def test_stopped_fault_delivers_no_blocks_and_leaves_a_gap() -> None:
    clock, _, _, mic = rig()
    out = Collect()
    mic.start(out)
    run_until(clock, mic, 0.2)
    mic.fail("stopped")
    run_until(clock, mic, 0.6)
    assert mic.blocks_delivered == 10
    mic.recover()
    run_until(clock, mic, 0.8)
    assert mic.blocks_delivered == 20
    assert out.blocks[10].timestamp_us == 600_000


def test_unknown_fault_is_refused() -> None:
    _, _, _, mic = rig()
    with pytest.raises(ValueError):
        mic.fail("melted")
