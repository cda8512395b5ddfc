"""Stand-ins for the RTC hardware this machine lacks (it has no /dev/rtc*, no
/sys/class/rtc and no I²C bus), each shaped as the kernel or the chip presents it, so the
decoding and encoding under test are the backends' own:

- ``RtcClassTree``: a ``/sys/class/rtc/rtcN`` directory (``name``, ``hctosys``,
  ``since_epoch``) with a kernel stand-in for ``RTC_SET_TIME`` that reads the
  ``struct rtc_time`` the backend packed, field by field as ``linux/rtc.h`` lays it out.
  An RTC that lost its time answers EINVAL on ``since_epoch``, as the class does: the
  file becomes a link to ``/proc/self/attr/current``, which answers EINVAL for real.
- ``Ds3231Chip``: the DS3231's register file over SMBus block and byte reads, counting
  seconds on a clock the test moves, with its oscillator-stop flag.

Each rig has ``rtc`` (the backend), ``pass_time(seconds)``, ``lose_time()`` and
``refuse_writes()`` for the contract (``tests/test_contract_clock.py``).
"""

from __future__ import annotations

import calendar
import errno
import os
import struct
import time
from pathlib import Path

from device.backends.ds3231 import ADDRESS, OSF, STATUS, Ds3231Rtc
from device.backends.linux_rtc import RTC_SET_TIME, LinuxRtc, encode_rtc_time, set_rtc_time

T0 = 1_796_000_000.0  # 2026-11-29, after the firmware's build date


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _unbcd(byte: int) -> int:
    return (byte >> 4) * 10 + (byte & 0x0F)


def rtc_time_seconds(packed: bytes) -> float:
    """What the kernel makes of a ``struct rtc_time`` (rtc_tm_to_time64: the calendar
    fields; weekday, day of year and DST are not used)."""
    sec, minute, hour, mday, mon, year, _wday, _yday, _isdst = struct.unpack("9i", packed)
    return float(calendar.timegm((year + 1900, mon + 1, mday, hour, minute, sec)))


class RtcClassTree:
    """/sys/class/rtc/rtc0 of a Pi 5 (driver rpi-rtc), its time moved by ``pass_time``."""

    def __init__(self, root: Path, utc: float = T0, driver: str = "rpi-rtc") -> None:
        self.sysfs = root / "sys" / "class" / "rtc"
        self.dev = root / "dev"
        self.dir = self.sysfs / "rtc0"
        self.dir.mkdir(parents=True)
        self.dev.mkdir(parents=True)
        (self.dir / "name").write_text(driver + "\n")
        (self.dir / "hctosys").write_text("1\n")
        self.utc = utc
        self.valid = True
        self.refused = False
        self.ioctls: list[tuple[Path, int, bytes]] = []
        self._show()
        self.rtc = LinuxRtc("rtc0", self.sysfs, self.dev, set_time=self.set_time)

    def _show(self) -> None:
        path = self.dir / "since_epoch"
        if path.is_symlink() or path.exists():
            path.unlink()
        if self.valid:
            path.write_text(f"{int(self.utc)}\n")
        else:
            os.symlink("/proc/self/attr/current", path)  # EINVAL on read, for real

    def set_time(self, device: Path, utc: float) -> None:
        """The kernel's side of RTC_SET_TIME, with the bytes the backend packs for it."""
        packed = encode_rtc_time(utc)
        self.ioctls.append((device, RTC_SET_TIME, packed))
        if self.refused:  # the real ioctl on a device that is no RTC: ENOTTY, for real
            set_rtc_time(Path(os.devnull), utc)
        self.utc, self.valid = rtc_time_seconds(packed), True
        self._show()

    def pass_time(self, seconds: float) -> None:
        self.utc += seconds
        self._show()

    def lose_time(self) -> None:
        self.valid = False
        self._show()

    def refuse_writes(self) -> None:
        self.refused = True


class Ds3231Chip:
    """A DS3231 on the bus: BCD time registers, status with OSF, SMBus access."""

    def __init__(self, utc: float = T0, address: int = ADDRESS) -> None:
        self.address = address
        self.utc = utc  # the chip's own count, moved by pass_time
        self.registers = [0] * 0x13
        self.registers[STATUS] = 0
        self.twelve_hour = False
        self.fail: OSError | None = None
        self.closed = False
        self.rtc = Ds3231Rtc(self)

    def _time_registers(self) -> list[int]:
        t = time.gmtime(int(self.utc))
        if self.twelve_hour:
            hour12 = t.tm_hour % 12 or 12
            hours = 0x40 | (0x20 if t.tm_hour >= 12 else 0) | _bcd(hour12)
        else:
            hours = _bcd(t.tm_hour)
        century = 0x80 if t.tm_year >= 2100 else 0
        return [_bcd(t.tm_sec), _bcd(t.tm_min), hours, (t.tm_wday + 1) % 7 + 1,
                _bcd(t.tm_mday), _bcd(t.tm_mon) | century, _bcd(t.tm_year % 100)]

    def _check(self, i2c_addr: int) -> None:
        if self.fail is not None:
            raise self.fail
        if i2c_addr != self.address:
            raise OSError(errno.ENXIO, "No such device or address")

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self._check(i2c_addr)
        self.registers[0:7] = self._time_registers()
        return self.registers[register:register + length]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None:
        self._check(i2c_addr)
        assert register == 0 and len(data) == 7
        sec, minute, hour, weekday, mday, month, year = data
        assert not hour & 0x40, "the backend writes 24-hour mode"
        assert 1 <= weekday <= 7
        century = 100 if month & 0x80 else 0
        # The chip restarts its second on a write.
        self.utc = float(calendar.timegm((2000 + _unbcd(year) + century, _unbcd(month & 0x1F),
                                          _unbcd(mday), _unbcd(hour), _unbcd(minute),
                                          _unbcd(sec))))

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        self._check(i2c_addr)
        return self.registers[register]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self._check(i2c_addr)
        self.registers[register] = value

    def close(self) -> None:
        self.closed = True

    def pass_time(self, seconds: float) -> None:
        self.utc += seconds

    def lose_time(self) -> None:
        self.registers[STATUS] |= OSF

    def refuse_writes(self) -> None:
        self.fail = OSError(errno.EIO, "Remote I/O error")
