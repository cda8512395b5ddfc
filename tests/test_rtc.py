"""The RTC backends on their own: the Linux RTC class (sysfs read, ``RTC_SET_TIME``
ioctl) and a DS3231 over I²C, each on the stand-ins of ``tests/rtc_rigs.py``; what they
share is in the contract (``tests/test_contract_clock.py``). The ioctl's error reporting
runs for real: this machine has no RTC, so an ioctl on ``/dev/null`` or a plain file gets
the kernel's own ENOTTY."""

from __future__ import annotations

import errno
import fcntl
import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest

from device.backends.ds3231 import OSF, STATUS, Ds3231Rtc, decode_time, encode_time
from device.backends.linux_rtc import RTC_SET_TIME, LinuxRtc, encode_rtc_time, set_rtc_time
from device.backends.pi import AbsentRtc, PiSettings, open_rtc
from device.hardware import HardwareError
from tests.rtc_rigs import T0, Ds3231Chip, RtcClassTree, rtc_time_seconds

pytestmark = pytest.mark.req("R7.4")


def _utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=timezone.utc).timestamp()


def test_struct_rtc_time_is_packed_as_linux_rtc_h_lays_it_out():
    # _IOW('p', 0x0a, struct rtc_time): 36 bytes, the value linux/rtc.h gives on arm64/x86.
    assert RTC_SET_TIME == 0x4024700A
    packed = encode_rtc_time(_utc(2026, 12, 2, 4, 40, 5) + 0.4)
    # sec, min, hour, mday, mon (0-11), year - 1900, wday (Sunday 0), yday (0-365), isdst
    assert struct.unpack("9i", packed) == (5, 40, 4, 2, 11, 126, 3, 335, 0)
    for when in (_utc(2028, 2, 29, 23, 59, 59), _utc(2026, 12, 31, 23, 59, 59) + 0.6, T0):
        assert rtc_time_seconds(encode_rtc_time(when)) == round(when)


def test_an_rtc_ioctl_that_fails_says_why(tmp_path, monkeypatch):
    for not_rtc in (Path("/dev/null"), tmp_path / "plain"):
        not_rtc.touch()
        with pytest.raises(HardwareError, match=rf"{not_rtc} is not an RTC \(RTC_SET_TIME: ENOTTY\)"):
            set_rtc_time(not_rtc, T0)
    with pytest.raises(HardwareError, match="rtc9 does not exist"):
        set_rtc_time(tmp_path / "rtc9", T0)

    # The kernel answers EACCES without CAP_SYS_TIME: no RTC here to refuse us, so the
    # ioctl is made to answer as the RTC class does.
    def no_capability(fd: int, request: int, arg: bytes) -> bytes:
        assert request == RTC_SET_TIME and len(arg) == 36
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(fcntl, "ioctl", no_capability)
    with pytest.raises(HardwareError, match="needs CAP_SYS_TIME; the bodycam unit grants it"):
        set_rtc_time(Path("/dev/null"), T0)


def test_the_rtc_class_is_read_from_sysfs(tmp_path):
    tree = RtcClassTree(tmp_path)
    rtc = tree.rtc
    assert rtc.name == "rtc0 (rpi-rtc)" and rtc.set_system_clock_at_boot
    assert rtc.read().utc == T0 and rtc.read().valid
    tree.lose_time()
    lost = rtc.read()
    assert not lost.valid and "EINVAL" in lost.problem
    rtc.write(T0 + 100.2)  # the kernel stand-in gets the packed struct for /dev/rtc0
    assert tree.ioctls[-1][0] == tree.dev / "rtc0"
    assert rtc.read().utc == T0 + 100 and rtc.read().valid

    (tree.dir / "since_epoch").write_text("soon\n")
    with pytest.raises(HardwareError, match="holds 'soon', not seconds"):
        rtc.read()
    with pytest.raises(HardwareError, match="no rtc1 under .*dtoverlay=i2c-rtc,ds3231"):
        LinuxRtc("rtc1", tree.sysfs, tree.dev)


