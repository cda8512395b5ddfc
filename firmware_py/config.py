"""Configuration: ``config/device.toml`` and ``config/policy.toml``, loaded once and validated.

Each section is a frozen dataclass whose fields carry their allowed values in metadata,
so validation, defaults and the reference table in the README come from one place. A
wrong key or value raises ``ConfigError`` whose message is one line naming the file, the
key, the value and what is allowed; the command line prints it and exits with code 2
before anything starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin, get_type_hints

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


class ConfigError(ValueError):
    """One wrong thing in a configuration file, described in one line."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


def setting(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
            choices: tuple[Any, ...] | None = None, pattern: str | None = None) -> Any:
    """A dataclass field with its documentation and allowed values."""
    meta = {"doc": doc, "min": min, "max": max, "choices": choices, "pattern": pattern}
    if isinstance(default, dict):  # a table of tables: each instance gets its own
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def required(doc: str, *, min: float | None = None, max: float | None = None,
             choices: tuple[Any, ...] | None = None, pattern: str | None = None) -> Any:
    """A field every table of its kind must give (list and table items)."""
    return field(metadata={"doc": doc, "min": min, "max": max, "choices": choices,
                           "pattern": pattern})


# --- device.toml -------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceSection:
    id: str = setting("BC-0001", "Device id, burned into the picture and every record; an "
                      "enrolled recorder runs as the id of its enrollment.json.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    unit: str = setting("Baofeng County HRSS Labour Inspection Brigade",
                        "The unit the device is enrolled to (R18.3); an enrolled recorder "
                        "runs as the unit of its enrollment.json.")
    officer: str = setting("", "Assigned officer id; empty when unassigned (set at the dock).",
                           pattern=r"^[A-Za-z0-9_-]{0,32}$")
    hardware: str = setting("sim", "Which backends drive the parts.", choices=("sim", "pi"))
    evidence_dir: str = setting("evidence", "Where evidence is written (relative to the "
                                "working directory unless absolute).")
    utc_offset: str = setting("+08:00", "Local time's offset from UTC, shown in the stamp.",
                              pattern=r"^[+-](0\d|1[0-4]):[0-5]\d$")

    @property
    def utc_offset_s(self) -> int:
        sign = -1 if self.utc_offset[0] == "-" else 1
        hours, minutes = self.utc_offset[1:].split(":")
        return sign * (int(hours) * 3600 + int(minutes) * 60)


@dataclass(frozen=True)
class VideoSection:
    width: int = setting(640, "Frame width in pixels (even).", min=160, max=3840)
    height: int = setting(360, "Frame height in pixels (even).", min=120, max=2160)
    fps: int = setting(30, "Frames per second.", min=1, max=60)
    bitrate: int = setting(1_500_000, "H.264 bitrate in bit/s (R11.3).", min=100_000, max=25_000_000)
    keyframe_interval_s: float = setting(1.0, "Seconds between keyframes; segments and the "
                                         "pre-event buffer cut on them.", min=0.25, max=2.0)
    encoder: str = setting("auto", "H.264 encoder on a Pi (hardware = \"pi\"): auto takes "
                           "picamera2's choice for the board (the hardware encoder on Pi 4 "
                           "and Zero 2 W, libx264 through LibavH264Encoder on Pi 5, which has "
                           "none); hardware or libav forces one.",
                           choices=("auto", "hardware", "libav"))
    stream_format: str = setting("YUV420", "Layout of the camera's YUV 4:2:0 buffers on a Pi "
                                 "(the stamp is drawn into either): YUV420 (I420, planar) "
                                 "or NV12 (interleaved chroma).", choices=("YUV420", "NV12"))
    camera_restart_s: float = setting(3.0, "On a Pi, a camera that delivers no frame for this "
                                      "long is closed and opened again (the stall itself is "
                                      "logged after stops.camera_stall_s).", min=1.0, max=60.0)


