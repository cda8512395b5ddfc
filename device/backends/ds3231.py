"""RTC backend reading and writing a DS3231 directly over I²C, for a recorder whose RTC has
no kernel driver bound (with ``dtoverlay=i2c-rtc,ds3231`` the kernel owns the chip and
``linux_rtc`` is the way; the bus then answers EBUSY here).

The DS3231 (7-bit address 0x68) keeps the time in BCD registers 0x00–0x06: seconds,
minutes, hours (bit 6 set: 12-hour mode, bit 5 PM), day of week (1–7), date, month (bit 7
the century, set when the year rolls over from 99 to 00) and year (00–99). The years are
read as 2000–2199, the century bit adding 100, as Linux's rtc-ds1307 driver reads them.
Bit 7 of the status register (0x0F) is the oscillator-stop flag: set, the time is not
valid (the chip lost power, or never had its time set); it is cleared after a write.
Writing the seconds register restarts the chip's count of the second, so the written
time is exact to the rounding of ``utc``.

No privilege beyond the i2c group is needed: the chip is not the kernel's RTC.
"""

from __future__ import annotations

import calendar
import errno
import logging
import time
from typing import Protocol

from device.backends.i2c import open_smbus
from device.hardware import HardwareError
from device.rtc import RtcReading

log = logging.getLogger(__name__)

ADDRESS = 0x68
TIME_REGISTERS = 0x00  # seconds .. year, 7 bytes
STATUS = 0x0F
OSF = 0x80  # status: oscillator stopped, time not valid
CENTURY = 0x80  # month register
HOUR_12 = 0x40
PM = 0x20


class ByteBus(Protocol):
    """What the DS3231 needs of an SMBus: ``smbus2.SMBus`` is one."""

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None: ...

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def close(self) -> None: ...


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _from_bcd(byte: int, register: int) -> int:
    tens, units = byte >> 4, byte & 0x0F
    if units > 9 or tens > 9:
        raise HardwareError(f"RTC DS3231: register 0x{register:02x} holds 0x{byte:02x}, "
                            "not a BCD number (is this a DS3231?)")
    return tens * 10 + units


def encode_time(utc: float) -> list[int]:
    """Registers 0x00–0x06 for ``utc`` (rounded to the second), 24-hour mode."""
    t = time.gmtime(round(utc))
    if not 2000 <= t.tm_year <= 2199:
        raise HardwareError(f"RTC DS3231: year {t.tm_year} is outside 2000-2199")
    century = CENTURY if t.tm_year >= 2100 else 0
    weekday = (t.tm_wday + 1) % 7 + 1  # Sunday 1, as Linux's driver counts
    return [_bcd(t.tm_sec), _bcd(t.tm_min), _bcd(t.tm_hour), weekday, _bcd(t.tm_mday),
            _bcd(t.tm_mon) | century, _bcd(t.tm_year % 100)]


def decode_time(registers: list[int]) -> float:
    """Seconds since the epoch from registers 0x00–0x06 (either hour mode)."""
    sec, minute, hour_byte, _weekday, mday, month_byte, year = registers
    if hour_byte & HOUR_12:
        hour = _from_bcd(hour_byte & 0x1F, 0x02) % 12 + (12 if hour_byte & PM else 0)
    else:
        hour = _from_bcd(hour_byte & 0x3F, 0x02)
    fields = (_from_bcd(sec & 0x7F, 0x00), _from_bcd(minute & 0x7F, 0x01), hour,
              _from_bcd(mday & 0x3F, 0x04), _from_bcd(month_byte & 0x1F, 0x05),
              2000 + _from_bcd(year, 0x06) + (100 if month_byte & CENTURY else 0))
    second, minute_, hour_, day, month, year_ = fields
    if not (second < 60 and minute_ < 60 and hour_ < 24 and 1 <= day <= 31 and 1 <= month <= 12):
        raise HardwareError(f"RTC DS3231: registers {bytes(registers).hex()} are no time")
    return float(calendar.timegm((year_, month, day, hour_, minute_, second)))


class Ds3231Rtc:
    """``device.rtc.Rtc`` on a DS3231 read over I²C."""

    def __init__(self, bus: int | ByteBus, address: int = ADDRESS) -> None:
        self._address = address
        self._bus_number = bus if isinstance(bus, int) else None
        self._bus = open_smbus(bus, "RTC DS3231") if isinstance(bus, int) else bus
        where = f"{self._bus_number}:" if self._bus_number is not None else ""
        self._name = f"DS3231 at I2C {where}0x{address:02x}"
        try:
            self._status()
        except HardwareError:
            self._bus.close()
            raise
        log.info("RTC %s", self._name)

    @property
    def name(self) -> str:
        return self._name

    def _fail(self, doing: str, exc: OSError) -> HardwareError:
        if exc.errno == errno.EBUSY:  # i2c-dev refuses an address a driver has claimed
            return HardwareError(f"RTC {self._name}: a kernel driver owns the chip ({exc}); "
                                 "use [clock] rtc = \"linux\"")
        return HardwareError(f"RTC {self._name}: {doing} failed ({exc}); is the chip "
                             "wired and powered?")

    def _status(self) -> int:
        try:
            return self._bus.read_byte_data(self._address, STATUS)
        except OSError as exc:  # a loose wire answers EIO or ENXIO (no ACK)
            raise self._fail("reading the status register", exc) from exc

    def read(self) -> RtcReading:
        stopped = bool(self._status() & OSF)
        try:
            registers = self._bus.read_i2c_block_data(self._address, TIME_REGISTERS, 7)
        except OSError as exc:
            raise self._fail("reading the time", exc) from exc
        utc = decode_time(list(registers))
        if stopped:
            return RtcReading(utc, False, f"{self._name}: its oscillator stopped (flag OSF): "
                              "the time was lost, e.g. a flat or missing battery")
        return RtcReading(utc, True)

    def write(self, utc: float) -> None:
        registers = encode_time(utc)
        try:
            self._bus.write_i2c_block_data(self._address, TIME_REGISTERS, registers)
            status = self._status()
            if status & OSF:
                self._bus.write_byte_data(self._address, STATUS, status & ~OSF & 0xFF)
        except OSError as exc:
            raise self._fail("writing the time", exc) from exc

    def close(self) -> None:
        self._bus.close()
