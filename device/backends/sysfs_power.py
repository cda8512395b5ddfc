"""Power backend reading the Linux ``power_supply`` class (``/sys/class/power_supply``).

A fuel-gauge driver (bq27xxx, max17040, cw2015, ...) exposes one directory per supply: the
battery (``type`` = Battery) with ``capacity``, ``status``, ``voltage_now`` and either the
energy_* (µWh) or the charge_* (µAh) family; chargers and docks (``type`` = Mains, USB,
...) with ``online``. Every ``read()`` re-reads the files, since the kernel updates them
in place; the simulator's battery (``simulator.battery``) writes the same tree so this
code path also runs in simulation.
"""

from __future__ import annotations

import errno
import logging
import math
from pathlib import Path

from device.hardware import HardwareError
from device.power import ChargeStatus, PowerReading

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/class/power_supply"

# The kernel's power_supply type names of supplies that power the device from outside.
EXTERNAL_TYPES = frozenset({
    "Mains", "USB", "USB_DCP", "USB_CDP", "USB_ACA", "USB_C", "USB_PD", "USB_PD_DRP",
    "USB_TYPE_C", "BrickID", "Wireless",
})

# Drivers answer these when a property cannot be reported right now (e.g. current_now
# while the gauge is between samples); the property is then treated as absent.
_UNAVAILABLE_ERRNOS = frozenset({errno.ENODATA, errno.EINVAL, errno.ENXIO, errno.ENODEV,
                                 errno.EAGAIN})

_STATUSES = {status.value: status for status in ChargeStatus}


class SysfsPower:
    """Battery and external power as the kernel's power_supply class reports them."""

    def __init__(self, root: str | Path = DEFAULT_ROOT, battery: str | None = None) -> None:
        self._root = Path(root)
        self._battery_name = battery
        self._battery = self._find_battery()
        log.info("battery: %s", self._battery)

    @property
    def battery_path(self) -> Path:
        return self._battery

    def _find_battery(self) -> Path:
        if self._battery_name is not None:
            path = self._root / self._battery_name
            if not path.is_dir():
                raise HardwareError(f"battery {self._battery_name!r} not found in {self._root}")
            return path
        for entry in self._supplies():
            if _read_text(entry / "type") != "Battery":
                continue
            if _read_number(entry / "present") == 0:
                continue  # an empty battery slot
            return entry
        raise HardwareError(f"no battery (power supply of type Battery) in {self._root}")

    def _supplies(self) -> list[Path]:
        try:
            return sorted(entry for entry in self._root.iterdir() if entry.is_dir())
        except OSError as exc:
            raise HardwareError(f"power supply directory {self._root} cannot be read: "
                                f"{exc}") from exc

    def read(self) -> PowerReading:
        if not self._battery.is_dir():
            # The driver was unbound and rebound (or the gauge re-probed): look again.
            self._battery = self._find_battery()
        bat = self._battery
        status = _STATUSES.get(_read_text(bat / "status") or "", ChargeStatus.UNKNOWN)
        voltage = _scaled(bat / "voltage_now")
        energy_now = _scaled(bat / "energy_now")
        energy_full = _scaled(bat / "energy_full")
        if energy_now is None:
            charge_now = _scaled(bat / "charge_now")
            charge_full = _scaled(bat / "charge_full")
            # Ah x present voltage: approximate, but it keeps energy/full equal to the
            # charge ratio the gauge reports.
            if voltage is not None:
                energy_now = None if charge_now is None else charge_now * voltage
                energy_full = None if charge_full is None else charge_full * voltage
        else:
            charge_now = charge_full = None
        capacity = _read_number(bat / "capacity")
        if capacity is None:
            capacity = (_ratio_percent(energy_now, energy_full)
                        if energy_now is not None else _ratio_percent(charge_now, charge_full))
        if capacity is None:
            raise HardwareError(f"battery {bat} reports neither capacity nor "
                                "energy_now/energy_full nor charge_now/charge_full")
        power = _scaled(bat / "power_now")
        if power is None:
            current = _scaled(bat / "current_now")
            if current is not None and voltage is not None:
                power = current * voltage
        # Drivers disagree on the sign of current and power; the reading is a magnitude.
        power = None if power is None else abs(power)
        return PowerReading(
            capacity_percent=min(100.0, max(0.0, capacity)),
            status=status,
            external_power=self._external_power(status),
            voltage_v=voltage,
            energy_wh=energy_now,
            energy_full_wh=energy_full,
            power_w=power,
        )

    def _external_power(self, status: ChargeStatus) -> bool:
        online = external_supplies_online(self._root)
        if online is not None:
            return online
        return status in (ChargeStatus.CHARGING, ChargeStatus.FULL)


def external_supplies_online(root: str | Path = DEFAULT_ROOT) -> bool | None:
    """Whether any external supply (Mains, USB, …) under ``root`` is online; None when the
    tree has none that says (then only the battery's status can tell)."""
    root = Path(root)
    try:
        entries = sorted(entry for entry in root.iterdir() if entry.is_dir())
    except OSError as exc:
        raise HardwareError(f"power supply directory {root} cannot be read: {exc}") from exc
    onlines = []
    for entry in entries:
        if _read_text(entry / "type") not in EXTERNAL_TYPES:
            continue
        online = _read_number(entry / "online")
        if online is not None:
            # USB supplies may answer 2 ("online, programmable"): any non-zero is on.
            onlines.append(online != 0)
    return any(onlines) if onlines else None


def _read_text(path: Path) -> str | None:
    """The stripped text of a sysfs attribute, or None when the driver does not offer it."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return None
        raise HardwareError(f"{path} cannot be read: {exc}") from exc


def _read_number(path: Path) -> float | None:
    text = _read_text(path)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise HardwareError(f"{path} holds an unparseable value {text!r}")
    return value


def _scaled(path: Path) -> float | None:
    """A micro-unit attribute (µV, µA, µW, µWh, µAh) in whole units."""
    value = _read_number(path)
    return None if value is None else value / 1e6


def _ratio_percent(now: float | None, full: float | None) -> float | None:
    if now is None or not full:
        return None
    return 100.0 * now / full
