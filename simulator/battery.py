"""Simulated battery that keeps a fake sysfs ``power_supply`` tree up to date.

The device reads it with the real ``device.backends.sysfs_power.SysfsPower``, so the simulator
exercises the same parsing as a device with a fuel gauge. The tree is::

    root/BAT0/{type, status, present, capacity, voltage_now, energy_now, energy_full,
               power_now}
    root/DOCK/{type = USB, online}

The model is deliberately plain: energy is integrated exactly (load x time while
undocked, a constant ``charge_w`` while docked, the dock also carrying the load), with no
taper near full and no self-discharge; the voltage is an open-circuit Li-ion curve of the
state of charge (3.0 V empty to 4.2 V full per cell, ``cells`` in series) with no sag
under load. Files are written only when their text changes, and atomically (write and
rename), since ``update`` runs every simulated frame and a reader may look at any time.
"""

from __future__ import annotations

import bisect
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

GAUGE_PERIOD_S = 1.0

# Open-circuit voltage of one Li-ion cell by state of charge (percent, volts): steep at
# both ends, a long plateau around 3.7 V in between.
_OCV_CURVE = ((0.0, 3.00), (5.0, 3.45), (10.0, 3.60), (20.0, 3.68), (40.0, 3.75),
              (60.0, 3.85), (80.0, 3.98), (100.0, 4.20))
_OCV_SOC = [soc for soc, _ in _OCV_CURVE]


def cell_voltage(percent: float) -> float:
    """Open-circuit voltage of one cell at ``percent`` state of charge (linear in between)."""
    p = min(100.0, max(0.0, percent))
    i = bisect.bisect_right(_OCV_SOC, p)
    if i >= len(_OCV_CURVE):
        return _OCV_CURVE[-1][1]
    (s0, v0), (s1, v1) = _OCV_CURVE[i - 1], _OCV_CURVE[i]
    return v0 + (v1 - v0) * (p - s0) / (s1 - s0)


