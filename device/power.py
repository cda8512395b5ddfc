"""Power protocol: the battery's charge and whether the device is on external power."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ChargeStatus(StrEnum):
    CHARGING = "Charging"
    DISCHARGING = "Discharging"
    FULL = "Full"
    NOT_CHARGING = "Not charging"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class PowerReading:
    capacity_percent: float
    status: ChargeStatus
    external_power: bool  # on the dock or a charger
    voltage_v: float | None = None
    energy_wh: float | None = None  # remaining
    energy_full_wh: float | None = None
    power_w: float | None = None  # present draw (discharging) or charge rate


@runtime_checkable
class Power(Protocol):
    def read(self) -> PowerReading: ...
