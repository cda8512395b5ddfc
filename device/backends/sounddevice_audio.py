"""Microphone and speaker on sounddevice (PortAudio): ``device.microphone.Microphone`` and
``device.speaker.Speaker`` on a Raspberry Pi (ALSA, or PulseAudio/PipeWire through ALSA's
``pulse`` device).

**Microphone.** An ``InputStream`` of int16 at ``[audio]``'s rate, channels and block
length; its callback (PortAudio's thread) hands each block to the output as an
``AudioBlock``. Block times follow the sample count from one anchor — when the first
block's first sample was heard: its arrival minus PortAudio's input delay for it
(``currentTime - inputBufferAdcTime``, or the stream's nominal latency where the host API
gives none) — so they run on without jitter, as the segments' audio needs; an input overflow (samples PortAudio had to
drop) is counted, logged, and moves the anchor on, so the gap shows in the times instead
of shifting everything after it. A stream that cannot be opened raises ``HardwareError``
(the agent logs ``hardware_error``); one that stops delivering is the agent's
``MicrophoneWatch``'s to find (``microphone_failed``), as in the simulator. The backend's
own watch reopens a stream silent for ``reopen_after_s`` (or never opened), at most that
often, so a sound server that restarts or a source that comes back is heard again
(``microphone_recovered``). (A USB card that is unplugged and plugged back in may need
PortAudio's device list read again, which only a restart of the recorder does.)

**Speaker.** Each clip gets an ``OutputStream`` of its own, fed from the clip by its
callback and finished with ``CallbackStop`` after one buffer of silence (PortAudio drops
what is still buffered when a stream ends); a new clip cuts off the one playing. Output
latency is configurable: PulseAudio through ALSA needs about half a second of buffer for
callback output to play without underruns.

Devices are chosen by index or by a (case-insensitive) part of their name, as
``sounddevice`` itself does; empty means PortAudio's default. sounddevice is imported when
a part is opened, never at module import.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import numpy as np

from device.hardware import HardwareError
from device.microphone import AudioBlock, AudioConfig, AudioOutput

log = logging.getLogger(__name__)

# A block arriving this much later than its place in the sample count says samples were
# lost without an overflow flag (a suspended stream); the anchor moves on then.
_REANCHOR_BLOCKS = 8


def _sounddevice(part: str) -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise HardwareError(f"{part}: sounddevice/PortAudio is not available ({exc}); on "
                            "Raspberry Pi OS: apt install libportaudio2 and pip install "
                            "sounddevice") from exc
    return sounddevice


def device_choice(setting: str) -> int | str | None:
    """``[audio]``'s device setting as sounddevice takes it: an index, a name, or None."""
    setting = setting.strip()
    if not setting:
        return None
    return int(setting) if setting.isdigit() else setting


