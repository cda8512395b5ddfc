"""Test harness: PulseAudio run as an ordinary process, so PortAudio (through ALSA's
``pulse`` plugin, Debian's ``libasound2-plugins``) has a sound card on a machine without
one — the Pi's microphone and speaker backends run on the real sounddevice and PortAudio.

One null sink, ``room``, is the air around the recorder: the speaker backend plays into
it, the microphone backend records its monitor (``room.monitor`` is the default source),
and from the start a quiet hiss plays into it from ``pacat`` as a room would — a null
sink with nothing playing gives digital silence, which the agent rightly takes for a dead
microphone (and its monitor starts slowly). It runs in real time; tests keep what they play to a few seconds.

The daemon is started without any configuration but the script written here (``-n``),
without D-Bus, shared memory or idle exit, on a socket in a fresh runtime directory, and
clients find it through ``PULSE_SERVER``. PortAudio reads its device list once, when
sounddevice is imported; a test process that imported sounddevice before the daemon ran
has that list re-read (sounddevice's ``_terminate``/``_initialize``: a harness quirk).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE = 16_000
AMBIENT_RMS = 300.0  # about -41 dBFS: well above digital silence, well below a voice
AMBIENT_S = 120.0  # longer than any test here; the hiss stops with the room


@dataclass
class Room:
    """A running PulseAudio with the ``room`` sink; ``env`` reaches it."""

    process: subprocess.Popen
    runtime: Path
    env: dict[str, str]
    noises: list[subprocess.Popen] = field(default_factory=list)

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, check=True, capture_output=True,
                              text=True, timeout=10).stdout

    def ambient(self, seconds: float) -> None:
        """Play ``seconds`` of quiet hiss into the room (``pacat``, in the background)."""
        rng = np.random.default_rng(7)
        hiss = (rng.standard_normal(int(seconds * RATE)) * AMBIENT_RMS).astype("<i2")
        noise = subprocess.Popen(
            ["pacat", "--playback", "--raw", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--device=room", "--latency-msec=100"],
            stdin=subprocess.PIPE, env=self.env, stderr=subprocess.DEVNULL)
        self.noises.append(noise)
        stdin = noise.stdin
        assert stdin is not None

        def feed() -> None:  # pacat takes it in real time: the pipe holds only a moment of it
            try:
                stdin.write(hiss.tobytes())
                stdin.close()
            except (BrokenPipeError, ValueError):
                pass  # the room stopped before the hiss ran out

        threading.Thread(target=feed, name="room-ambient", daemon=True).start()

    def remove_sink(self) -> None:
        """The room's sink goes away (a sound server restarting, a card unplugged)."""
        module = next(line.split()[0] for line in self.pactl("list", "short", "modules").splitlines()
                      if "module-null-sink" in line)
        self.pactl("unload-module", module)

    def restore_sink(self) -> None:
        """The room's sink is back, the default again both ways, with its hiss."""
        self.pactl("load-module", "module-null-sink", "sink_name=room", f"rate={RATE}",
                   "channels=1")
        self.pactl("set-default-sink", "room")
        self.pactl("set-default-source", "room.monitor")
        self.ambient(AMBIENT_S)

    def stop(self) -> None:
        for proc in (*self.noises, self.process):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.runtime, ignore_errors=True)


def start_room() -> Room:
    """Start PulseAudio with the room sink; fails (never skips) when it is not installed:
    ``scripts/system-deps.sh`` installs pulseaudio, pulseaudio-utils, libportaudio2 and
    libasound2-plugins."""
    for program in ("pulseaudio", "pactl", "pacat"):
        assert shutil.which(program), (f"{program} is missing: run scripts/system-deps.sh "
                                       "(make test does)")
    # A short path: a unix socket's path must fit in 108 bytes.
    runtime = Path(tempfile.mkdtemp(prefix="bodycam-pa-"))
    socket = runtime / "native"
    script = runtime / "room.pa"
    script.write_text(
        f"load-module module-native-protocol-unix socket={socket} auth-anonymous=1\n"
        f"load-module module-null-sink sink_name=room rate={RATE} channels=1\n"
        "set-default-sink room\n"
        "set-default-source room.monitor\n")
    env = {**os.environ, "HOME": str(runtime), "XDG_RUNTIME_DIR": str(runtime),
           "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SERVER": f"unix:{socket}"}
    env.pop("PULSE_SINK", None)
    env.pop("PULSE_SOURCE", None)
    process = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1",
         "--use-pid-file=no", "--disable-shm=yes", "--log-target=stderr", "--log-level=error"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    room = Room(process, runtime, env)
    deadline = time.monotonic() + 10
    while True:  # the daemon's start-up, not a test's timing: poll until it answers
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            room.stop()
            raise AssertionError(f"pulseaudio exited at start: {err.strip()}")
        if socket.exists() and subprocess.run(["pactl", "info"], env=env,
                                              capture_output=True).returncode == 0:
            break
        if time.monotonic() > deadline:
            room.stop()
            raise AssertionError("pulseaudio did not answer within 10 s")
        time.sleep(0.05)
    room.ambient(AMBIENT_S)
    # A fresh null sink's monitor takes up to two seconds to deliver its first sound to a
    # recording stream (afterwards new streams get it at once): wait for it here, so the
    # tests' microphone finds a room that is already running.
    listen = subprocess.Popen(["parec", "--device=room.monitor", "--raw", "--format=s16le",
                               f"--rate={RATE}", "--channels=1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert listen.stdout is not None
        heard = b""
        while len(heard) < RATE // 5 and time.monotonic() < deadline:  # 0.1 s of sound
            heard += listen.stdout.read1(RATE)
    finally:
        listen.terminate()
        listen.wait()
    if not np.frombuffer(heard[: len(heard) // 2 * 2], dtype="<i2").any():
        room.stop()
        raise AssertionError("the room's monitor gave no sound within 10 s")
    return room


def use_room(room: Room, monkeypatch) -> None:
    """Point this process's PortAudio at the room's PulseAudio."""
    monkeypatch.setenv("PULSE_SERVER", room.env["PULSE_SERVER"])
    monkeypatch.setenv("PULSE_RUNTIME_PATH", room.env["PULSE_RUNTIME_PATH"])
    monkeypatch.delenv("PULSE_SINK", raising=False)
    monkeypatch.delenv("PULSE_SOURCE", raising=False)
    if "sounddevice" in sys.modules:  # PortAudio listed its devices before the room existed
        sd = sys.modules["sounddevice"]
        sd._terminate()
        sd._initialize()


def find_clip(recording: np.ndarray, clip: np.ndarray, rate: int) -> tuple[float, float]:
    """Where ``clip`` starts in ``recording`` (seconds; negative when the recording begins
    after the clip had started) and how well the overlapping parts match there
    (normalised cross-correlation, 1.0 for an exact copy), by FFT correlation."""
    rec = recording.astype(np.float64).reshape(-1)
    ref = clip.astype(np.float64).reshape(-1)
    n = len(rec) + len(ref)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    # Lags 0 .. len(rec)-1 at the front; negative lags wrap round to the end.
    lags = np.concatenate([np.arange(len(rec)), np.arange(-len(ref) + 1, 0)])
    values = np.concatenate([corr[:len(rec)], corr[size - len(ref) + 1:]])
    best = int(np.argmax(values))
    lag = int(lags[best])
    lo = max(lag, 0)
    window = rec[lo:lag + len(ref)]
    part = ref[lo - lag:lo - lag + len(window)]
    denom = np.sqrt(np.sum(window ** 2) * np.sum(part ** 2))
    score = float(values[best] / denom) if denom else 0.0
    return lag / rate, score