@dataclass(frozen=True)
class AudioSection:
    sample_rate: int = setting(16_000, "Microphone sample rate in Hz.",
                               choices=(8_000, 16_000, 22_050, 32_000, 44_100, 48_000))
    channels: int = setting(1, "Microphone channels.", min=1, max=2)
    block_ms: int = setting(20, "Length of one captured audio block.", min=5, max=100)
    bitrate: int = setting(64_000, "Encoded audio bitrate in bit/s.", min=16_000, max=320_000)
    input_device: str = setting("", "Microphone on a Pi: a PortAudio device index or part of "
                                "its name (python -m sounddevice lists them); empty: the "
                                "default input.", pattern=r"^[ -~]{0,64}$")
    output_device: str = setting("", "Speaker on a Pi, as input_device; empty: the default "
                                 "output.", pattern=r"^[ -~]{0,64}$")
    input_latency_s: float = setting(0.1, "Input buffering asked of PortAudio on a Pi.",
                                     min=0.005, max=2.0)
    output_latency_s: float = setting(0.5, "Output buffering asked of PortAudio on a Pi "
                                      "(through PulseAudio, callback output needs about "
                                      "0.5 s to play without gaps).", min=0.005, max=2.0)


@dataclass(frozen=True)
class RecordingSection:
    segment_seconds: int = setting(60, "Length of one segment file.", min=10, max=600)
    pre_event_seconds: int = setting(30, "Pre-event buffer held while ready (R8.1).", min=0, max=120)
    pre_event_audio: bool = setting(False, "Keep audio in the pre-event buffer too.")


@dataclass(frozen=True)
class PhotoSection:
    width: int = setting(1280, "Still photo width in pixels.", min=160, max=4608)
    height: int = setting(720, "Still photo height in pixels.", min=120, max=3456)


@dataclass(frozen=True)
class StampSection:
    position: str = setting("top-left", "Corner of the burned-in stamp (R10.1).",
                            choices=("top-left", "top-right", "bottom-left", "bottom-right"))
    font_px: int = setting(0, "Text height in pixels; 0 scales it with the picture "
                           "(about 1/24 of the height, at least 12).", min=0, max=200)


@dataclass(frozen=True)
class ButtonsSection:
    record_pin: int = setting(17, "GPIO (BCM) of the record button.", min=0, max=27)
    photo_pin: int = setting(27, "GPIO (BCM) of the photo button.", min=0, max=27)
    marker_pin: int = setting(22, "GPIO (BCM) of the marker button.", min=0, max=27)
    long_press_s: float = setting(1.5, "Hold time that makes a press a long press.",
                                  min=0.5, max=5.0)


@dataclass(frozen=True)
class IndicatorsSection:
    led_green_pin: int = setting(5, "GPIO of the green LED; -1 when not fitted.", min=-1, max=27)
    led_red_pin: int = setting(6, "GPIO of the red LED; -1 when not fitted.", min=-1, max=27)
    led_blue_pin: int = setting(13, "GPIO of the blue LED; -1 when not fitted.", min=-1, max=27)
    buzzer_pin: int = setting(19, "GPIO of the buzzer; -1 when not fitted.", min=-1, max=27)
    vibration_pin: int = setting(26, "GPIO of the vibration motor; -1 when not fitted.",
                                 min=-1, max=27)


@dataclass(frozen=True)
class GnssSection:
    source: str = setting("serial", "Where fixes come from: the receiver on a serial port "
                          "(read as NMEA), or a gpsd daemon that owns it (its JSON reports).",
                          choices=("serial", "gpsd"))
    port: str = setting("/dev/serial0", "Serial port of the GNSS receiver (source serial).")
    baudrate: int = setting(9600, "Its baud rate.",
                            choices=(4800, 9600, 19200, 38400, 57600, 115200))
    pps_pin: int = setting(-1, "GPIO of the receiver's PPS line, which times each epoch "
                           "to the microsecond (source serial); -1 when not wired.",
                           min=-1, max=27)
    gpsd_host: str = setting("127.0.0.1", "Address of gpsd (source gpsd).")
    gpsd_port: int = setting(2947, "Port of gpsd (source gpsd).", min=1, max=65535)