def test_the_ds3231_registers_are_bcd_with_a_century_bit():
    assert encode_time(_utc(2026, 12, 2, 4, 40, 5)) == [0x05, 0x40, 0x04, 4, 0x02, 0x12, 0x26]
    assert encode_time(_utc(2105, 1, 9, 23, 0, 0))[5] == 0x81  # century bit, January
    assert decode_time([0x59, 0x59, 0x23, 1, 0x31, 0x12, 0x99]) == _utc(2099, 12, 31, 23, 59, 59)
    assert decode_time([0x00, 0x00, 0x00, 1, 0x01, 0x81, 0x00]) == _utc(2100, 1, 1)
    # 12-hour mode, as another tool may have left it: 12 AM is 0 h, 12 PM is 12 h, 7 PM 19 h.
    assert decode_time([0, 0, 0x52, 1, 0x02, 0x12, 0x26]) == _utc(2026, 12, 2, 0)
    assert decode_time([0, 0, 0x72, 1, 0x02, 0x12, 0x26]) == _utc(2026, 12, 2, 12)
    assert decode_time([0, 0, 0x67, 1, 0x02, 0x12, 0x26]) == _utc(2026, 12, 2, 19)
    with pytest.raises(HardwareError, match="register 0x00 holds 0x7a, not a BCD number"):
        decode_time([0x7A, 0, 0, 1, 1, 1, 0x26])
    with pytest.raises(HardwareError, match="year 1999 is outside 2000-2199"):
        encode_time(_utc(1999, 8, 22))


def test_the_ds3231_keeps_time_says_when_it_lost_it_and_names_bus_faults():
    chip = Ds3231Chip(_utc(2026, 12, 2, 19, 15, 30))
    chip.twelve_hour = True
    assert chip.rtc.read().utc == _utc(2026, 12, 2, 19, 15, 30)
    assert chip.rtc.name == "DS3231 at I2C 0x68"
    chip.lose_time()
    lost = chip.rtc.read()
    assert not lost.valid and "oscillator stopped" in lost.problem
    chip.rtc.write(_utc(2026, 12, 2, 19, 20, 0))
    assert not chip.registers[STATUS] & OSF  # a write clears the flag
    assert chip.rtc.read().valid and chip.rtc.read().utc == _utc(2026, 12, 2, 19, 20, 0)

    chip.fail = OSError(errno.EBUSY, "Device or resource busy")
    with pytest.raises(HardwareError, match='a kernel driver owns the chip.*rtc = "linux"'):
        chip.rtc.read()
    chip.fail = OSError(errno.EIO, "Remote I/O error")
    with pytest.raises(HardwareError, match="writing the time failed.*wired and powered"):
        chip.rtc.write(T0)
    chip.rtc.close()
    assert chip.closed
    with pytest.raises(HardwareError, match="reading the status register failed"):
        Ds3231Rtc(Ds3231Chip(address=0x69))
    with pytest.raises(HardwareError, match="I2C bus 97 cannot be opened"):
        Ds3231Rtc(97)


def _settings(**rtc: object) -> PiSettings:
    return PiSettings(utc_offset_s=0, button_pins={}, long_press_s=1.5, indicator_pins={},
                      gnss_port="/dev/null", gnss_baudrate=9600, power_supply_root="/nowhere",
                      **rtc)


def test_the_pi_opens_the_configured_rtc_or_names_why_not(tmp_path):
    tree = RtcClassTree(tmp_path)
    rtc = open_rtc(_settings(rtc_sysfs_root=str(tree.sysfs), rtc_dev_root=str(tree.dev)))
    assert isinstance(rtc, LinuxRtc) and rtc.read().utc == T0
    assert open_rtc(_settings(rtc_source="none")) is None
    # A recorder whose RTC is missing still starts: every use names the reason.
    absent = open_rtc(_settings(rtc_sysfs_root=str(tmp_path / "nothing")))
    assert isinstance(absent, AbsentRtc)
    with pytest.raises(HardwareError, match="no rtc0 under"):
        absent.read()
    with pytest.raises(HardwareError, match="no rtc0 under"):
        absent.write(T0)
    ds3231 = open_rtc(_settings(rtc_source="ds3231", rtc_i2c_bus=97))
    assert isinstance(ds3231, AbsentRtc)
    with pytest.raises(HardwareError, match="I2C bus 97 cannot be opened"):
        ds3231.read()
