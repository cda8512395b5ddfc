"""Speech rendering: espeak-ng with a disk cache, shipped clips and tones as fallbacks (R9.1)."""

from __future__ import annotations

import logging
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from firmware_py.config import Phrase, load
from firmware_py.fieldwork.speech import (
    SHIPPED_DIR,
    SHIPPED_RATE,
    TONE_BEEP_S,
    TONE_BEEPS,
    TONE_GAP_S,
    PhraseRenderer,
    phrase_key,
    policy_phrases,
)

ESPEAK = shutil.which("espeak-ng")


@pytest.fixture
def espeak_installed() -> None:
    # make test installs espeak-ng; without it these tests must fail, not quietly pass.
    assert ESPEAK is not None, "espeak-ng missing: run make test (it installs it)"


needs_espeak = pytest.mark.usefixtures("espeak_installed")

PINYIN = "zhi2 fa3 ji4 lu4 yi2 yi3 kai1 shi3 lu4 yin1 lu4 xiang4"


@pytest.fixture(scope="module")
def phrases() -> list[Phrase]:
    return policy_phrases(load().policy)


@pytest.fixture
def counting_espeak(tmp_path: Path) -> tuple[str, Path]:
    """A real espeak-ng behind a wrapper that logs each call, to see cache hits from outside."""
    assert ESPEAK is not None
    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "espeak-ng"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{ESPEAK}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), calls


def renders(calls: Path) -> int:
    if not calls.exists():
        return 0
    return sum(" -w " in line for line in calls.read_text().splitlines())


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.req("R9.1")
@needs_espeak
def test_mandarin_announcement_is_spoken_and_cached(tmp_path: Path, phrases: list[Phrase],
                                                    counting_espeak: tuple[str, Path]) -> None:
    espeak, calls = counting_espeak
    mandarin = next(p for p in phrases if p.language == "cmn")
    renderer = PhraseRenderer(tmp_path / "cache", 16_000, espeak=espeak)

    samples, source = renderer.render(mandarin)
    assert source == "espeak-ng"
    assert samples.dtype == np.int16
    assert 1.5 <= len(samples) / 16_000 <= 15
    assert rms(samples) > 1000  # speech at -3 dBFS peak, not near-silence
    assert 0.6 < np.abs(samples.astype(int)).max() / 32767 < 0.75
    assert renders(calls) == 1
    assert renderer.cache_path(mandarin).exists()

    again, source = renderer.render(mandarin)
    assert source == "espeak-ng"
    np.testing.assert_array_equal(again, samples)
    # The cache is on disk: a fresh renderer (a reboot) does not synthesise again either.
    after_restart, _ = PhraseRenderer(tmp_path / "cache", 16_000, espeak=espeak).render(mandarin)
    np.testing.assert_array_equal(after_restart, samples)
    assert renders(calls) == 1


@needs_espeak
def test_pinyin_voice_is_honoured(tmp_path: Path) -> None:
    renderer = PhraseRenderer(tmp_path, 16_000, espeak=ESPEAK)
    tones, _ = renderer.render(Phrase("cmn", "执法记录仪已开始录音录像", voice="cmn-latn-pinyin",
                                      speak=PINYIN))
    digits_read_aloud, _ = renderer.render(Phrase("cmn", PINYIN))  # voice empty: -v cmn
    # Plain cmn reads "zhi2" as letters plus the number two: clearly longer, not the same audio.
    assert len(digits_read_aloud) > 1.1 * len(tones)  # 1.26 with espeak-ng 1.51


@needs_espeak
def test_cache_depends_on_espeak_version_but_shipped_name_does_not(tmp_path: Path) -> None:
    other = tmp_path / "espeak-ng"
    other.write_text('#!/bin/sh\nif [ "$1" = --version ]; then\n'
                     '  echo "eSpeak NG text-to-speech: 9.99  Data at: /nowhere"; exit 0\nfi\n'
                     f'exec "{ESPEAK}" "$@"\n')
    other.chmod(0o755)
    phrase = Phrase("en", "Reason: weather.", voice="en")
    installed = PhraseRenderer(tmp_path, 16_000, espeak=ESPEAK)
    upgraded = PhraseRenderer(tmp_path, 16_000, espeak=str(other))
    assert upgraded.espeak_version() == "9.99"
    assert installed.cache_path(phrase) != upgraded.cache_path(phrase)
    assert (SHIPPED_DIR / f"{phrase_key(phrase)}.wav").exists()


@needs_espeak
def test_without_espeak_shipped_clips_match_espeak(tmp_path: Path, phrases: list[Phrase]) -> None:
    spoken = PhraseRenderer(tmp_path / "with", 16_000, espeak=ESPEAK)
    shipped = PhraseRenderer(tmp_path / "without", 16_000, espeak=None)
    for phrase in phrases:
        live, live_source = spoken.render(phrase)
        fallback, source = shipped.render(phrase)
        assert (live_source, source) == ("espeak-ng", "shipped"), phrase.text
        assert abs(len(fallback) - len(live)) <= 0.05 * len(live), phrase.text
        assert rms(fallback) > 1000
    assert not any((tmp_path / "without").glob("*"))  # nothing cached from a fallback


