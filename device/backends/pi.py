"""Wiring of the real backends on a Raspberry Pi-class recorder (``hardware = "pi"``).

Hardware-only libraries are imported inside this function, so the rest of the package
loads on any machine. The caller fills ``PiSettings`` from its configuration: this package
knows nothing of the firmware's configuration files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from device.backends.missing import MissingPart
from device.clock import DeviceClock
from device.gnss import Gnss
from device.hardware import Hardware
from device.indicators import Output
from device.inputs import Button

# The picamera2 and sounddevice backends are not in this build yet. Until they are, those
# parts report themselves as missing: the self-check fails them by name and the rest of
# the recorder (buttons, GNSS, power, storage, clock) runs on the real hardware.
NOT_YET = "no backend in this build yet (picamera2/sounddevice backends are planned)"


@dataclass(frozen=True)
class PiSettings:
    """What the real parts need to be opened: pins, ports and paths."""

    utc_offset_s: int  # local time = UTC + this, for the clock's timestamps
    button_pins: Mapping[Button, int]  # GPIO (BCM) of each button
    long_press_s: float  # hold time that makes a press a long press
    indicator_pins: Mapping[Output, int]  # GPIO of each output; -1 when not fitted
    gnss_port: str  # serial port of the GNSS receiver
    gnss_baudrate: int
    power_supply_root: str  # Linux power_supply class directory
    battery: str = ""  # battery name under it; empty picks the first battery
    gnss_source: str = "serial"  # "serial" (NMEA on gnss_port) or "gpsd"
    gnss_pps_pin: int = -1  # GPIO of the receiver's PPS line; -1 when not wired
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = 2947


def build_pi_hardware(settings: PiSettings, evidence: Path) -> Hardware:
    """Open every part of a real recorder; raises HardwareError naming a part that fails."""
    from device.backends.gpio import GpioIndicators, GpioInputs
    from device.backends.nmea import SerialGnss
    from device.backends.statvfs_storage import StatvfsStorage
    from device.backends.sysfs_power import SysfsPower

    clock = DeviceClock(utc_offset_s=settings.utc_offset_s)
    if settings.gnss_source == "gpsd":
        from device.backends.gpsd import GpsdGnss
        gnss: Gnss = GpsdGnss(settings.gpsd_host, settings.gpsd_port, clock.monotonic)
    else:
        pps = None
        if settings.gnss_pps_pin >= 0:
            from device.backends.pps import PpsLine
            pps = PpsLine(settings.gnss_pps_pin, clock.monotonic).edge_before
        gnss = SerialGnss(settings.gnss_port, settings.gnss_baudrate, clock.monotonic, pps=pps)
    return Hardware(
        clock=clock,
        camera=MissingPart("camera", NOT_YET),
        microphone=MissingPart("microphone", NOT_YET),
        speaker=MissingPart("speaker", NOT_YET),
        inputs=GpioInputs(dict(settings.button_pins), clock.monotonic, settings.long_press_s),
        indicators=GpioIndicators({o: p for o, p in settings.indicator_pins.items() if p >= 0}),
        gnss=gnss,
        power=SysfsPower(settings.power_supply_root, settings.battery or None),
        storage=StatvfsStorage(evidence),
    )
