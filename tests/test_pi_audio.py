"""The Pi's microphone and speaker on the real sounddevice and PortAudio, against PulseAudio
run as an ordinary process (``tests/pulse.py``): the speaker plays into a null sink whose
monitor is the microphone, as the air carries the recorder's own voice to its microphone.
A whole pi recorder records its own announcement into sealed segments; what every
microphone and speaker must do is in ``tests/test_contract_audio.py``.

In real time, so each test plays a few seconds at most.
"""

from __future__ import annotations

import os
import re
import time

import av
import numpy as np
import pytest
from gpiozero import Device as GpioDevice
from gpiozero.pins.mock import MockFactory

from bodycam.cli import main as bodycam
from bodycam.wiring import PiRecorder
from device.backends.sounddevice_audio import SoundDeviceMicrophone, SoundDeviceSpeaker
from device.hardware import HardwareError
from device.microphone import AudioBlock, AudioConfig, rms_dbfs
from dock.enrollment import enroll_device
from firmware_py.config import CONFIG_DIR, load
from firmware_py.evidence import audit
from simulator.battery import SimBattery
from tests.pulse import RATE, find_clip, start_room, use_room

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime

UNIT = "Baofeng County HRSS Labour Inspection Brigade"


@pytest.fixture(scope="module")
def running_room():
    room = start_room()  # about 2 s: once for this module
    try:
        yield room
    finally:
        room.stop()


@pytest.fixture
def room(running_room, monkeypatch):
    use_room(running_room, monkeypatch)
    return running_room


class Blocks:
    def __init__(self) -> None:
        self.blocks: list[AudioBlock] = []

    def output_audio(self, block: AudioBlock) -> None:
        self.blocks.append(block)


def tone(seconds: float, hz: float, rate: int = RATE, level: float = 12000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level).astype(np.int16)


def test_a_device_that_is_not_there_is_a_hardware_error_naming_it(room):
    config = AudioConfig(sample_rate=RATE, channels=1, block_ms=20)
    mic = SoundDeviceMicrophone(config, time.monotonic, device="no such card")
    with pytest.raises(HardwareError, match="microphone: input device 'no such card'"):
        mic.start(Blocks())
    assert mic.blocks_delivered == 0
    mic.stop()  # the agent stops what it started, opened or not
    with pytest.raises(HardwareError, match="speaker: output device 'no such card'"):
        SoundDeviceSpeaker(device="no such card").play(tone(0.1, 440.0), RATE)
    with pytest.raises(ValueError, match="not a whole number of samples"):
        SoundDeviceMicrophone(AudioConfig(sample_rate=22_050, block_ms=7), time.monotonic)


def test_a_microphone_whose_source_goes_away_and_comes_back_is_heard_again(room):
    """The room's sink unloaded and loaded again (a sound server restarting, a card
    replugged): the stream stops delivering, the backend reopens it, blocks come back."""
    config = AudioConfig(sample_rate=RATE, channels=1, block_ms=20)
    mic = SoundDeviceMicrophone(config, time.monotonic, device="pulse", latency=0.1,
                                reopen_after_s=1.0)
    heard = Blocks()
    mic.start(heard)
    try:
        time.sleep(0.5)
        assert len(heard.blocks) > 10
        room.remove_sink()
        time.sleep(0.3)
        gone = len(heard.blocks)
        time.sleep(1.0)
        assert len(heard.blocks) - gone <= 2, "blocks from a source that is not there"
        room.restore_sink()  # as it was, for the tests after this one
        deadline = time.monotonic() + 8
        while len(heard.blocks) - gone < 25 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        mic.stop()
    assert mic.reopened >= 1 and len(heard.blocks) - gone >= 25, (mic.reopened, len(heard.blocks) - gone)
    times = [b.timestamp_us for b in heard.blocks]
    assert all(b > a for a, b in zip(times, times[1:])), "times went backwards across the reopen"


def levels(audio: np.ndarray) -> list[int]:
    half = RATE // 2
    return [round(rms_dbfs(audio[i:i + half])) if audio[i:i + half].any() else -99
            for i in range(0, len(audio), half)]