@pytest.mark.req("R9.1")
def test_every_policy_phrase_has_a_small_shipped_clip(phrases: list[Phrase]) -> None:
    keys = {phrase_key(p) for p in phrases}
    shipped = {p.stem: p for p in SHIPPED_DIR.glob("*.wav")}
    assert set(shipped) == keys, "policy phrases changed: run python -m firmware_py.fieldwork.speech --ship"
    for path in shipped.values():
        with wave.open(str(path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == \
                (1, 2, SHIPPED_RATE)
    assert sum(p.stat().st_size for p in shipped.values()) < 1_500_000


def test_unknown_phrase_without_espeak_is_a_tone(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    renderer = PhraseRenderer(tmp_path, 8_000, espeak=None)
    caplog.set_level(logging.WARNING, logger="firmware_py.fieldwork.speech")
    samples, source = renderer.render(Phrase("en", "Not in any policy."))
    assert source == "tone"
    assert samples.dtype == np.int16
    expected_s = TONE_BEEPS * TONE_BEEP_S + (TONE_BEEPS - 1) * TONE_GAP_S
    assert len(samples) == pytest.approx(expected_s * 8_000, abs=2)
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    assert np.fft.rfftfreq(len(samples), 1 / 8_000)[spectrum.argmax()] == pytest.approx(880, abs=5)
    assert "espeak-ng not installed" in caplog.text


def test_broken_espeak_falls_back_and_is_logged_once(tmp_path: Path, phrases: list[Phrase],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    renderer = PhraseRenderer(tmp_path, 16_000, espeak=str(tmp_path / "no-such-espeak"))
    caplog.set_level(logging.WARNING, logger="firmware_py.fieldwork.speech")
    sources = {renderer.render(p)[1] for p in phrases}
    assert sources == {"shipped"}
    broken = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert len(broken) == 1
    assert "No such file" in broken[0].getMessage()  # the error itself, for the service log


@needs_espeak
def test_espeak_error_for_one_phrase_is_logged_with_its_message(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    renderer = PhraseRenderer(tmp_path, 16_000, espeak=ESPEAK)
    caplog.set_level(logging.WARNING, logger="firmware_py.fieldwork.speech")
    phrase = Phrase("en", "Hello.", voice="zz-nosuch")  # "no-…" would match Norwegian
    assert renderer.render(phrase)[1] == "tone"
    assert renderer.render(phrase)[1] == "tone"
    failures = [r for r in caplog.records if "could not render" in r.getMessage()]
    assert len(failures) == 1
    assert "voice does not exist" in failures[0].getMessage()
    # espeak-ng itself still works for the next phrase.
    assert renderer.render(Phrase("en", "Hello.", voice="en"))[1] == "espeak-ng"


def test_script_offsets_add_up(tmp_path: Path, phrases: list[Phrase]) -> None:
    announcement = load().policy.announcement.phrases
    renderer = PhraseRenderer(tmp_path, 16_000, espeak=None)
    clip = renderer.script(announcement, gap_s=0.4)
    assert clip.samples.dtype == np.int16 and clip.samples.ndim == 1
    assert [p.text for p in clip.parts] == [p.text for p in announcement]
    assert [p.source for p in clip.parts] == ["shipped"] * len(announcement)
    assert clip.parts[0].start_s == 0
    for before, after in zip(clip.parts, clip.parts[1:]):
        assert after.start_s == pytest.approx(before.start_s + before.duration_s + 0.4)
    last = clip.parts[-1]
    assert clip.duration_s == pytest.approx(last.start_s + last.duration_s)
    gap_at = int(round((clip.parts[0].duration_s) * 16_000))
    assert not clip.samples[gap_at:gap_at + 6_400].any()  # the gap is silence


@pytest.mark.parametrize("rate", [8_000, 16_000, 48_000])
def test_script_resamples_shipped_clips_to_the_asked_rate(tmp_path: Path, phrases: list[Phrase],
                                                          rate: int) -> None:
    clip = PhraseRenderer(tmp_path, rate, espeak=None).script(phrases[:3], gap_s=0.5)
    assert clip.sample_rate == rate
    expected = 2 * round(0.5 * rate)
    for phrase in phrases[:3]:
        with wave.open(str(SHIPPED_DIR / f"{phrase_key(phrase)}.wav"), "rb") as wav:
            expected += round(wav.getnframes() * rate / SHIPPED_RATE)
    assert len(clip.samples) == expected
    assert clip.samples.dtype == np.int16


@needs_espeak
@pytest.mark.parametrize("rate", [8_000, 48_000])
def test_espeak_rendering_resampled_to_the_asked_rate(tmp_path: Path, rate: int) -> None:
    phrase = Phrase("en", "Reason: obstruction.", voice="en")
    base, _ = PhraseRenderer(tmp_path / "a", 16_000, espeak=ESPEAK).render(phrase)
    other, source = PhraseRenderer(tmp_path / "b", rate, espeak=ESPEAK).render(phrase)
    assert source == "espeak-ng"
    # Both come from espeak-ng's own 22.05 kHz output; rounding costs at most a sample each.
    assert abs(len(other) - len(base) * rate / 16_000) <= 2 * rate / 16_000 + 1


@needs_espeak
def test_corrupt_cache_file_is_rendered_again(tmp_path: Path,
                                              counting_espeak: tuple[str, Path]) -> None:
    espeak, calls = counting_espeak
    renderer = PhraseRenderer(tmp_path / "cache", 16_000, espeak=espeak)
    phrase = Phrase("en", "Reason: weather.", voice="en")
    first, _ = renderer.render(phrase)
    cached = renderer.cache_path(phrase)
    cached.write_bytes(b"\x00garbage, not a RIFF file" * 10)

    again, source = renderer.render(phrase)
    assert source == "espeak-ng"
    np.testing.assert_array_equal(again, first)
    assert renders(calls) == 2
    with wave.open(str(cached), "rb") as wav:  # and the cache holds a good clip again
        assert wav.getnframes() == len(first)
