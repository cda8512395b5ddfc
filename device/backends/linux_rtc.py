"""RTC backend on the Linux RTC class: Pi 5's built-in RTC (``rpi-rtc``), or a DS3231 with
its kernel driver bound (``dtoverlay=i2c-rtc,ds3231``), as ``rtcN``.

Read from sysfs, which needs no privilege: ``/sys/class/rtc/rtcN/since_epoch`` (the RTC's
time as seconds since the epoch; the read fails with EINVAL when the driver says the time
is not valid, e.g. the oscillator stopped), ``name`` (the driver) and ``hctosys`` (1 when
the kernel set the system clock from this RTC at boot).

Written with the ``RTC_SET_TIME`` ioctl on ``/dev/rtcN`` (``linux/rtc.h``): the argument
is a ``struct rtc_time`` — nine ``int`` fields as ``struct tm`` has them (seconds,
minutes, hours, day of month, month 0–11, years since 1900, weekday, day of year, DST
flag), in UTC. The kernel requires CAP_SYS_TIME for it and answers EACCES without; the
device file itself is opened read-only, as hwclock does. Each error is turned into a
message that says what to change (docs/rtc.md has the privilege decision).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import time
from pathlib import Path
from typing import Callable

from device.hardware import HardwareError
from device.rtc import RtcReading

log = logging.getLogger(__name__)

RTC_TIME = struct.Struct("9i")  # struct rtc_time


def _iow(kind: str, number: int, size: int) -> int:
    """An ``_IOW`` ioctl request number (the asm-generic layout of arm, arm64, x86)."""
    return (1 << 30) | (size << 16) | (ord(kind) << 8) | number


RTC_SET_TIME = _iow("p", 0x0A, RTC_TIME.size)


def encode_rtc_time(utc: float) -> bytes:
    """``utc`` (rounded to the second) as a ``struct rtc_time``."""
    t = time.gmtime(round(utc))
    return RTC_TIME.pack(t.tm_sec, t.tm_min, t.tm_hour, t.tm_mday, t.tm_mon - 1,
                         t.tm_year - 1900, (t.tm_wday + 1) % 7, t.tm_yday - 1, 0)


def set_rtc_time(device: Path, utc: float) -> None:
    """``RTC_SET_TIME`` on ``device``; raises ``HardwareError`` saying what to change."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise HardwareError(f"RTC: {device} does not exist ({exc.strerror})") from exc
    except PermissionError as exc:
        raise HardwareError(f"RTC: {device} cannot be opened by this user ({exc.strerror}); "
                            "bodycam install gives the bodycam group read access "
                            "(udev rule 60-bodycam-rtc.rules)") from exc
    except OSError as exc:  # EBUSY: the kernel lets one process at a time open an RTC
        raise HardwareError(f"RTC: {device} cannot be opened ({exc.strerror}; another "
                            "program, e.g. hwclock, may have it open)") from exc
    try:
        fcntl.ioctl(fd, RTC_SET_TIME, encode_rtc_time(utc))
    except OSError as exc:
        raise HardwareError(_set_time_error(device, exc)) from exc
    finally:
        os.close(fd)


def _set_time_error(device: Path, exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"RTC: {device} cannot be set ({code}): setting an RTC needs CAP_SYS_TIME; "
                "the bodycam unit grants it (AmbientCapabilities=CAP_SYS_TIME)")
    if exc.errno == errno.ENOTTY:
        return f"RTC: {device} is not an RTC (RTC_SET_TIME: {code})"
    if exc.errno == errno.EINVAL:
        return f"RTC: {device} refused the time ({code}: outside the range it can hold)"
    return f"RTC: {device} cannot be set ({code}: {exc.strerror})"


class LinuxRtc:
    """``device.rtc.Rtc`` on ``/sys/class/rtc/<name>`` and ``/dev/<name>``."""

    def __init__(self, name: str = "rtc0", sysfs_root: str | Path = "/sys/class/rtc",
                 dev_root: str | Path = "/dev",
                 set_time: Callable[[Path, float], None] = set_rtc_time) -> None:
        self._dir = Path(sysfs_root) / name
        self._device = Path(dev_root) / name
        self._set_time = set_time
        if not self._dir.is_dir():
            raise HardwareError(f"RTC: no {name} under {sysfs_root} (Pi 5: built in; DS3231: "
                                "dtoverlay=i2c-rtc,ds3231 in config.txt, or [clock] rtc = "
                                "\"ds3231\" to read it over I2C)")
        driver = self._attribute("name") or "unknown driver"
        self._name = f"{name} ({driver})"
        log.info("RTC %s; the kernel set the system clock from it at boot: %s", self._name,
                 self.set_system_clock_at_boot)

    @property
    def name(self) -> str:
        return self._name

    @property
    def set_system_clock_at_boot(self) -> bool:
        """Whether the kernel set the system clock from this RTC (``hctosys``)."""
        return self._attribute("hctosys") == "1"

    def _attribute(self, name: str) -> str:
        try:
            return (self._dir / name).read_text().strip()
        except OSError:
            return ""

    def read(self) -> RtcReading:
        path = self._dir / "since_epoch"
        try:
            text = path.read_text().strip()
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # the driver's "time not valid"
                return RtcReading(0.0, False, f"{self._name} has no valid time (the driver "
                                  "says EINVAL: it lost its time, e.g. a flat battery)")
            raise HardwareError(f"RTC: {path} cannot be read ({exc.strerror})") from exc
        try:
            return RtcReading(float(int(text)), True)
        except ValueError as exc:
            raise HardwareError(f"RTC: {path} holds {text!r}, not seconds") from exc

    def write(self, utc: float) -> None:
        self._set_time(self._device, utc)

    def close(self) -> None:
        """Nothing stays open: the device is opened for each write."""
