"""Pre-use self-check (Art. 7, R7.1–R7.6): readings in, a report out, no I/O.

The agent gathers ``SelfCheckReadings`` from the hardware (watching camera and microphone
for a short probe window) and ``evaluate`` judges them against ``config/policy.toml``.
Each check is *pass*, *warn* (usable, but the officer should know: a clock corrected from
GNSS, a clock no trusted source has confirmed) or *fail*. A failed check is reported on
the indicators, by voice and in the audit log — and never blocks recording (R7.6).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from device.clock import TimeSource, Timestamp
from device.gnss import GnssFix
from device.power import PowerReading
from device.storage import StorageReading
from firmware_py.config import DeviceConfig, SelfCheckPolicy


class CheckReason(StrEnum):
    """When R7.1 asks for a check."""

    BOOT = "boot"
    LEFT_DOCK = "left_dock"
    FIRST_RECORDING = "first_recording"
    REQUESTED = "requested"


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class ClockReading:
    """The clock against a trusted source, as measured (before any correction)."""

    offset_s: float | None  # device minus reference; None when no trusted source was seen
    reference: TimeSource | None
    corrected: bool = False  # the offset was above the correction threshold and was applied
    rtc_problem: str = ""  # the RTC cannot be read or written (the next boot's holdover)


@dataclass(frozen=True)
class SelfCheckReadings:
    power: PowerReading | None
    power_error: str
    storage: StorageReading | None
    storage_error: str
    clock: ClockReading
    probe_seconds: float
    camera_frames: int
    camera_error: str
    microphone_blocks: int
    microphone_expected_blocks: int
    microphone_dbfs: float
    microphone_error: str
    gnss_sentences: int
    gnss_fix: GnssFix | None
    gnss_fix_age_s: float | None
    gnss_error: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SelfCheckReport:
    reason: CheckReason
    at: Timestamp
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.status is not Status.FAIL for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAIL)

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": str(self.reason),
            "at": self.at.to_json(),
            "passed": self.passed,
            "checks": [{"name": c.name, "status": str(c.status), "message": c.message,
                        "values": c.values} for c in self.checks],
        }

    def summary(self) -> str:
        """A few lines an officer or custodian reads at a glance."""
        head = "SELF-CHECK PASSED" if self.passed else "SELF-CHECK FAILED"
        lines = [f"{head} ({self.reason}, {self.at.isoformat()})"]
        for c in self.checks:
            lines.append(f"  {c.status.upper():4}  {c.name:<10} {c.message}")
        if not self.passed:
            lines.append("  Recording is still possible; the failure is logged.")
        return "\n".join(lines)


def evaluate(readings: SelfCheckReadings, device: DeviceConfig, policy: SelfCheckPolicy,
             reason: CheckReason, at: Timestamp) -> SelfCheckReport:
    checks = (
        _battery(readings, device, policy),
        _storage(readings, device, policy),
        _clock(readings, policy),
        _camera(readings, device, policy),
        _microphone(readings, policy),
        _gnss(readings, policy),
    )
    return SelfCheckReport(reason, at, checks)


def recording_hours_left(power: PowerReading, device: DeviceConfig) -> float:
    """Hours of recording the remaining charge allows at the configured recording draw."""
    energy = power.energy_wh
    if energy is None:
        energy = device.power.capacity_wh * power.capacity_percent / 100.0
    return energy / device.power.recording_w


def recording_hours_free(storage: StorageReading, device: DeviceConfig,
                         reserve_bytes: float = 0.0) -> float:
    """Hours of recording that fit in the free space at the configured bitrates; with
    ``reserve_bytes``, in the free space above that reserve (until the storage stop)."""
    bytes_per_hour = device.recording_bitrate / 8 * 3600
    return max(0.0, storage.free_bytes - reserve_bytes) / bytes_per_hour


def _battery(r: SelfCheckReadings, device: DeviceConfig, p: SelfCheckPolicy) -> Check:
    if r.power is None:
        return Check("battery", Status.FAIL, f"cannot read the battery: {r.power_error}")
    hours = recording_hours_left(r.power, device)
    values = {"percent": round(r.power.capacity_percent, 1), "recording_hours": round(hours, 2),
              "status": str(r.power.status), "external_power": r.power.external_power,
              "min_percent": p.battery_min_percent,
              "min_recording_hours": p.battery_min_recording_hours}
    text = f"{r.power.capacity_percent:.0f} % ({hours:.1f} h of recording)"
    problems = []
    if r.power.capacity_percent < p.battery_min_percent:
        problems.append(f"below {p.battery_min_percent:g} %")
    if hours < p.battery_min_recording_hours:
        problems.append(f"less than {p.battery_min_recording_hours:g} h")
    if problems:
        return Check("battery", Status.FAIL, f"{text}: {', '.join(problems)}", values)
    return Check("battery", Status.PASS, text, values)


def _storage(r: SelfCheckReadings, device: DeviceConfig, p: SelfCheckPolicy) -> Check:
    if r.storage is None:
        return Check("storage", Status.FAIL, f"cannot read storage: {r.storage_error}")
    hours = recording_hours_free(r.storage, device)
    values = {"free_bytes": r.storage.free_bytes, "total_bytes": r.storage.total_bytes,
              "recording_hours": round(hours, 2), "bitrate": device.recording_bitrate,
              "min_recording_hours": p.storage_min_recording_hours}
    text = f"{r.storage.free_bytes / 1e9:.2f} GB free ({hours:.1f} h of recording)"
    if hours < p.storage_min_recording_hours:
        return Check("storage", Status.FAIL,
                     f"{text}: less than {p.storage_min_recording_hours:g} h", values)
    return Check("storage", Status.PASS, text, values)


def _clock(r: SelfCheckReadings, p: SelfCheckPolicy) -> Check:
    check = _clock_offset(r.clock, p)
    problem = r.clock.rtc_problem
    if not problem:
        return check
    # Usable now, but the next boot starts without a good time: the officer should know.
    status = Status.WARN if check.status is Status.PASS else check.status
    return Check("clock", status, f"{check.message}; RTC: {problem}",
                 {**check.values, "rtc_problem": problem})


def _clock_offset(c: ClockReading, p: SelfCheckPolicy) -> Check:
    if c.offset_s is None or c.reference is None:
        return Check("clock", Status.WARN,
                     "not confirmed: no GNSS time or dock seen yet", {"offset_s": None})
    values = {"offset_s": round(c.offset_s, 3), "reference": str(c.reference),
              "corrected": c.corrected, "max_offset_s": p.clock_max_offset_s}
    text = f"{c.offset_s:+.2f} s from {c.reference} time"
    if abs(c.offset_s) <= p.clock_max_offset_s:
        suffix = ", corrected" if c.corrected else ""
        return Check("clock", Status.PASS, text + suffix, values)
    if c.corrected:
        return Check("clock", Status.WARN, f"{text}: over {p.clock_max_offset_s:g} s, "
                     "corrected and logged", values)
    return Check("clock", Status.FAIL, f"{text}: over {p.clock_max_offset_s:g} s", values)


def _camera(r: SelfCheckReadings, device: DeviceConfig, p: SelfCheckPolicy) -> Check:
    expected = device.video.fps * r.probe_seconds
    values = {"frames": r.camera_frames, "expected": round(expected),
              "probe_seconds": r.probe_seconds}
    if r.camera_error:
        return Check("camera", Status.FAIL, r.camera_error, values)
    if r.camera_frames < p.camera_min_frame_ratio * expected:
        return Check("camera", Status.FAIL, f"{r.camera_frames} frames in "
                     f"{r.probe_seconds:g} s, expected {expected:.0f}", values)
    return Check("camera", Status.PASS, f"{r.camera_frames} frames in {r.probe_seconds:g} s",
                 values)


def _microphone(r: SelfCheckReadings, p: SelfCheckPolicy) -> Check:
    level = r.microphone_dbfs
    values = {"blocks": r.microphone_blocks, "expected": r.microphone_expected_blocks,
              "level_dbfs": None if math.isinf(level) else round(level, 1),
              "min_dbfs": p.microphone_min_dbfs}
    if r.microphone_error:
        return Check("microphone", Status.FAIL, r.microphone_error, values)
    if r.microphone_blocks < 0.8 * r.microphone_expected_blocks:
        return Check("microphone", Status.FAIL, f"{r.microphone_blocks} audio blocks, "
                     f"expected {r.microphone_expected_blocks}", values)
    if math.isinf(level) or level < p.microphone_min_dbfs:
        shown = "digital silence" if math.isinf(level) else f"{level:.0f} dBFS"
        return Check("microphone", Status.FAIL, f"hears nothing ({shown}, needs "
                     f"{p.microphone_min_dbfs:g} dBFS)", values)
    return Check("microphone", Status.PASS, f"level {level:.0f} dBFS", values)


def _gnss(r: SelfCheckReadings, p: SelfCheckPolicy) -> Check:
    fix = r.gnss_fix
    values: dict[str, Any] = {"sentences": r.gnss_sentences, "fix_required": p.gnss_fix_required}
    if fix is not None:
        values.update({k: v for k, v in asdict(fix).items()
                       if k in ("latitude", "longitude", "satellites", "hdop", "quality")})
        values["fix_age_s"] = None if r.gnss_fix_age_s is None else round(r.gnss_fix_age_s, 1)
    if r.gnss_error:
        return Check("gnss", Status.FAIL, r.gnss_error, values)
    if r.gnss_sentences == 0:
        return Check("gnss", Status.FAIL, "receiver silent: no NMEA received", values)
    if fix is not None and fix.has_position:
        return Check("gnss", Status.PASS, f"fix {fix.latitude:.5f}, {fix.longitude:.5f}, "
                     f"{fix.satellites} satellites, HDOP {fix.hdop}", values)
    status = Status.FAIL if p.gnss_fix_required else Status.PASS
    return Check("gnss", status, "receiver talking, no fix yet", values)
