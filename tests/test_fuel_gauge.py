"""The battery read two ways on a Pi, under one contract: the gauge's kernel driver through
the power_supply class (``SysfsPower``, on the simulator's battery tree) and a MAX17048/9
read directly over I²C (``Max17048Power``). No I²C bus exists here: the gauge is a
register file answering SMBus word reads byte-swapped, as the chip does on the wire, with
the values of its datasheet's units — the decoding under test is the backend's own.
"""

from __future__ import annotations

import errno

import pytest

from device.backends.max17048 import ADDRESS, CRATE, SOC, VCELL, VERSION, Max17048Power
from device.backends.sysfs_power import SysfsPower, external_supplies_online
from device.hardware import HardwareError
from device.power import ChargeStatus, Power
from simulator.battery import SimBattery


class GaugeRegisters:
    """A MAX17048 on the bus: big-endian registers, read as SMBus words (low byte first)."""

    def __init__(self, version: int = 0x0012) -> None:
        self.registers = {VERSION: version, VCELL: 0, SOC: 0, CRATE: 0}
        self.closed = False
        self.fail: OSError | None = None

    def set(self, *, volts: float, percent: float, rate_per_h: float) -> None:
        self.registers[VCELL] = round(volts / 78.125e-6)
        self.registers[SOC] = round(percent * 256)
        self.registers[CRATE] = round(rate_per_h / 0.208) & 0xFFFF

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        if self.fail is not None:
            raise self.fail
        if i2c_addr != ADDRESS:
            raise OSError(errno.ENXIO, "no ACK")
        word = self.registers[register]
        return ((word & 0xFF) << 8) | (word >> 8)

    def close(self) -> None:
        self.closed = True


@pytest.fixture(params=["sysfs", "max17048"])
def battery(request, tmp_path):
    """(power backend, set(percent, docked)) for each way of reading the battery."""
    sim = SimBattery(tmp_path / "power_supply", start_percent=50.0)
    if request.param == "sysfs":
        def set_state(percent: float, docked: bool) -> None:
            sim.set_percent(percent)
            sim.dock() if docked else sim.undock()
        return SysfsPower(tmp_path / "power_supply"), set_state
    gauge = GaugeRegisters()
    power = Max17048Power(gauge, lambda: bool(external_supplies_online(tmp_path / "power_supply")),
                          capacity_wh=18.5)

    def set_state(percent: float, docked: bool) -> None:
        sim.dock() if docked else sim.undock()  # the dock's supply in the same tree
        gauge.set(volts=3.6 + percent / 200, percent=percent, rate_per_h=8.0 if docked else -6.0)
    return power, set_state


def test_every_battery_backend_reports_charge_status_and_external_power(battery):
    power, set_state = battery
    assert isinstance(power, Power)
    set_state(42.0, docked=False)
    reading = power.read()
    assert reading.capacity_percent == pytest.approx(42.0, abs=0.5)
    assert not reading.external_power and reading.status is ChargeStatus.DISCHARGING
    assert reading.voltage_v is None or 3.0 < reading.voltage_v < 4.4
    set_state(60.0, docked=True)
    reading = power.read()
    assert reading.external_power and reading.status is ChargeStatus.CHARGING
    assert reading.capacity_percent == pytest.approx(60.0, abs=0.5)
    assert reading.energy_wh is None or reading.energy_wh == pytest.approx(
        reading.energy_full_wh * reading.capacity_percent / 100, rel=0.05)


def test_the_gauge_decodes_its_registers():
    gauge = GaugeRegisters()
    gauge.set(volts=3.85, percent=73.5, rate_per_h=-4.16)
    reading = Max17048Power(gauge, lambda: False, capacity_wh=20.0).read()
    assert reading.voltage_v == pytest.approx(3.85, abs=1e-4)
    assert reading.capacity_percent == pytest.approx(73.5, abs=0.01)
    assert reading.energy_wh == pytest.approx(14.7, abs=0.01)
    assert reading.power_w == pytest.approx(0.832, abs=0.01)  # 4.16 %/h of 20 Wh
    gauge.set(volts=4.2, percent=100.0, rate_per_h=0.0)
    full = Max17048Power(gauge, lambda: True).read()
    assert full.status is ChargeStatus.FULL and full.energy_wh is None


def test_a_wrong_chip_or_a_loose_wire_is_named():
    with pytest.raises(HardwareError, match="version 0x0031 is not a MAX17048/9"):
        Max17048Power(GaugeRegisters(version=0x0031), lambda: False)
    with pytest.raises(HardwareError, match="register 0x08 cannot be read"):
        Max17048Power(GaugeRegisters(), lambda: False, address=0x37)
    gauge = GaugeRegisters()
    power = Max17048Power(gauge, lambda: False)
    gauge.fail = OSError(errno.EIO, "Remote I/O error")
    with pytest.raises(HardwareError, match="fuel gauge at I2C 0x36: register 0x02"):
        power.read()
    power.close()
    assert gauge.closed
    with pytest.raises(HardwareError, match="I2C bus 97 cannot be opened"):
        Max17048Power(97, lambda: False)