class SoundDeviceMicrophone:
    """``device.microphone.Microphone`` on a PortAudio input stream."""

    def __init__(self, config: AudioConfig, monotonic: Callable[[], float], *,
                 device: str = "", latency: float | str = "high",
                 reopen_after_s: float = 2.0) -> None:
        frames = config.sample_rate * config.block_ms / 1000
        if frames != int(frames) or frames <= 0:
            raise ValueError(f"{config.block_ms} ms is not a whole number of samples at "
                             f"{config.sample_rate} Hz")
        self.config = config
        self._monotonic = monotonic
        self._device = device_choice(device)
        self._latency = latency
        self._reopen_after_s = reopen_after_s
        self._block = int(frames)
        self._stream: Any = None
        self._output: AudioOutput | None = None
        self._anchor_us: float | None = None  # time of sample 0 of the count
        self._samples = 0
        self._latency_s = 0.0
        self._blocks_delivered = 0
        self._last_block_at = 0.0
        self._last_error = ""
        self.overflows = 0
        self.reopened = 0
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()

    def start(self, output: AudioOutput) -> None:
        sd = _sounddevice("microphone")
        with self._lock:
            if self._output is not None:
                raise HardwareError("microphone: already started")
            self._output = output
            self._anchor_us = None
            self._samples = 0
            self._blocks_delivered = 0
            self._last_block_at = self._monotonic()
            # The watch reopens a stream that stopped delivering (a sound card unplugged
            # and back, a sound server restarted) or that could not be opened at start.
            self._watch_stop.clear()
            self._watch = threading.Thread(target=self._watch_loop, args=(sd,),
                                           name="microphone-watch", daemon=True)
            self._watch.start()
            self._open(sd)

    def _open(self, sd: Any) -> None:
        try:
            stream = sd.InputStream(samplerate=self.config.sample_rate,
                                    channels=self.config.channels, dtype="int16",
                                    blocksize=self._block, device=self._device,
                                    latency=self._latency, callback=self._callback)
            # Known before the first callback: every block's time depends on it.
            self._latency_s = float(stream.latency)
            stream.start()
        except Exception as exc:  # sounddevice.PortAudioError, ValueError for a bad name
            raise HardwareError(f"microphone: input device {self._device!r} cannot be "
                                f"opened: {exc}") from exc
        self._stream = stream
        log.info("microphone started on %r: %d Hz, %d ch, %d ms blocks, latency %.3f s",
                 self._device, self.config.sample_rate, self.config.channels,
                 self.config.block_ms, stream.latency)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()
            stream.close()
        except Exception:  # a stream whose device went away may fail to close, too
            log.exception("closing the microphone's stream failed")

    def _watch_loop(self, sd: Any) -> None:
        period = min(0.25, self._reopen_after_s / 4)
        while not self._watch_stop.wait(period):
            if self._monotonic() - self._last_block_at < self._reopen_after_s:
                continue
            with self._lock:
                if self._watch_stop.is_set() or self._output is None:
                    return
                self._close_stream()
                self._anchor_us = None  # the new stream's times anchor anew
                self._last_block_at = self._monotonic()  # the next try waits as long again
                try:
                    self._open(sd)
                except HardwareError as exc:
                    if str(exc) != self._last_error:  # once per distinct failure
                        log.error("microphone reopen failed: %s", exc)
                    self._last_error = str(exc)
                else:
                    self.reopened += 1
                    self._last_error = ""
                    log.warning("microphone was silent for %.1f s: stream reopened",
                                self._reopen_after_s)

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(timeout=5)
        self._watch = None
        with self._lock:
            had_stream = self._stream is not None
            self._close_stream()
            self._output = None
        if had_stream:
            log.info("microphone stopped after %d blocks (%d overflows)",
                     self._blocks_delivered, self.overflows)

    @property
    def blocks_delivered(self) -> int:
        return self._blocks_delivered

    def close(self) -> None:
        self.stop()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: one block in, one ``AudioBlock`` out."""
        output = self._output
        if output is None:
            return
        sr = self.config.sample_rate
        self._last_block_at = self._monotonic()
        now_us = self._last_block_at * 1e6
        # How long ago its first sample was heard: PortAudio's own figure for this buffer
        # where the host API gives one (ALSA does), else the stream's nominal latency.
        delay_s = self._latency_s + frames / sr
        adc, current = getattr(time_info, "inputBufferAdcTime", 0.0), getattr(time_info, "currentTime", 0.0)
        if adc and current and 0.0 <= current - adc < 2.0:
            delay_s = current - adc
        arrived_us = now_us - delay_s * 1e6
        if status and status.input_overflow:
            self.overflows += 1
            log.warning("microphone input overflow (%d so far): samples were lost",
                        self.overflows)
            self._anchor_us = None
        if self._anchor_us is not None:
            expected_us = self._anchor_us + self._samples * 1e6 / sr
            if arrived_us - expected_us > _REANCHOR_BLOCKS * frames * 1e6 / sr:
                self._anchor_us = None
        if self._anchor_us is None:
            self._anchor_us = arrived_us - self._samples * 1e6 / sr
        timestamp_us = round(self._anchor_us + self._samples * 1e6 / sr)
        self._samples += frames
        output.output_audio(AudioBlock(samples=indata.copy(), sample_rate=sr,
                                       timestamp_us=timestamp_us))
        self._blocks_delivered += 1


class SoundDeviceSpeaker:
    """``device.speaker.Speaker`` on a PortAudio output stream per clip."""

    def __init__(self, *, device: str = "", latency: float | str = 0.5) -> None:
        self._device = device_choice(device)
        self._latency = latency
        self._stream: Any = None
        self._clip: np.ndarray | None = None
        self._position = 0
        self._done = threading.Event()
        self._done.set()
        self._lock = threading.Lock()
        self.underflows = 0

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        sd = _sounddevice("speaker")
        clip = np.ascontiguousarray(np.asarray(samples, dtype=np.int16).reshape(-1, 1))
        self.stop()
        with self._lock:
            self._clip, self._position = None, 0
            self._done.clear()
            try:
                stream = sd.OutputStream(samplerate=sample_rate, channels=1, dtype="int16",
                                         device=self._device, latency=self._latency,
                                         callback=self._callback,
                                         finished_callback=self._done.set)
                # PortAudio ends a stream when its callback stops, dropping what is still
                # buffered (through ALSA's pulse plugin, all of it): the clip is followed by
                # one buffer of silence, so only silence is dropped.
                tail = int(np.ceil((float(stream.latency) + 0.05) * sample_rate))
                self._clip = np.concatenate([clip, np.zeros((tail, 1), dtype=np.int16)])
                stream.start()
            except Exception as exc:
                self._done.set()
                raise HardwareError(f"speaker: output device {self._device!r} cannot be "
                                    f"opened: {exc}") from exc
            self._stream = stream
        log.debug("speaker plays %.3f s", len(clip) / sample_rate)

    def stop(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()  # drop what is queued: a replaced clip ends where the new one starts
            stream.close()
        except Exception:
            log.exception("closing the speaker's stream failed")
        self._done.set()

    @property
    def is_playing(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the clip has played out (for tools and tests); False on timeout."""
        return self._done.wait(timeout)

    def close(self) -> None:
        self.stop()

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        import sounddevice as sd  # already imported by play(); this is a lookup

        if status and status.output_underflow:
            self.underflows += 1
        clip = self._clip
        start = self._position
        chunk = clip[start:start + frames] if clip is not None else clip
        n = 0 if chunk is None else len(chunk)
        if n:
            outdata[:n] = chunk
        outdata[n:] = 0
        self._position = start + n
        if n < frames:
            raise sd.CallbackStop  # the rest of this buffer is silence; then finished
