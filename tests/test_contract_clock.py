"""Contract of the clock's parts, on the simulator's and the real backends alike.

- **RTC** (``device.rtc.Rtc``): the simulator's RTC, the Linux RTC class
  (``LinuxRtc``: sysfs read, the packed ``RTC_SET_TIME`` handed to a kernel stand-in,
  and a real ioctl that the kernel refuses) and a DS3231 over I²C (its register file):
  whole seconds, a write read back, time counted on, a lost time reported as not valid
  and cured by a write, a refused write named.
- **Clock** (``device.clock.Clock``): ``DeviceClock`` on the simulator's virtual and
  drifting wall clocks, and on the system's own clocks (real time, a fraction of a second).
- **Holdover**: the agent's ``RtcKeeper`` against each pair — the simulated RTC with the
  simulated clock, the Linux RTC class with the system clock — checks at boot, writes
  after a trusted time, and sets a clock from an RTC it wrote.

Rigs for the hardware this machine lacks are in ``tests/rtc_rigs.py``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

import pytest

from device.clock import Clock, DeviceClock, TimeSource
from device.hardware import HardwareError
from device.rtc import Rtc
from device.timetrust import BUILD_UTC
from firmware_py.agent.rtckeeping import RtcKeeper
from firmware_py.config import ClockSection
from simulator.clock import DriftingWallClock, VirtualClock
from simulator.rtc import SimRtc
from tests.rtc_rigs import T0, Ds3231Chip, RtcClassTree

pytestmark = pytest.mark.req("R7.4")


@dataclass
class RtcRig:
    rtc: Rtc
    pass_time: Callable[[float], None]
    lose_time: Callable[[], None]
    refuse_writes: Callable[[], None]


def sim_rig(tmp_path) -> RtcRig:
    clock = VirtualClock()
    rtc = SimRtc(DriftingWallClock(clock, T0, initial_error_s=-40.0))

    def refuse() -> None:
        rtc.write_error = "RTC_SET_TIME refused (EACCES): no CAP_SYS_TIME"

    return RtcRig(rtc, clock.advance, lambda: setattr(rtc, "lost", True), refuse)


def linux_rig(tmp_path) -> RtcRig:
    tree = RtcClassTree(tmp_path, utc=T0 - 40)
    return RtcRig(tree.rtc, tree.pass_time, tree.lose_time, tree.refuse_writes)


def ds3231_rig(tmp_path) -> RtcRig:
    chip = Ds3231Chip(utc=T0 - 40)
    return RtcRig(chip.rtc, chip.pass_time, chip.lose_time, chip.refuse_writes)


@pytest.fixture(params=[sim_rig, linux_rig, ds3231_rig], ids=["sim", "linux", "ds3231"])
def rtc_rig(request, tmp_path):
    return request.param(tmp_path)


def test_every_rtc_counts_whole_seconds_from_what_was_written(rtc_rig):
    rtc = rtc_rig.rtc
    assert isinstance(rtc, Rtc) and rtc.name
    first = rtc.read()
    assert first.valid and first.utc == int(first.utc)
    rtc.write(T0 + 0.4)
    assert rtc.read().utc == T0 and rtc.read().midpoint_utc == T0 + 0.5
    rtc_rig.pass_time(2.7)
    assert rtc.read().utc == T0 + 2  # the start of the second it is in
    rtc.write(T0 + 3600.6)  # rounded, not truncated
    assert rtc.read().utc == T0 + 3601


def test_every_rtc_says_when_it_lost_its_time_and_a_write_cures_it(rtc_rig):
    rtc = rtc_rig.rtc
    rtc_rig.lose_time()
    lost = rtc.read()
    assert not lost.valid and lost.problem
    rtc.write(T0)
    assert rtc.read().valid and rtc.read().utc == T0


def test_every_rtc_names_a_refused_write_and_keeps_its_time(rtc_rig):
    rtc = rtc_rig.rtc
    rtc.write(T0)
    rtc_rig.refuse_writes()
    with pytest.raises(HardwareError, match="RTC"):
        rtc.write(T0 + 500)
    try:
        assert rtc.read().utc == T0
    except HardwareError as exc:  # the DS3231's refusal is a dead bus: reads fail too
        assert "DS3231" in str(exc)


# --- the device clock -----------------------------------------------------------------

@dataclass
class ClockRig:
    clock: Clock
    pass_time: Callable[[float], None]
    slack_s: float  # how far real time may stray from what was asked


def sim_clock() -> ClockRig:
    virtual = VirtualClock(100.0)
    wall = DriftingWallClock(virtual, T0, initial_error_s=-95.0)
    return ClockRig(DeviceClock(wall=wall, monotonic=virtual, utc_offset_s=28800),
                    virtual.advance, 1e-6)  # float seconds since the epoch: ~1e-7 apart


def system_clock() -> ClockRig:
    return ClockRig(DeviceClock(utc_offset_s=28800), time.sleep, 0.25)  # a loaded machine oversleeps


@pytest.mark.parametrize("make", [sim_clock, pytest.param(system_clock, marks=pytest.mark.realtime)],
                         ids=["sim", "system"])
def test_every_clock_keeps_wall_and_monotonic_time_and_takes_corrections(make):
    rig = make()
    clock = rig.clock
    assert isinstance(clock, Clock)
    assert clock.source is TimeSource.RTC and clock.correction_s == 0.0
    before = clock.now()
    rig.pass_time(0.2)
    after = clock.now()
    assert after.utc_offset_s == 28800 and after.source is TimeSource.RTC
    assert 0.2 <= after.monotonic - before.monotonic <= 0.2 + rig.slack_s
    assert after.utc - before.utc == pytest.approx(after.monotonic - before.monotonic,
                                                   abs=rig.slack_s)
    # A reference 7 s behind the device, true at this monotonic time: offset +7, corrected.
    at = clock.monotonic()
    reference = clock.now().utc - 7.0
    rig.pass_time(0.1)
    assert clock.offset_from(reference, at) == pytest.approx(7.0, abs=rig.slack_s)
    correction = clock.correct(reference, at, TimeSource.GNSS)
    assert correction.applied and correction.offset_before_s == pytest.approx(7.0, abs=rig.slack_s)
    assert clock.source is TimeSource.GNSS
    assert clock.offset_from(reference, at) == pytest.approx(0.0, abs=rig.slack_s)
    assert clock.correction_s == pytest.approx(-7.0, abs=rig.slack_s)
    # Never a time before the firmware's build date.
    refused = clock.correct(BUILD_UTC - 86400, clock.monotonic(), TimeSource.DOCK)
    assert not refused.applied and clock.source is TimeSource.GNSS
    # A correction carried over from an earlier run moves the wall time by itself only.
    start = clock.now().utc
    clock.resume_correction(clock.correction_s + 12.0)
    assert clock.now().utc - start == pytest.approx(12.0, abs=rig.slack_s)


# --- holdover: the RTC against the device clock, as the agent uses them ------------------

@dataclass
class HoldoverRig:
    clock: DeviceClock
    rtc: Rtc
    set_rtc_error: Callable[[float], None]  # the RTC off from the device clock by this
    pass_time: Callable[[float], None]


def sim_holdover(tmp_path) -> HoldoverRig:
    virtual = VirtualClock(50.0)
    wall = DriftingWallClock(virtual, T0, initial_error_s=-95.0, drift_ppm=20)
    rtc = SimRtc(wall)
    clock = DeviceClock(wall=wall, monotonic=virtual, utc_offset_s=0)
    return HoldoverRig(clock, rtc, lambda error: rtc.write(clock.now().utc + error),
                       virtual.advance)


def linux_holdover(tmp_path) -> HoldoverRig:
    clock = DeviceClock(utc_offset_s=0)
    tree = RtcClassTree(tmp_path, utc=float(int(time.time())))

    def set_error(error: float) -> None:
        tree.utc = float(int(clock.now().utc + error))
        tree.pass_time(0)

    def pass_time(seconds: float) -> None:  # the RTC stand-in counts with the system clock
        time.sleep(seconds)
        tree.pass_time(seconds)
    return HoldoverRig(clock, tree.rtc, set_error, pass_time)


def written(keeper: RtcKeeper, pass_time: Callable[[float], None]) -> list:
    """Run the agent's loop (every 10 ms) until the keeper's pending write is made."""
    for _ in range(300):
        entries = keeper.tick()
        if entries:
            return entries
        pass_time(0.01)
    raise AssertionError("no write within 3 s")


@pytest.mark.parametrize("make", [sim_holdover,
                                  pytest.param(linux_holdover, marks=pytest.mark.realtime)],
                         ids=["sim", "linux"])
def test_the_rtc_is_checked_at_boot_written_after_trusted_time_and_held_over(make, tmp_path):
    rig = make(tmp_path)
    state = tmp_path / "rtc.json"

    def keeper() -> RtcKeeper:
        return RtcKeeper(rig.rtc, rig.clock, ClockSection(), state, lambda: BUILD_UTC)

    rig.set_rtc_error(0.2)
    assert [kind for kind, _ in keeper().at_boot()] == ["rtc_checked"]
    # Off by 30 s, never written from a trusted time: logged, not used.
    rig.set_rtc_error(30.0)
    (kind, facts), = keeper().at_boot()
    assert kind == "rtc_disagrees" and not facts["used"]
    assert facts["difference_s"] == pytest.approx(30.0, abs=1.0)
    assert "never written" in facts["reason"]
    # A trusted time: the RTC is written with the device's time, as its next second begins.
    first = keeper()
    assert first.trusted(TimeSource.GNSS) == []
    (kind, facts), = written(first, rig.pass_time)
    assert kind == "rtc_written" and facts["error_before_s"] == pytest.approx(30.0, abs=1.0)
    saved = json.loads(state.read_text())
    assert saved["source"] == "gnss" and saved["utc"] == int(saved["utc"])
    assert rig.clock.now().utc - saved["utc"] < 0.1  # just after that second began
    # Read as the middle of its second: within half a second (and one loop's period).
    assert rig.rtc.read().midpoint_utc == pytest.approx(rig.clock.now().utc, abs=0.52)
    assert first.trusted(TimeSource.GNSS) == [] and first.tick() == []  # not again this hour
    # The next boot finds the device clock 20 s off the RTC it wrote (a correction carried
    # over that the boot's clock no longer needs): the RTC holds over.
    rig.clock.resume_correction(rig.clock.correction_s + 20.0)
    booted = keeper()
    (kind, facts), = booted.at_boot()
    assert kind == "rtc_disagrees" and facts["used"], facts
    assert rig.clock.now().utc == pytest.approx(rig.rtc.read().midpoint_utc, abs=0.52)
    assert rig.clock.source is TimeSource.RTC  # a holdover, never a trusted time
    assert booted.problem == ""
