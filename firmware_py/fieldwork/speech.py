"""Speech: turn the policy's phrase scripts into PCM for the speaker (Art. 8, 9; R9.1).

Each ``Phrase`` is rendered by espeak-ng, offline, and the result cached on disk, so the
announcement at a recording start does not wait for synthesis after the first time. Where
espeak-ng is missing or fails, a clip shipped with the firmware (``firmware_py/clips``,
rendered by ``python -m firmware_py.fieldwork.speech --ship``) is played instead; where there is no
such clip either, a beep pattern. Every rendered ``Clip`` says, part by part, what was
played and from which source, so the record of an announcement is truthful.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from firmware_py.config import Phrase, PolicyConfig

log = logging.getLogger(__name__)

Source = Literal["espeak-ng", "shipped", "tone"]

SHIPPED_DIR = Path(__file__).resolve().parent / "clips"
SHIPPED_RATE = 16_000
# Bump when anything changes what a clip sounds like for the same phrase (espeak arguments,
# normalisation); shipped clips are then no longer found and must be re-shipped.
FORMAT_TAG = "bodycam-speech/1 s16le mono peak-3dBFS trim-50ms espeak-default-rate"
PEAK_DBFS = -3.0
ESPEAK_TIMEOUT_S = 15.0
TRIM_BELOW_DBFS = -50.0  # relative to the clip's peak
TRIM_KEEP_S = 0.05

TONE_HZ = 880.0
TONE_BEEP_S = 0.25
TONE_GAP_S = 0.2
TONE_BEEPS = 3
TONE_RAMP_S = 0.01


@dataclass(frozen=True)
class ClipPart:
    """One phrase (or its stand-in) within a clip, as it goes into the record."""

    language: str
    text: str
    start_s: float
    duration_s: float
    source: Source


@dataclass(frozen=True)
class Clip:
    """A script ready for ``Speaker.play``: int16 mono samples and what they contain."""

    samples: np.ndarray
    sample_rate: int
    parts: tuple[ClipPart, ...]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def voice_of(phrase: Phrase) -> str:
    return phrase.voice or phrase.language


def spoken_text(phrase: Phrase) -> str:
    # NFC so the same words typed on another editor still find the same clip.
    return unicodedata.normalize("NFC", (phrase.speak or phrase.text).strip())


def phrase_key(phrase: Phrase) -> str:
    """Name of the shipped clip for a phrase: independent of espeak-ng's presence or version."""
    material = "\0".join((FORMAT_TAG, voice_of(phrase), spoken_text(phrase)))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Float resampling: low-pass when going down (against aliasing), then linear interpolation."""
    x = np.asarray(samples, dtype=np.float64)
    if src_rate == dst_rate or len(x) == 0:
        return x.copy()
    if dst_rate < src_rate:
        cutoff = 0.45 * dst_rate / src_rate  # cycles per source sample, below the new Nyquist
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hanning(len(taps))
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
    n_out = int(round(len(x) * dst_rate / src_rate))
    positions = np.arange(n_out) * (src_rate / dst_rate)
    return np.interp(positions, np.arange(len(x)), x)


def to_int16(samples: np.ndarray, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Peak-normalise: espeak-ng's output is quiet for a small body-worn speaker."""
    x = np.asarray(samples, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        return np.zeros(len(x), dtype=np.int16)
    target = 32767.0 * 10 ** (peak_dbfs / 20)
    return np.clip(np.round(x * (target / peak)), -32768, 32767).astype(np.int16)


def trim_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut espeak-ng's ~0.3 s trailing pad, so the policy's gap_s is the gap actually heard."""
    level = np.abs(np.asarray(samples, dtype=np.float64))
    if not len(level) or not level.max():
        return samples
    loud = np.flatnonzero(level > level.max() * 10 ** (TRIM_BELOW_DBFS / 20))
    keep = int(round(TRIM_KEEP_S * sample_rate))
    return samples[max(0, loud[0] - keep): loud[-1] + 1 + keep]


def tone_pattern(sample_rate: int) -> np.ndarray:
    """Three short beeps: heard by the party even when no speech is available."""
    n_beep = int(round(TONE_BEEP_S * sample_rate))
    n_gap = int(round(TONE_GAP_S * sample_rate))
    n_ramp = max(1, int(round(TONE_RAMP_S * sample_rate)))
    t = np.arange(n_beep) / sample_rate
    beep = np.sin(2 * np.pi * TONE_HZ * t)
    envelope = np.ones(n_beep)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n_ramp))  # no clicks at the edges
    envelope[:n_ramp] = ramp
    envelope[-n_ramp:] = ramp[::-1]
    beep *= envelope
    pieces: list[np.ndarray] = []
    for i in range(TONE_BEEPS):
        if i:
            pieces.append(np.zeros(n_gap))
        pieces.append(beep)
    return to_int16(np.concatenate(pieces))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """int16 mono samples and rate; raises ``ValueError`` on anything else or a broken file."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise ValueError(f"{path}: not 16-bit mono")
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if len(frames) % 2 or rate <= 0:
        raise ValueError(f"{path}: truncated")
    return np.frombuffer(frames, dtype="<i2").astype(np.int16), rate


def write_wav_atomic(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write via a temporary file and rename, so a power cut never leaves half a clip."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".wav.tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make shipped clips unreadable to others
        with os.fdopen(fd, "wb") as fh:
            with wave.open(fh, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)
                wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class EspeakError(RuntimeError):
    """espeak-ng did not give a usable clip for a phrase."""


class EspeakUnavailable(EspeakError):
    """espeak-ng could not be started or hung: not worth trying again for other phrases."""


def run_espeak(espeak: str, phrase: Phrase) -> tuple[np.ndarray, int]:
    """espeak-ng's rendering of a phrase, at espeak-ng's own sample rate."""
    with tempfile.TemporaryDirectory(prefix="bodycam-speech-") as tmp:
        out = Path(tmp) / "out.wav"
        # "--" so a phrase starting with "-" is read, not taken as an option.
        argv = [espeak, "-v", voice_of(phrase), "-w", str(out), "--", spoken_text(phrase)]
        try:
            result = subprocess.run(argv, capture_output=True, text=True,
                                    timeout=ESPEAK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EspeakUnavailable(str(exc)) from exc
        if result.returncode != 0:
            raise EspeakError(f"exit {result.returncode}: {result.stderr.strip()}")
        try:
            samples, rate = read_wav(out)
        except (OSError, ValueError) as exc:
            raise EspeakError(f"no usable WAV: {exc}") from exc
    if not len(samples) or not np.any(samples):
        raise EspeakError("silent output")
    return trim_silence(samples, rate), rate


class PhraseRenderer:
    """Renders phrases to int16 mono PCM at one sample rate, with cache and fallbacks."""

    def __init__(self, cache_dir: Path, sample_rate: int,
                 espeak: str | None = shutil.which("espeak-ng"),  # looked up at import
                 shipped_dir: Path = SHIPPED_DIR) -> None:
        self.cache_dir = Path(cache_dir)
        self.sample_rate = sample_rate
        self.espeak = espeak
        self.shipped_dir = Path(shipped_dir)
        self._version: str | None = None
        self._espeak_broken = False
        self._logged: set[str] = set()

    # --- public -----------------------------------------------------------------------

    def render(self, phrase: Phrase) -> tuple[np.ndarray, Source]:
        """Samples at ``sample_rate`` and where they came from ("espeak-ng", "shipped", "tone")."""
        key = phrase_key(phrase)
        if self._espeak_usable():
            try:
                return self._render_espeak(phrase), "espeak-ng"
            except EspeakUnavailable:
                pass  # already logged once by _disable
            except EspeakError as exc:
                self._log_once(f"fail:{key}", "espeak-ng could not render %r (voice %s): %s; "
                               "falling back", phrase.text, voice_of(phrase), exc)
        shipped = self.shipped_dir / f"{key}.wav"
        if shipped.exists():
            try:
                samples, rate = read_wav(shipped)
                return to_int16(resample(samples, rate, self.sample_rate)), "shipped"
            except ValueError as exc:
                self._log_once(f"shipped:{key}", "shipped clip unreadable: %s", exc)
        self._log_once(f"tone:{key}", "no speech for %r (voice %s); playing a tone pattern",
                       phrase.text, voice_of(phrase))
        return tone_pattern(self.sample_rate), "tone"

    def script(self, phrases: Sequence[Phrase], gap_s: float = 0.4) -> Clip:
        """Render phrases in order with ``gap_s`` of silence between them."""
        gap = np.zeros(int(round(gap_s * self.sample_rate)), dtype=np.int16)
        pieces: list[np.ndarray] = []
        parts: list[ClipPart] = []
        offset = 0
        for i, phrase in enumerate(phrases):
            if i:
                pieces.append(gap)
                offset += len(gap)
            samples, source = self.render(phrase)
            parts.append(ClipPart(phrase.language, phrase.text, offset / self.sample_rate,
                                  len(samples) / self.sample_rate, source))
            pieces.append(samples)
            offset += len(samples)
        samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        return Clip(samples.astype(np.int16, copy=False), self.sample_rate, tuple(parts))

    def cache_path(self, phrase: Phrase) -> Path:
        """Where a phrase's espeak-ng rendering is cached for this rate and espeak-ng version."""
        material = "\0".join((phrase_key(phrase), self.espeak_version() or "unknown",
                              str(self.sample_rate)))
        return self.cache_dir / f"{hashlib.sha256(material.encode('utf-8')).hexdigest()}.wav"

    def espeak_version(self) -> str | None:
        """espeak-ng's version, asked once; a new version re-renders rather than reuse the cache."""
        if self._version is None and self._espeak_usable():
            try:
                out = subprocess.run([self.espeak, "--version"], capture_output=True, text=True,
                                     timeout=ESPEAK_TIMEOUT_S, check=False).stdout
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._disable(exc)
                return None
            match = re.search(r"text-to-speech:\s*(\S+)", out)
            self._version = match.group(1) if match else ""
        return self._version or None

    # --- internals --------------------------------------------------------------------

    def _espeak_usable(self) -> bool:
        if self.espeak is None:
            self._log_once("absent", "espeak-ng not installed; using shipped clips or tones")
            return False
        return not self._espeak_broken

    def _disable(self, exc: BaseException) -> None:
        # A binary that cannot start or hangs would delay every announcement: stop trying.
        self._espeak_broken = True
        self._log_once("broken", "espeak-ng at %s unusable (%s); using shipped clips or tones",
                       self.espeak, exc)

    def _render_espeak(self, phrase: Phrase) -> np.ndarray:
        cached = self.cache_path(phrase)
        if cached.exists():
            try:
                samples, rate = read_wav(cached)
                if rate == self.sample_rate and len(samples):
                    return samples
                raise ValueError(f"{cached}: rate {rate}, {len(samples)} samples")
            except ValueError as exc:
                log.warning("cached clip unusable, rendering again: %s", exc)
                try:
                    cached.unlink(missing_ok=True)
                except OSError:
                    pass  # the rename below replaces it, or caching is off anyway
        if self.espeak is None or self._espeak_broken:
            raise EspeakUnavailable("espeak-ng unusable")
        try:
            rendered = run_espeak(self.espeak, phrase)
        except EspeakUnavailable as exc:
            self._disable(exc)
            raise
        samples = to_int16(resample(*rendered, self.sample_rate))
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            write_wav_atomic(cached, samples, self.sample_rate)
        except OSError as exc:
            # Full or read-only storage must not silence the announcement.
            self._log_once("cache-write", "cannot cache speech in %s: %s", self.cache_dir, exc)
        return samples

    def _log_once(self, tag: str, message: str, *args: object) -> None:
        if tag in self._logged:
            log.debug(message, *args)
            return
        self._logged.add(tag)
        log.warning(message, *args)


class PolicyClips:
    """The policy's phrase scripts — "announcement", "prompt", and "reason:<key>" for each
    reason with words — rendered once by ``renderer`` and kept (``prepare`` renders them
    all before anyone presses record, so the announcement never waits for the engine)."""

    def __init__(self, renderer: PhraseRenderer, policy: PolicyConfig) -> None:
        self.renderer = renderer
        self._policy = policy
        self._clips: dict[str, Clip] = {}

    def scripts(self) -> dict[str, tuple]:
        policy = self._policy
        scripts = {"announcement": policy.announcement.phrases,
                   "prompt": policy.interruption.prompt}
        for key, reason in policy.interruption.reasons.items():
            if reason.spoken:
                scripts[f"reason:{key}"] = reason.spoken
        return scripts

    def prepare(self) -> None:
        for script in self.scripts():
            self.clip(script)

    def clip(self, script: str) -> Clip | None:
        """The rendered script; None for a script the policy does not have (or empty)."""
        if script not in self._clips:
            phrases = self.scripts().get(script)
            if not phrases:
                return None
            self._clips[script] = self.renderer.script(phrases, self._policy.announcement.gap_s)
        return self._clips[script]


def policy_phrases(policy: PolicyConfig) -> list[Phrase]:
    """Every phrase the policy can have spoken: announcement, prompt, each reason's confirmation."""
    phrases = [*policy.announcement.phrases, *policy.interruption.prompt]
    for reason in policy.interruption.reasons.values():
        phrases += reason.spoken
    return phrases


def ship(phrases: Sequence[Phrase], out_dir: Path = SHIPPED_DIR,
         espeak: str | None = shutil.which("espeak-ng")) -> dict[str, Path]:
    """Render phrases with espeak-ng into ``out_dir/<phrase_key>.wav`` at 16 kHz.

    Clips of phrases no longer in the list are removed, so the package carries only
    what the policy can say. Raises ``EspeakError`` if any phrase fails: a shipped set
    with holes would only be noticed in the field.
    """
    if espeak is None:
        raise EspeakError("espeak-ng not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for phrase in phrases:
        key = phrase_key(phrase)
        samples = to_int16(resample(*run_espeak(espeak, phrase), SHIPPED_RATE))
        path = out_dir / f"{key}.wav"
        write_wav_atomic(path, samples, SHIPPED_RATE)
        written[key] = path
        log.info("shipped %s (%s, %.2f s): %s", path.name, voice_of(phrase),
                 len(samples) / SHIPPED_RATE, phrase.text)
    for stale in out_dir.glob("*.wav"):
        if re.fullmatch(r"[0-9a-f]{64}\.wav", stale.name) and stale.stem not in written:
            log.info("removing stale clip %s", stale.name)
            stale.unlink()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_py.fieldwork.speech",
                                     description="Render the policy's phrases.")
    parser.add_argument("--ship", action="store_true",
                        help="render every policy phrase into the shipped fallback clips")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="directory for --ship")
    parser.add_argument("--policy", type=Path, default=None, help="policy.toml to read")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.ship:
        parser.print_help()
        return 2
    from firmware_py.config import load
    policy = load(policy_path=args.policy).policy
    try:
        written = ship(policy_phrases(policy), args.out)
    except EspeakError as exc:
        print(f"speech: {exc}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in written.values())
    print(f"{len(written)} clips, {total} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