class SimBattery:
    """A battery and a dock in virtual time, published as a sysfs power_supply tree."""

    def __init__(self, root: Path, capacity_wh: float = 18.5, start_percent: float = 90.0,
                 charge_w: float = 10.0, *, cells: int = 1, docked: bool = False) -> None:
        if capacity_wh <= 0 or charge_w < 0 or cells < 1:
            raise ValueError(f"bad battery: capacity {capacity_wh} Wh, charge {charge_w} W, "
                             f"{cells} cells")
        self._root = Path(root)
        self._bat = self._root / "BAT0"
        self._dock = self._root / "DOCK"
        self._bat.mkdir(parents=True, exist_ok=True)
        self._dock.mkdir(parents=True, exist_ok=True)
        self._full_wh = float(capacity_wh)
        self._charge_w = float(charge_w)
        self._cells = cells
        self._energy_wh = self._full_wh * _percent(start_percent) / 100.0
        self._docked = docked
        self._load_w = 0.0
        self._last: float | None = None  # time of the last update; integration starts there
        self._depleted_at: float | None = None
        self._written: dict[Path, str] = {}
        self._published_at: float | None = None
        self._publish()

    @classmethod
    def restore(cls, root: Path, charge_w: float = 10.0, *, cells: int = 1) -> "SimBattery":
        """The battery as its sysfs tree left it: same charge, same dock (after a power cut).

        The tree is published once a second, so up to a second of drain before the cut is
        not in it; that is as close as the files allow.
        """
        bat, dock = Path(root) / "BAT0", Path(root) / "DOCK"
        full_wh = int((bat / "energy_full").read_text()) / 1e6
        now_wh = int((bat / "energy_now").read_text()) / 1e6
        docked = (dock / "online").read_text().strip() == "1"
        return cls(root, capacity_wh=full_wh, start_percent=min(100.0, 100.0 * now_wh / full_wh),
                   charge_w=charge_w, cells=cells, docked=docked)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def energy_wh(self) -> float:
        return self._energy_wh

    @property
    def energy_full_wh(self) -> float:
        return self._full_wh

    @property
    def percent(self) -> float:
        return 100.0 * self._energy_wh / self._full_wh

    @property
    def voltage_v(self) -> float:
        return cell_voltage(self.percent) * self._cells

    @property
    def docked(self) -> bool:
        return self._docked

    @property
    def dead(self) -> bool:
        """Empty and off the dock: the device has lost power and must be shut down."""
        return self._energy_wh <= 0.0 and not self._docked

    @property
    def depleted_at(self) -> float | None:
        """Virtual time the device lost power (interpolated within an update), or None."""
        return self._depleted_at if self.dead else None

    def update(self, now: float, load_w: float) -> None:
        """Integrate from the previous update to ``now``; ``load_w`` is the draw over it.

        The first call only sets the starting time. Docking or undocking between two
        updates counts from the previous update.
        """
        if load_w < 0:
            raise ValueError(f"load cannot be negative ({load_w} W)")
        if self._last is not None:
            dt = now - self._last
            if dt < 0:
                raise ValueError(f"time went back from {self._last} to {now}")
            if self._docked:
                self._energy_wh = min(self._full_wh,
                                      self._energy_wh + self._charge_w * dt / 3600.0)
            elif self._energy_wh > 0.0:
                used = load_w * dt / 3600.0
                if used >= self._energy_wh:
                    # load_w > 0 here, since used >= energy > 0.
                    self._depleted_at = self._last + self._energy_wh / load_w * 3600.0
                    self._energy_wh = 0.0
                    log.warning("simulated battery empty at t=%.3f s", self._depleted_at)
                else:
                    self._energy_wh -= used
        self._last = now
        self._load_w = load_w
        # A fuel gauge refreshes its registers about once a second, not per frame; the
        # files change on that rhythm (and at once on dock, undock and faults).
        if self._published_at is None or now - self._published_at >= GAUGE_PERIOD_S or self.dead:
            self._published_at = now
            self._publish()

    def dock(self) -> None:
        self._docked = True
        self._publish()

    def undock(self) -> None:
        self._docked = False
        self._mark_if_depleted()
        self._publish()

    def drain(self, percent: float) -> None:
        """Fault: lose ``percent`` of full capacity at once (a cold snap, a failing cell)."""
        self._energy_wh = max(0.0, self._energy_wh - self._full_wh * _percent(percent) / 100.0)
        self._mark_if_depleted()
        self._publish()

    def set_percent(self, percent: float) -> None:
        self._energy_wh = self._full_wh * _percent(percent) / 100.0
        self._mark_if_depleted()
        self._publish()

    def _mark_if_depleted(self) -> None:
        if self._energy_wh <= 0.0 and not self._docked:
            self._depleted_at = self._last if self._last is not None else 0.0

    def _status(self) -> str:
        if not self._docked:
            return "Discharging"
        return "Full" if self._energy_wh >= self._full_wh else "Charging"

    def _power_w(self) -> float:
        if not self._docked:
            return self._load_w if self._energy_wh > 0.0 else 0.0
        return 0.0 if self._energy_wh >= self._full_wh else self._charge_w

    def _capacity_text(self) -> str:
        capacity = round(self.percent)
        if capacity == 0 and self._energy_wh > 0.0:
            capacity = 1  # like fuel gauges: 0 % only when truly empty
        return str(capacity)

    def _publish(self) -> None:
        bat, dock = self._bat, self._dock
        self._write(bat / "type", "Battery")
        self._write(bat / "present", "1")
        self._write(bat / "status", self._status())
        self._write(bat / "capacity", self._capacity_text())
        self._write(bat / "voltage_now", _micro(self.voltage_v))
        self._write(bat / "energy_now", _micro(self._energy_wh))
        self._write(bat / "energy_full", _micro(self._full_wh))
        self._write(bat / "power_now", _micro(self._power_w()))
        self._write(dock / "type", "USB")
        self._write(dock / "online", "1" if self._docked else "0")

    def _write(self, path: Path, text: str) -> None:
        if self._written.get(path) == text:
            return
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
        self._written[path] = text


def _percent(p: float) -> float:
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percent must be within 0..100, got {p}")
    return float(p)


def _micro(value: float) -> str:
    return str(round(value * 1e6))
