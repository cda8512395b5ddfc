"""Opening an I²C bus through ``smbus2`` (the field's pure-Python SMBus binding), for the
chips read directly where no kernel driver is bound (the MAX17048 gauge, the DS3231 RTC).
``smbus2`` is imported here, when a bus is opened, so the package loads without it."""

from __future__ import annotations

from typing import Any

from device.hardware import HardwareError


def open_smbus(number: int, part: str) -> Any:
    """``smbus2.SMBus(number)``; raises ``HardwareError`` naming ``part`` and the fix."""
    try:
        from smbus2 import SMBus
    except ImportError as exc:
        raise HardwareError(f"{part}: smbus2 is not installed ({exc}); pip install smbus2 "
                            "(in bodycam[pi])") from exc
    try:
        return SMBus(number)
    except OSError as exc:
        raise HardwareError(f"{part}: I2C bus {number} cannot be opened ({exc}); enable "
                            "I2C: raspi-config nonint do_i2c 0") from exc
