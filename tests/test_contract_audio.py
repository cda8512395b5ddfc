"""Contract of the microphone and speaker protocols (``device.microphone``,
``device.speaker``), the same assertions against every backend that runs here: the
simulator's (virtual time, its acoustic space) and the Pi's on sounddevice/PortAudio (real
time, PulseAudio's room from ``tests/pulse.py``). What the agent relies on holds for both,
so the simulator stays true to the hardware.

Each backend comes with a ``Bench``: how its time passes (the simulator's clock is advanced
and its microphone ticked; the real one is waited for) and where the speaker's sound goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from device.microphone import AudioBlock, AudioConfig, Microphone, rms_dbfs
from device.speaker import Speaker
from simulator.audio import AcousticSpace, SimMicrophone, SimSpeaker
from simulator.clock import VirtualClock
from tests.pulse import RATE, find_clip, start_room, use_room

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime

CONFIG = AudioConfig(sample_rate=RATE, channels=1, block_ms=20)


@dataclass
class Bench:
    microphone: Microphone
    speaker: Speaker
    monotonic: Callable[[], float]
    pass_time: Callable[[float], None]  # let this many seconds go by


class Heard:
    def __init__(self) -> None:
        self.blocks: list[AudioBlock] = []

    def output_audio(self, block: AudioBlock) -> None:
        self.blocks.append(block)

    def audio(self) -> np.ndarray:
        return np.concatenate([b.samples[:, 0] for b in self.blocks])


def sim_bench() -> Bench:
    clock = VirtualClock(1000.0)
    space = AcousticSpace(RATE, seed=3)
    mic = SimMicrophone(CONFIG, clock, space)

    def pass_time(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end - 1e-9:
            clock.advance(min(0.01, end - clock.now))
            mic.tick(clock.now)

    return Bench(mic, SimSpeaker(space, clock), clock, pass_time)


@pytest.fixture(scope="module")
def pulse_room():
    room = start_room()
    try:
        yield room
    finally:
        room.stop()


def sounddevice_bench(room, monkeypatch) -> Bench:
    from device.backends.sounddevice_audio import SoundDeviceMicrophone, SoundDeviceSpeaker
    use_room(room, monkeypatch)
    return Bench(SoundDeviceMicrophone(CONFIG, time.monotonic, device="pulse", latency=0.1),
                 SoundDeviceSpeaker(device="pulse", latency=0.5), time.monotonic, time.sleep)


@pytest.fixture(params=["sim", "sounddevice"])
def bench(request, monkeypatch):
    if request.param == "sim":
        made = sim_bench()
    else:
        made = sounddevice_bench(request.getfixturevalue("pulse_room"), monkeypatch)
    yield made
    made.microphone.close()
    made.speaker.close()


def test_a_microphone_delivers_int16_blocks_timed_by_their_samples(bench):
    mic, heard = bench.microphone, Heard()
    started = bench.monotonic()
    mic.start(heard)
    with pytest.raises(RuntimeError):
        mic.start(Heard())  # one output at a time
    bench.pass_time(1.0)
    mic.stop()
    count = len(heard.blocks)
    bench.pass_time(0.2)
    assert len(heard.blocks) == count, "blocks after stop"
    mic.stop()  # stopping twice is harmless

    assert 35 <= count <= 55, count  # a second of 20 ms blocks, give or take the start
    assert mic.blocks_delivered == count
    for block in heard.blocks:
        assert block.samples.dtype == np.int16 and block.samples.shape == (320, 1)
        assert block.sample_rate == RATE and block.duration_s == pytest.approx(0.02)
    times = np.array([b.timestamp_us for b in heard.blocks])
    assert (np.abs(np.diff(times) - 20_000) <= 1).all(), "each block starts where the last ended"
    # A block's time is when its first sample was heard: after start, before it arrived.
    assert started - 0.3 <= times[0] / 1e6 <= started + 1.0
    assert rms_dbfs(heard.audio()) > -70.0, "a working microphone in a room is not silent"


def test_a_speaker_plays_a_clip_the_microphone_hears_and_then_is_quiet(bench):
    mic, speaker, heard = bench.microphone, bench.speaker, Heard()
    t = np.arange(int(0.5 * RATE)) / RATE
    clip = (np.sin(2 * np.pi * 700.0 * t) * 10000).astype(np.int16)
    mic.start(heard)
    bench.pass_time(0.3)
    assert not speaker.is_playing
    played_at = bench.monotonic()
    speaker.play(clip, RATE)
    assert speaker.is_playing
    bench.pass_time(1.5)  # the clip, and the real backend's half-second buffer
    assert not speaker.is_playing
    mic.stop()
    at, score = find_clip(heard.audio(), clip, RATE)
    assert score > 0.9, f"the microphone did not hear the clip (match {score:.2f})"
    heard_at = heard.blocks[0].timestamp_us / 1e6 + at
    assert -0.05 <= heard_at - played_at <= 1.0, heard_at - played_at


def test_a_new_clip_cuts_off_the_one_playing(bench):
    speaker = bench.speaker
    long = np.full(RATE * 3, 3000, dtype=np.int16)
    short = np.full(RATE // 10, 3000, dtype=np.int16)
    speaker.play(long, RATE)
    bench.pass_time(0.2)
    speaker.play(short, RATE)
    bench.pass_time(1.2)  # far less than the long clip's three seconds
    assert not speaker.is_playing
    speaker.stop()  # and stopping a quiet speaker is harmless