@dataclass(frozen=True)
class PowerSection:
    source: str = setting("sysfs", "Where the battery is read on a Pi: the gauge's kernel "
                          "driver under the power_supply class (sysfs), or a MAX17048/9 "
                          "gauge read directly over I2C where no driver is bound (max17048; "
                          "external power then still comes from the power_supply class).",
                          choices=("sysfs", "max17048"))
    sysfs_root: str = setting("/sys/class/power_supply", "Linux power_supply class directory.")
    i2c_bus: int = setting(1, "I2C bus of the MAX17048/9 (source max17048).", min=0, max=31)
    i2c_address: int = setting(0x36, "Its 7-bit I2C address (source max17048).",
                               min=0x08, max=0x77)
    battery: str = setting("", "Battery name under it; empty picks the first battery.")
    capacity_wh: float = setting(18.5, "Battery capacity, for estimates when the gauge "
                                 "reports no energy.", min=1.0, max=200.0)
    idle_w: float = setting(2.2, "Draw while ready (camera and pre-event buffer running).",
                            min=0.1, max=30.0)
    recording_w: float = setting(3.7, "Draw while recording.", min=0.1, max=30.0)


@dataclass(frozen=True)
class ClockSection:
    rtc: str = setting("linux", "The battery-backed RTC, read at boot and written after a "
                       "trusted correction (a holdover, never a trusted source): the kernel's "
                       "RTC class (linux: Pi 5's built-in RTC, or a DS3231 with its overlay), "
                       "a DS3231 read directly over I2C where no driver is bound (ds3231), or "
                       "none. The simulator always has one unless none.",
                       choices=("linux", "ds3231", "none"))
    rtc_name: str = setting("rtc0", "The RTC under /sys/class/rtc and /dev (rtc linux).",
                            pattern=r"^rtc[0-9]{1,2}$")
    sysfs_root: str = setting("/sys/class/rtc", "Linux RTC class directory (rtc linux).")
    dev_root: str = setting("/dev", "Where its device file is (rtc linux).")
    i2c_bus: int = setting(1, "I2C bus of the DS3231 (rtc ds3231).", min=0, max=31)
    i2c_address: int = setting(0x68, "Its 7-bit I2C address (rtc ds3231).",
                               min=0x08, max=0x77)
    max_disagreement_s: float = setting(
        1.5, "At boot, an RTC further than this from the device clock is logged "
        "(rtc_disagrees), and sets the clock when it holds a time written after a trusted "
        "correction (holdover_days); the RTC counts whole seconds.", min=1.0, max=3600.0)
    holdover_days: float = setting(
        30.0, "How long after its last write from a trusted time the RTC may still set the "
        "clock at boot.", min=0.0, max=3650.0)
    write_interval_s: float = setting(
        3600.0, "After a trusted correction the RTC is written at once, then at most this "
        "often ...", min=60.0, max=86400.0)
    write_error_s: float = setting(
        2.0, "... unless it is found further than this from the trusted time (checked every "
        "minute while the time is trusted).", min=1.0, max=3600.0)


@dataclass(frozen=True)
class DockSection:
    host: str = setting("", "Address of the dock's MQTT broker, tried whenever the recorder is on "
                        "external power (R13.1); empty: this recorder has no dock configured "
                        "and keeps everything until one is.")
    port: int = setting(8883, "Its port (mutual TLS with the certificate from enrolment).",
                        min=1, max=65535)
    retry_s: float = setting(30.0, "While on external power and the dock cannot be reached, "
                             "how often to try again.", min=1.0, max=3600.0)
    tls: bool = setting(True, "Mutual TLS with the certificate from enrolment; false only for "
                        "a dock's embedded demo broker (no TLS, no ACL), never in service.")


