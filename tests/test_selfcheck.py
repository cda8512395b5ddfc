"""Self-check rules (R7.2–R7.5), each at and across its threshold."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from device.clock import TimeSource, Timestamp
from device.gnss import GnssFix
from device.power import ChargeStatus, PowerReading
from device.storage import StorageReading
from firmware_py.agent.selfcheck import (CheckReason, ClockReading, SelfCheckReadings, Status,
                                   evaluate)

AT = Timestamp(1_800_000_000.0, 28800, 12.0, TimeSource.GNSS)
FIX = GnssFix(received_at=11.5, time_utc=datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc),
              valid=True, latitude=33.8683, longitude=113.0542, quality=1, satellites=9,
              hdop=0.9, mode=3)


def readings(**changes) -> SelfCheckReadings:
    good = SelfCheckReadings(
        power=PowerReading(80.0, ChargeStatus.DISCHARGING, False, 7.6, 14.8, 18.5, 2.2),
        power_error="",
        storage=StorageReading("/e", 64_000_000_000, 32_000_000_000), storage_error="",
        clock=ClockReading(0.3, TimeSource.GNSS), probe_seconds=1.0,
        camera_frames=30, camera_error="", microphone_blocks=50, microphone_expected_blocks=50,
        microphone_dbfs=-45.0, microphone_error="", gnss_sentences=40, gnss_fix=FIX,
        gnss_fix_age_s=0.5)
    return replace(good, **changes)


def check(config, name, **changes):
    report = evaluate(readings(**changes), config.device, config.policy.selfcheck,
                      CheckReason.BOOT, AT)
    return next(c for c in report.checks if c.name == name), report


@pytest.mark.req("R7.5")
def test_all_good_passes(config):
    report = evaluate(readings(), config.device, config.policy.selfcheck, CheckReason.BOOT, AT)
    assert report.passed and all(c.status is Status.PASS for c in report.checks)
    assert [c.name for c in report.checks] == ["battery", "storage", "clock", "camera",
                                               "microphone", "gnss"]
    assert report.to_json()["passed"] is True
    assert "SELF-CHECK PASSED" in report.summary()


@pytest.mark.req("R7.2")
@pytest.mark.parametrize("percent, status", [(30.0, Status.PASS), (29.9, Status.FAIL)])
def test_battery_percent_threshold(config, percent, status):
    # Energy high enough that only the percentage decides.
    power = PowerReading(percent, ChargeStatus.DISCHARGING, False, energy_wh=18.0)
    c, report = check(config, "battery", power=power)
    assert c.status is status
    assert report.passed is (status is Status.PASS)


@pytest.mark.req("R7.2")
@pytest.mark.parametrize("energy, status", [(7.4, Status.PASS), (7.39, Status.FAIL)])
def test_battery_recording_time_threshold(config, energy, status):
    # 2 h at 3.7 W recording draw needs 7.4 Wh, whatever the percentage says.
    power = PowerReading(90.0, ChargeStatus.DISCHARGING, False, energy_wh=energy)
    c, _ = check(config, "battery", power=power)
    assert c.status is status
    if status is Status.FAIL:
        assert "less than 2 h" in c.message


@pytest.mark.req("R7.2")
def test_battery_time_from_percentage_when_gauge_has_no_energy(config):
    # 18.5 Wh × 40 % = 7.4 Wh → exactly 2 h at 3.7 W.
    c, _ = check(config, "battery", power=PowerReading(40.0, ChargeStatus.DISCHARGING, False))
    assert c.status is Status.PASS and c.values["recording_hours"] == 2.0
    c, _ = check(config, "battery", power=PowerReading(39.0, ChargeStatus.DISCHARGING, False))
    assert c.status is Status.FAIL


@pytest.mark.req("R7.2")
def test_unreadable_battery_fails_with_reason(config):
    c, _ = check(config, "battery", power=None, power_error="no battery under /sys")
    assert c.status is Status.FAIL and "no battery under /sys" in c.message


@pytest.mark.req("R7.3")
@pytest.mark.parametrize("hours, status", [(4.0, Status.PASS), (3.99, Status.FAIL)])
def test_storage_threshold_in_hours_at_configured_bitrate(config, hours, status):
    rate = config.device.recording_bitrate / 8  # bytes per second
    free = int(hours * 3600 * rate)
    c, _ = check(config, "storage", storage=StorageReading("/e", 10 * free, free))
    assert c.status is status


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("offset, corrected, status", [
    (2.0, False, Status.PASS), (-2.0, False, Status.PASS), (2.01, False, Status.FAIL),
    (-47.0, True, Status.WARN), (1.0, True, Status.PASS),
])
def test_clock_offset_threshold(config, offset, corrected, status):
    c, report = check(config, "clock", clock=ClockReading(offset, TimeSource.GNSS, corrected))
    assert c.status is status
    assert report.passed is (status is not Status.FAIL)


@pytest.mark.req("R7.4")
def test_clock_without_trusted_source_warns_only(config):
    c, report = check(config, "clock", clock=ClockReading(None, None))
    assert c.status is Status.WARN and report.passed


@pytest.mark.req("R7.5")
@pytest.mark.parametrize("frames, status", [(24, Status.PASS), (23, Status.FAIL), (0, Status.FAIL)])
def test_camera_frame_ratio(config, frames, status):
    c, _ = check(config, "camera", camera_frames=frames)  # 0.8 × 30 fps × 1 s = 24
    assert c.status is status


@pytest.mark.req("R7.5")
def test_camera_error_fails(config):
    c, _ = check(config, "camera", camera_error="camera: no backend", camera_frames=0)
    assert c.status is Status.FAIL and "no backend" in c.message


@pytest.mark.req("R7.5")
@pytest.mark.parametrize("level, status", [(-70.0, Status.PASS), (-70.1, Status.FAIL),
                                           (float("-inf"), Status.FAIL)])
def test_microphone_level(config, level, status):
    c, _ = check(config, "microphone", microphone_dbfs=level)
    assert c.status is status


@pytest.mark.req("R7.5")
def test_microphone_missing_blocks_fail(config):
    c, _ = check(config, "microphone", microphone_blocks=39)
    assert c.status is Status.FAIL
    c, _ = check(config, "microphone", microphone_blocks=40)
    assert c.status is Status.PASS


@pytest.mark.req("R7.5")
def test_gnss_states(config):
    c, _ = check(config, "gnss")
    assert c.status is Status.PASS and "fix 33.86830" in c.message
    no_fix = replace(FIX, valid=False, latitude=None, longitude=None, quality=0)
    c, _ = check(config, "gnss", gnss_fix=no_fix)
    assert c.status is Status.PASS and "no fix" in c.message
    c, _ = check(config, "gnss", gnss_sentences=0, gnss_fix=None)
    assert c.status is Status.FAIL and "silent" in c.message


@pytest.mark.req("R7.5")
def test_gnss_fix_required_by_policy(config):
    policy = replace(config.policy.selfcheck, gnss_fix_required=True)
    no_fix = replace(FIX, valid=False, latitude=None, longitude=None, quality=0)
    report = evaluate(readings(gnss_fix=no_fix), config.device, policy, CheckReason.BOOT, AT)
    assert not report.passed and report.failed[0].name == "gnss"


@pytest.mark.req("R7.6")
def test_failed_report_says_recording_still_possible(config):
    _, report = check(config, "battery", power=PowerReading(5.0, ChargeStatus.DISCHARGING, False))
    assert not report.passed
    assert "Recording is still possible" in report.summary()