def short_policy(tmp_path):
    """The shipped policy with a one-phrase announcement: this test runs in real time."""
    text = (CONFIG_DIR / "policy.toml").read_text(encoding="utf-8")
    start = text.index("[[announcement.phrases]]")
    end = text.index("[interruption]")
    text = (text[:start] + '[[announcement.phrases]]\nlanguage = "en"\nvoice = "en"\n'
            'text = "Recording audio and video."\n\n' + text[end:])
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def decoded_audio(ts_files):
    """Mono int16 PCM at RATE of the segments' audio, in order, and their first PTS."""
    chunks, firsts = [], []
    for path in ts_files:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                continue
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                if not firsts or len(firsts) < len(chunks) + 1:
                    firsts.append(float(frame.pts * stream.time_base))
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks), firsts


@pytest.mark.req("R9.1", "R8.2")
def test_a_pi_recorder_records_its_own_announcement_through_sounddevice(tmp_path, room, monkeypatch):
    monkeypatch.setattr(GpioDevice, "pin_factory", MockFactory())
    root, dock = tmp_path / "device", tmp_path / "dock"
    enroll_device(root, dock, "BC-0001", UNIT)
    SimBattery(tmp_path / "power_supply", start_percent=80.0)
    gnss_master, gnss_slave = os.openpty()
    config = load(policy_path=short_policy(tmp_path), overrides={
        "device": {"hardware": "pi"},
        "audio": {"input_device": "pulse", "output_device": "pulse"},
        "recording": {"pre_event_seconds": 0},
        "gnss": {"port": os.ttyname(gnss_slave)},
        "power": {"sysfs_root": str(tmp_path / "power_supply")}})
    recorder = PiRecorder(config, root, dock=False)
    record = GpioDevice.pin_factory.pin(config.device.buttons.record_pin)
    try:
        recorder.start()
        recorder.advance(2.0)  # the boot self-check watches the microphone for a second
        record.drive_low()  # the officer presses record
        recorder.advance(0.2)
        record.drive_high()
        recorder.advance(5.0)
        clip = recorder.agent.speech.clip("announcement")
        # The sound goes away and comes back: the simulator's fault events, from PortAudio.
        room.remove_sink()
        recorder.advance(3.0)
        room.restore_sink()
        recorder.advance(3.5)
    finally:
        recorder.finish()
        os.close(gnss_master)
        os.close(gnss_slave)

    kinds = [e["kind"] for e in audit.scan(root / "audit.jsonl")[0]]
    assert "recording_started" in kinds and "spoken" in kinds
    mic_errors = [e for e in audit.scan(root / "audit.jsonl")[0] if e["kind"] == "hardware_error"
                  and e["fields"]["part"] in ("microphone", "speaker")]
    assert mic_errors == [], mic_errors
    faults = [(e["kind"], e["fields"].get("fault")) for e in audit.scan(root / "audit.jsonl")[0]
              if e["kind"].startswith("microphone_")]
    assert faults == [("microphone_failed", "stopped"), ("microphone_recovered", "stopped")], faults
    out = tmp_path / "export"
    assert bodycam(["export", str(root / "evidence"), "--trust", str(dock), "--key", str(dock),
                    "--out", str(out)]) == 0
    segments = sorted(out.rglob("*.ts"), key=lambda p: int(re.findall(r"_(\d+)_", p.name)[-1]))
    assert segments, "no segment was sealed"
    audio, _ = decoded_audio(segments)
    assert len(audio) >= 4 * RATE, f"only {len(audio) / RATE:.1f} s of sound was recorded"
    reference = np.interp(np.arange(int(clip.duration_s * RATE)) * clip.sample_rate / RATE,
                          np.arange(len(clip.samples)), clip.samples.astype(np.float64))
    at, score = find_clip(audio, reference, RATE)
    # AAC at 64 kbit/s and the hiss under it: a clear match, not a bit-exact one.
    timeline = [(round(e["time"]["monotonic"], 2), e["kind"]) for e in audit.scan(
        root / "audit.jsonl")[0]]
    assert score > 0.6, (f"the announcement is not in the recorded sound (match {score:.2f}; "
                         f"{len(audio) / RATE:.1f} s recorded; microphone reopened "
                         f"{recorder.hardware.microphone.reopened}x, "
                         f"{recorder.hardware.microphone.overflows} overflows; level per "
                         f"half second {levels(audio)} dBFS): {timeline}")
    # Said as the recording starts: the file's first sound may be a few milliseconds into it.
    assert -0.1 < at < 2.0, f"the announcement starts {at:.2f} s into the recording"
    print(f"announcement found {at:.2f} s into the recorded sound, match {score:.2f}")