@dataclass(frozen=True)
class DeviceConfig:
    device: DeviceSection = field(default_factory=DeviceSection)
    video: VideoSection = field(default_factory=VideoSection)
    audio: AudioSection = field(default_factory=AudioSection)
    recording: RecordingSection = field(default_factory=RecordingSection)
    photo: PhotoSection = field(default_factory=PhotoSection)
    stamp: StampSection = field(default_factory=StampSection)
    buttons: ButtonsSection = field(default_factory=ButtonsSection)
    indicators: IndicatorsSection = field(default_factory=IndicatorsSection)
    gnss: GnssSection = field(default_factory=GnssSection)
    power: PowerSection = field(default_factory=PowerSection)
    clock: ClockSection = field(default_factory=ClockSection)
    dock: DockSection = field(default_factory=DockSection)

    @property
    def recording_bitrate(self) -> int:
        """Bits per second written while recording, video and audio together."""
        return self.video.bitrate + self.audio.bitrate


# --- policy.toml -------------------------------------------------------------------------

@dataclass(frozen=True)
class SelfCheckPolicy:
    battery_min_percent: float = setting(30.0, "R7.2: least charge to pass.", min=0, max=100)
    battery_min_recording_hours: float = setting(2.0, "R7.2: least recording time the charge "
                                                 "must last.", min=0, max=24)
    storage_min_recording_hours: float = setting(4.0, "R7.3: least recording time that must "
                                                 "fit in free storage.", min=0, max=100)
    clock_max_offset_s: float = setting(2.0, "R7.4: largest clock offset from a trusted "
                                        "source that passes.", min=0.01, max=3600)
    clock_correct_above_s: float = setting(0.5, "Offsets from a trusted source above this "
                                           "are corrected (and logged).", min=0.0, max=3600)
    camera_min_frame_ratio: float = setting(0.8, "R7.5: share of expected frames the camera "
                                            "must deliver during the probe.", min=0.0, max=1.0)
    microphone_min_dbfs: float = setting(-70.0, "R7.5: quietest level that counts as the "
                                         "microphone hearing something.", min=-120.0, max=0.0)
    gnss_fix_required: bool = setting(False, "Fail the check without a fix (otherwise a "
                                      "receiver that talks but has no fix passes).")
    probe_seconds: float = setting(1.0, "How long camera and microphone are watched.",
                                   min=0.2, max=10.0)


@dataclass(frozen=True)
class WarningsPolicy:
    battery_low_percent: tuple[float, ...] = setting(
        (15.0, 8.0), "Warn the officer each time the charge falls below one of these (a "
        "number or a list); once more only after a recharge 5 points above it.", min=0, max=100)
    storage_low_minutes: tuple[float, ...] = setting(
        (30.0, 10.0, 3.0), "Warn the officer each time the recording time left before the "
        "storage stop (free space less `stops.storage_reserve_mb`, at the configured "
        "bitrates) falls below one of these.", min=0, max=6000)
    microphone_fault_s: float = setting(2.0, "No audio, or nothing but digital silence, for "
                                        "this long is a microphone fault: logged, stamped into "
                                        "the metadata and signalled; video goes on.",
                                        min=0.5, max=60)
    gnss_lost_after_s: float = setting(10.0, "A fix older than this counts as lost.",
                                       min=1, max=600)
    reminder_interval_s: float = setting(300.0, "While recording, a short reminder tone this "
                                         "often; 0 turns it off.", min=0, max=3600)


@dataclass(frozen=True)
class StopsPolicy:
    battery_cutoff_percent: float = setting(3.0, "At this charge the agent closes the segment, "
                                            "logs an automatic interruption (Art. 12 (1)) and "
                                            "powers the camera down.", min=0, max=50)
    storage_reserve_mb: float = setting(100.0, "Free space kept in reserve: the segment is "
                                        "closed cleanly (Art. 12 (1)) when less than 10 s of "
                                        "recording fits above it, so media never eats into it.",
                                        min=1, max=100_000)
    camera_stall_s: float = setting(3.0, "No usable frame for this long while recording is a "
                                    "camera fault: an automatic interruption of the picture "
                                    "(sound is still recorded) until frames return.",
                                    min=0.5, max=60)
    power_cut_resume_within_s: float = setting(
        120.0, "A recording cut by a power cut resumes by itself, announced, when the power "
        "is back within this time (off the dock, above the cut-off); after a longer outage "
        "the officer resumes. 0: never by itself.", min=0, max=3600)


