"""Power backend reading a MAX17048/MAX17049 fuel gauge directly over I²C, for a recorder
whose gauge has no kernel driver bound (otherwise ``sysfs_power`` reads the driver's
``power_supply`` directory, the better way).

The gauge (7-bit address 0x36) answers SMBus word reads of big-endian registers:

- ``VCELL`` (0x02): cell voltage, 78.125 µV per bit;
- ``SOC`` (0x04): state of charge, 1/256 % per bit (the ModelGauge estimate, no shunt);
- ``VERSION`` (0x08): 0x001_ for the MAX17048/9 — checked at open, so a wrong address or
  another chip is named rather than read as a battery;
- ``CRATE`` (0x16): charge or discharge rate, signed, 0.208 %/h per bit.

The gauge knows nothing of the charger: whether the recorder is on external power comes
from ``external_power`` (the power_supply class's Mains/USB supplies, or a charger's
power-good line). The gauge measures no current either, so power is estimated from the
rate and the capacity in ``[power]``. ``smbus2`` (the field's pure-Python SMBus binding)
is imported when the gauge is opened (``device.backends.i2c``).
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

from device.backends.i2c import open_smbus
from device.hardware import HardwareError
from device.power import ChargeStatus, PowerReading

log = logging.getLogger(__name__)

ADDRESS = 0x36
VCELL, SOC, VERSION, CRATE = 0x02, 0x04, 0x08, 0x16
VCELL_V_PER_BIT = 78.125e-6
CRATE_PERCENT_PER_H_PER_BIT = 0.208
FULL_PERCENT = 99.5  # at or above, on external power and not charging: full


class WordBus(Protocol):
    """What the gauge needs of an SMBus: ``smbus2.SMBus`` is one."""

    def read_word_data(self, i2c_addr: int, register: int) -> int: ...

    def close(self) -> None: ...


def _swap(word: int) -> int:
    """SMBus words arrive low byte first; the gauge's registers are high byte first."""
    return ((word & 0xFF) << 8) | (word >> 8)


class Max17048Power:
    """``device.power.Power`` on a MAX17048/9 read over I²C."""

    def __init__(self, bus: int | WordBus, external_power: Callable[[], bool], *,
                 address: int = ADDRESS, capacity_wh: float | None = None) -> None:
        self._address = address
        self._external_power = external_power
        self._capacity_wh = capacity_wh
        self._bus = open_smbus(bus, "fuel gauge") if isinstance(bus, int) else bus
        version = self._register(VERSION)
        if version & 0xFFF0 != 0x0010:
            self._bus.close()
            raise HardwareError(f"fuel gauge at I2C 0x{address:02x}: version 0x{version:04x} "
                                "is not a MAX17048/9 (0x001x)")
        log.info("fuel gauge MAX17048/9 version 0x%04x at 0x%02x", version, address)

    def _register(self, register: int) -> int:
        try:
            return _swap(self._bus.read_word_data(self._address, register))
        except OSError as exc:  # a loose wire answers EIO or ENXIO (no ACK)
            raise HardwareError(f"fuel gauge at I2C 0x{self._address:02x}: register "
                                f"0x{register:02x} cannot be read ({exc})") from exc

    def read(self) -> PowerReading:
        voltage = self._register(VCELL) * VCELL_V_PER_BIT
        soc = min(100.0, max(0.0, self._register(SOC) / 256.0))
        crate = self._register(CRATE)
        rate = (crate - 0x10000 if crate & 0x8000 else crate) * CRATE_PERCENT_PER_H_PER_BIT
        external = bool(self._external_power())
        if not external:
            status = ChargeStatus.DISCHARGING
        elif rate > 0:
            status = ChargeStatus.CHARGING
        elif soc >= FULL_PERCENT:
            status = ChargeStatus.FULL
        else:
            status = ChargeStatus.NOT_CHARGING
        capacity = self._capacity_wh
        return PowerReading(
            capacity_percent=soc, status=status, external_power=external, voltage_v=voltage,
            energy_wh=None if capacity is None else capacity * soc / 100.0,
            energy_full_wh=capacity,
            power_w=None if capacity is None else abs(rate) / 100.0 * capacity)

    def close(self) -> None:
        self._bus.close()
