"""Time you can trust (issue 15, defect 1): a GNSS time reaches the clock only when plausible.

The issue's sentence — a valid fix dated 1999-08-22, the day of the first GPS week rollover —
must reach the device clock in no path: not through the reader and the agent's edge, not
through ``AgentCore``, not through ``DeviceClock.correct``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bodycam.simulation import simulation
from device.backends.nmea import NmeaAssembler
from device.clock import DeviceClock, TimeSource
from device.timetrust import (BUILD_UTC, CONFIRM_EPOCHS, GPS_ERA_S, TimeTrust,
                              unroll_week_rollover)
from firmware_py.agent.core import AgentCore
from firmware_py.agent.events import ClockOffsetMeasured, CorrectClock, Log
from firmware_py.agent.startup import TrustedTimeMemory
from firmware_py.evidence import audit
from simulator.harness import scenario as sc

ROLLOVER_RMC = "$GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59"
NOW = datetime(2026, 12, 2, 0, 30, tzinfo=timezone.utc).timestamp()


def rollover_fix():
    assembler = NmeaAssembler()
    fixes = assembler.feed(ROLLOVER_RMC, 10.0) + assembler.finish()
    assert len(fixes) == 1
    return fixes[0]


def test_issue_sentence_reads_as_a_valid_1999_fix():
    fix = rollover_fix()
    assert fix.has_position
    assert fix.time_utc == datetime(1999, 8, 22, 0, 2, 31, 420000, tzinfo=timezone.utc)


def test_core_never_corrects_the_clock_to_a_week_rollover_date(config):
    from tests.test_core import ready
    core = ready(config)
    fix = rollover_fix()
    reference = fix.time_utc.timestamp()
    offset = NOW - reference  # 27 years "fast" by this receiver's account
    actions = core.handle(ClockOffsetMeasured(TimeSource.GNSS, offset, reference, 3.0))
    assert not any(isinstance(a, CorrectClock) for a in actions)
    rejected = [a for a in actions if isinstance(a, Log) and a.kind == "clock_time_rejected"]
    assert rejected and rejected[0].fields["reference"].startswith("1999-08-22")
    assert core.clock_source is TimeSource.RTC
    # A plausible time still corrects the clock.
    assert core.handle(ClockOffsetMeasured(TimeSource.GNSS, 2.0, NOW, 4.0)) == [
        CorrectClock(TimeSource.GNSS, NOW, 4.0)]


def test_device_clock_refuses_a_reference_before_the_build_date():
    t = [100.0]
    clock = DeviceClock(wall=lambda: NOW + t[0], monotonic=lambda: t[0], utc_offset_s=0)
    before = clock.now().utc
    correction = clock.correct(rollover_fix().time_utc.timestamp(), t[0], TimeSource.GNSS)
    assert correction.applied is False
    assert clock.now().utc == before and clock.correction_s == 0.0
    assert clock.source is TimeSource.RTC
    assert clock.correct(float("nan"), t[0], TimeSource.GNSS).applied is False
    assert clock.correct(NOW + t[0] - 2.0, t[0], TimeSource.GNSS).applied is True
    assert clock.now().utc == pytest.approx(NOW + t[0] - 2.0)


def test_rollover_date_is_rejected_whatever_the_device_clock_says():
    reported = rollover_fix().time_utc.timestamp()
    # A plausible device clock: unrolled by two eras (2038-11-21) it disagrees.
    trust = TimeTrust()
    for i in range(5):
        verdict = trust.check(reported + i, 10.0 + i, NOW + i)
        assert not verdict.plausible and not verdict.accepted
    assert verdict.eras == 2 and "rollover" in verdict.reason
    # A device clock that is itself implausible (RTC lost, 1970): nothing to confirm an
    # unrolled time against, so it waits for a time that needs no unrolling.
    for i in range(5):
        assert not trust.check(reported + i, 10.0 + i, 1000.0 + i).plausible


def test_week_rollover_corrected_when_the_clock_agrees():
    truth = NOW
    reported = truth - GPS_ERA_S  # an old receiver: 2007-04-... for 2026-12-02
    assert unroll_week_rollover(reported, BUILD_UTC) == (pytest.approx(truth), 1)
    trust = TimeTrust()
    verdicts = [trust.check(reported + i, 50.0 + i, truth + i + 3.0) for i in range(CONFIRM_EPOCHS)]
    assert [v.accepted for v in verdicts] == [False] * (CONFIRM_EPOCHS - 1) + [True]
    assert verdicts[-1].utc == pytest.approx(truth + CONFIRM_EPOCHS - 1)
    assert verdicts[-1].eras == 1


def test_time_needs_consecutive_agreeing_epochs():
    trust = TimeTrust()
    assert not trust.check(NOW, 1.0, NOW).accepted
    assert not trust.check(NOW + 1, 2.0, NOW).accepted
    assert not trust.check(NOW + 30, 3.0, NOW).accepted  # jumps: the count starts again
    assert not trust.check(NOW + 31, 4.0, NOW).accepted
    assert trust.check(NOW + 32, 5.0, NOW).accepted


def test_time_before_the_last_trusted_time_is_rejected(tmp_path):
    memory = TrustedTimeMemory(tmp_path / "trusted-time.json")
    assert memory.load() is None
    assert memory.save(NOW, 5.0, "gnss")
    assert not memory.save(NOW + 10, 15.0, "gnss")  # rate-limited
    trust = TimeTrust(TrustedTimeMemory(tmp_path / "trusted-time.json").load())  # next boot
    assert trust.last_trusted_utc == NOW
    a_day_earlier = NOW - 86400
    verdict = trust.check(a_day_earlier, 1.0, NOW + 60)
    assert not verdict.plausible
    assert trust.check(NOW + 60, 2.0, NOW + 61).plausible
    (tmp_path / "trusted-time.json").write_text("{not json")
    assert TrustedTimeMemory(tmp_path / "trusted-time.json").load() is None


def test_time_beyond_one_era_after_the_build_date_is_rejected():
    assert not TimeTrust().check(BUILD_UTC + GPS_ERA_S + 86400, 1.0, NOW).plausible


@pytest.mark.req("R7.4")
def test_rollover_sentence_through_the_agent_never_reaches_the_clock(tmp_path):
    """The receiver on the simulated pty has no fix of its own (first fix after the
    shift); the only position comes with the issue's 1999 date, every second."""
    s = sc.parse({"scenario": {"name": "rollover", "duration": "20s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": {"video": {"width": 320, "height": 180, "fps": 15}},
                  "clock": {"initial_error_s": 3.5}, "gnss": {"time_to_first_fix": 600}},
                 "t.toml")
    sim = simulation(s, tmp_path)
    sim.start()
    start = datetime.fromisoformat("2026-11-29T01:00:00+00:00").timestamp()
    for second in range(1, 16):
        sim.advance_to(second + 0.3)
        when = datetime(1999, 8, 22, 0, 2, 31 + second, tzinfo=timezone.utc)
        body = f"GPRMC,{when:%H%M%S}.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A"
        checksum = 0
        for c in body:
            checksum ^= ord(c)
        sim.world.gnss.send_raw(f"${body}*{checksum:02X}\r\n".encode())
    sim.advance_to(18)
    clock = sim.agent.hw.clock
    assert clock.correction_s == 0.0 and clock.source is TimeSource.RTC
    assert abs(clock.now().utc - (start + 18 + 3.5)) < 1.0
    sim.finish()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    assert not [e for e in entries if e["kind"] == "clock_corrected"]
    rejected = [e for e in entries if e["kind"] == "gnss_time_rejected"]
    assert rejected and rejected[0]["fields"]["reported"].startswith("1999-08-22")
    assert len(rejected) < 5  # logged when the reason changes or once a minute, not each epoch
    assert not (tmp_path / "device" / "trusted-time.json").exists()


def test_trusted_time_is_kept_after_a_gnss_correction(tmp_path):
    s = sc.parse({"scenario": {"name": "trusted", "duration": "20s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": {"video": {"width": 320, "height": 180, "fps": 15}},
                  "clock": {"initial_error_s": 3.5}, "gnss": {"time_to_first_fix": 2}},
                 "t.toml")
    sim = simulation(s, tmp_path)
    sim.start()
    sim.advance_to(12)
    sim.finish()
    kept = json.loads((tmp_path / "device" / "trusted-time.json").read_text())
    start = datetime.fromisoformat("2026-11-29T01:00:00+00:00").timestamp()
    assert start < kept["utc"] < start + timedelta(seconds=13).total_seconds()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    assert [e for e in entries if e["kind"] == "clock_corrected"]