@dataclass(frozen=True)
class Phrase:
    language: str = required("Language tag (cmn, en, …).", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
    text: str = required("The phrase as written, for records and work records.")
    voice: str = setting("", "espeak-ng voice; empty uses the language tag.")
    speak: str = setting("", "What espeak-ng reads when it differs from the text (for "
                         "Mandarin: tone-numbered pinyin with voice cmn-latn-pinyin).")


@dataclass(frozen=True)
class Matter:
    zh: str = required("Name in Chinese.")
    en: str = required("Name in English.")
    recording_required: bool = setting(True, "Art. 6: must this kind of action be recorded.")


@dataclass(frozen=True)
class ReasonConfig:
    code: int = required("Item of Art. 12 (1–4).", min=1, max=4)
    zh: str = required("The reason as the regulation words it.")
    en: str = required("The reason in English.")
    presses: int = setting(0, "Marker presses that choose it after a stop; 0: only the "
                           "device records it (reason 1).", min=0, max=9)
    spoken: tuple[Phrase, ...] = setting((), "Confirmation spoken when chosen.")


@dataclass(frozen=True)
class ActivityPolicy:
    default_matter: str = setting("on_site_enforcement", "Type of a new activity (R6.2) until "
                                  "set otherwise.", pattern=r"^[a-z_]+$")
    matters: dict[str, Matter] = setting({}, "The unit's list of matters (R6.1).")


@dataclass(frozen=True)
class AnnouncementPolicy:
    phrases: tuple[Phrase, ...] = setting((), "Spoken when a recording starts (Art. 8, 9).")
    gap_s: float = setting(0.4, "Silence between phrases.", min=0, max=5)
    statement_window_s: float = setting(30.0, "After the announcement, time marked for the "
                                        "officer's statement of purpose, task and officers "
                                        "(R8.4).", min=0, max=600)


@dataclass(frozen=True)
class InterruptionPolicy:
    basis: str = setting("宝丰县人力资源和社会保障局执法音像记录管理制度 第十二条",
                         "The rule a work record cites.")
    prompt: tuple[Phrase, ...] = setting((), "Spoken after a stop, asking for the reason.")
    prompt_window_s: float = setting(30.0, "How long the reason gesture is awaited before it "
                                     "is left pending for the dock.", min=1, max=600)
    confirm_after_s: float = setting(2.5, "Quiet time after the last marker press that "
                                     "confirms the count.", min=0.5, max=10)
    reasons: dict[str, ReasonConfig] = setting({}, "Art. 12's reasons.")


@dataclass(frozen=True)
class PolicyConfig:
    selfcheck: SelfCheckPolicy = field(default_factory=SelfCheckPolicy)
    warnings: WarningsPolicy = field(default_factory=WarningsPolicy)
    stops: StopsPolicy = field(default_factory=StopsPolicy)
    activity: ActivityPolicy = field(default_factory=ActivityPolicy)
    announcement: AnnouncementPolicy = field(default_factory=AnnouncementPolicy)
    interruption: InterruptionPolicy = field(default_factory=InterruptionPolicy)


@dataclass(frozen=True)
class Config:
    device: DeviceConfig
    policy: PolicyConfig
    sources: tuple[str, ...] = ()


# --- loading and validation --------------------------------------------------------------

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _check_value(source: str, key: str, value: Any, kind: type, meta: Mapping[str, Any]) -> Any:
    # bool is an int in Python; TOML keeps them apart and so do we.
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(source, key, f"{value!r} is not {_TYPE_NAMES[kind]}")
    if value != value:  # NaN: no range check can hold it, no setting wants it
        raise ConfigError(source, key, f"{value!r} is not a number")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(source, key, f"{value!r} is not allowed: use one of {allowed}")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(source, key, f"{value!r} is out of range: allowed {_fmt(lo)} to {_fmt(hi)}")
    pattern = meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(source, key, f"{value!r} does not match the form {pattern}")
    return value


def _check_list(source: str, key: str, value: Any, kind: type,
                meta: Mapping[str, Any]) -> tuple[Any, ...]:
    """A list of thresholds (a single value counts as a list of one), highest first; a list
    of strings (names) keeps its order."""
    items = value if isinstance(value, list) else [value]
    checked = [_check_value(source, f"{key}[{i}]", item, kind, meta) for i, item in enumerate(items)]
    if len(set(checked)) != len(checked):
        raise ConfigError(source, key, f"{value!r} names a value twice")
    return tuple(checked) if kind is str else tuple(sorted(checked, reverse=True))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _name(key: str) -> str:
    """A key as TOML writes it, on one line: bare when it can be, else quoted and escaped."""
    if _BARE_KEY.fullmatch(key):
        return key
    text = "".join(c if c.isprintable() and c not in '"\\' else
                   "\\" + c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in key)
    return f'"{text}"'


def _fmt(n: float | None) -> str:
    if n is None:
        return "any"
    return str(int(n)) if float(n).is_integer() else str(n)


def build(cls: type, data: Mapping[str, Any], source: str, prefix: str = "", base: Any = None) -> Any:
    """Make ``cls`` from a TOML table over ``base`` (defaults when None), validating each key."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, prefix.rstrip("."), f"must be a table, got {data!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            allowed = ", ".join(known)
            raise ConfigError(source, prefix + _name(key), f"unknown key (allowed here: {allowed})")
    needed = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    if base is None and needed:
        for name in needed:
            if name not in data:
                raise ConfigError(source, prefix + name, "missing (required here)")
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        kind = hints[name]
        origin, args = get_origin(kind), get_args(kind)
        if is_dataclass(kind):
            values[name] = build(kind, value, source, f"{key}.",
                                 getattr(base if base is not None else cls(), name))
        elif origin is tuple and args and is_dataclass(args[0]):
            if not isinstance(value, list):
                raise ConfigError(source, key, f"must be a list of tables ([[{key}]])")
            values[name] = tuple(build(args[0], item, source, f"{key}[{i}].")
                                 for i, item in enumerate(value))
        elif origin is dict and len(args) == 2 and is_dataclass(args[1]):
            if not isinstance(value, Mapping):
                raise ConfigError(source, key, f"must be a table of tables ([{key}.NAME])")
            values[name] = {k: build(args[1], v, source, f"{key}.{_name(k)}.")
                            for k, v in value.items()}
        elif origin is tuple and args and args[0] in _TYPE_NAMES:
            values[name] = _check_list(source, key, value, args[0], known[name].metadata)
        else:
            values[name] = _check_value(source, key, value, kind, known[name].metadata)
    if base is not None:
        result = replace(base, **values)
    elif needed:
        result = cls(**values)
    else:
        result = replace(cls(), **values)
    _check_whole(result, source, prefix)
    return result


def _check_whole(section: Any, source: str, prefix: str) -> None:
    """Rules that tie several keys of one section together."""
    if isinstance(section, (VideoSection, PhotoSection)):
        for name in ("width", "height"):
            value = getattr(section, name)
            if value % 2:
                raise ConfigError(source, prefix + name, f"{value} must be even (4:2:0 video)")
    if isinstance(section, ButtonsSection):
        pins = [section.record_pin, section.photo_pin, section.marker_pin]
        if len(set(pins)) != len(pins):
            raise ConfigError(source, prefix.rstrip("."), f"two buttons share a pin: {pins}")


def check_policy(policy: PolicyConfig, source: str) -> None:
    """What the regulation needs of a policy file as a whole."""
    if not policy.announcement.phrases:
        raise ConfigError(source, "announcement.phrases",
                          "at least one phrase is required: Art. 9 asks the party be told")
    if not policy.activity.matters:
        raise ConfigError(source, "activity.matters", "the list of matters is empty (R6.1)")
    if policy.activity.default_matter not in policy.activity.matters:
        raise ConfigError(source, "activity.default_matter",
                          f"{policy.activity.default_matter!r} is not one of the matters: "
                          f"{', '.join(policy.activity.matters)}")
    reasons = policy.interruption.reasons
    codes = sorted(r.code for r in reasons.values())
    if codes != [1, 2, 3, 4]:
        raise ConfigError(source, "interruption.reasons",
                          f"needs exactly Art. 12's reasons 1-4 once each, got codes {codes}")
    presses = [r.presses for r in reasons.values() if r.presses]
    if len(set(presses)) != len(presses):
        raise ConfigError(source, "interruption.reasons",
                          f"two reasons share a press count: {sorted(presses)}")
    for name, reason in reasons.items():
        if (reason.code == 1) != (reason.presses == 0):
            raise ConfigError(source, f"interruption.reasons.{name}.presses",
                              "reason 1 is recorded by the device alone (presses = 0); "
                              "reasons 2-4 need a press count")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission
        raise ConfigError(str(path), "", f"cannot be read ({exc.strerror})") from None


def load(device_path: Path | None = None, policy_path: Path | None = None,
         overrides: Mapping[str, Any] | None = None, overrides_source: str = "overrides") -> Config:
    """Load device and policy configuration; shipped defaults where a path is not given.

    ``overrides`` is a device.toml-shaped table applied last (a scenario's ``[config]``).
    """
    device_path = device_path or CONFIG_DIR / "device.toml"
    policy_path = policy_path or CONFIG_DIR / "policy.toml"
    device = build(DeviceConfig, read_toml(device_path), str(device_path))
    if overrides:
        device = build(DeviceConfig, overrides, overrides_source, base=device)
    policy = build(PolicyConfig, read_toml(policy_path), str(policy_path))
    check_policy(policy, str(policy_path))
    return Config(device, policy, (str(device_path), str(policy_path)))


def _reference_rows(cls: type, prefix: str) -> list[str]:
    rows = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        meta = f.metadata
        if meta.get("choices"):
            allowed = ", ".join(f"`{c}`" for c in meta["choices"])
        elif meta.get("min") is not None or meta.get("max") is not None:
            allowed = f"{_fmt(meta.get('min'))} – {_fmt(meta.get('max'))}"
        elif meta.get("pattern"):
            allowed = f"`{meta['pattern']}`"
        else:
            allowed = ""
        default = f.default if f.default is not MISSING else None
        items = get_args(hints[f.name])
        of_tables = bool(items) and is_dataclass(items[0])  # phrases, reasons: the file has them
        if isinstance(default, tuple) and not of_tables:
            default_text = f"`{list(default)}`"
        elif f.default_factory is not MISSING or isinstance(default, tuple):
            default_text = "see file"
        elif default is None:
            default_text = "required"
        elif isinstance(default, bool):
            default_text = f"`{str(default).lower()}`"
        else:
            default_text = f"`{default!r}`"
        rows.append(f"| `{prefix}{f.name}` | {default_text} | {allowed} | {meta.get('doc', '')} |")
        origin, args = get_origin(hints[f.name]), get_args(hints[f.name])
        if origin is tuple and args and is_dataclass(args[0]):
            rows += _reference_rows(args[0], f"{prefix}{f.name}[].")
        elif origin is dict and len(args) == 2 and is_dataclass(args[1]):
            rows += _reference_rows(args[1], f"{prefix}{f.name}.NAME.")
    return rows


def reference_markdown(files: tuple[tuple[str, type], ...] | None = None) -> str:
    """The configuration reference table for the README, from the dataclasses themselves:
    ``device.toml`` and ``policy.toml``, or the (file name, root dataclass) pairs given
    (``scripts/update_readme.py`` adds the dock's, which lives above this package)."""
    lines: list[str] = []
    for file_name, root in files or (("device.toml", DeviceConfig), ("policy.toml", PolicyConfig)):
        lines += [f"**`config/{file_name}`**", "", "| key | default | allowed | meaning |",
                  "|---|---|---|---|"]
        for section in fields(root):
            lines += _reference_rows(get_type_hints(root)[section.name], f"{section.name}.")
        lines.append("")
    return "\n".join(lines)
