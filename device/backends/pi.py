"""Wiring of the real backends on a Raspberry Pi-class recorder (``hardware = "pi"``).

Hardware-only libraries are imported inside this function, so the rest of the package
loads on any machine. The caller fills ``PiSettings`` from its configuration: this package
knows nothing of the firmware's configuration files.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from device.camera import VideoConfig
from device.clock import DeviceClock
from device.gnss import Gnss
from device.hardware import Hardware, HardwareError
from device.indicators import Output
from device.inputs import Button
from device.microphone import AudioConfig
from device.power import Power
from device.rtc import Rtc, RtcReading

log = logging.getLogger(__name__)


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
    power_source: str = "sysfs"  # or "max17048": the gauge read directly over I2C
    gauge_i2c_bus: int = 1
    gauge_i2c_address: int = 0x36
    battery_capacity_wh: float | None = None
    gnss_source: str = "serial"  # "serial" (NMEA on gnss_port) or "gpsd"
    gnss_pps_pin: int = -1  # GPIO of the receiver's PPS line; -1 when not wired
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = 2947
    video: VideoConfig = VideoConfig()
    still_size: tuple[int, int] = (1280, 720)
    camera_encoder: str = "auto"  # "auto" (picamera2's choice), "hardware" or "libav"
    camera_format: str = "YUV420"  # or "NV12"
    camera_restart_s: float = 3.0
    audio: AudioConfig = AudioConfig()
    audio_input: str = ""  # PortAudio device index or part of its name; "" the default
    audio_output: str = ""
    input_latency_s: float = 0.1
    output_latency_s: float = 0.5
    rtc_source: str = "linux"  # "linux" (the kernel's RTC class), "ds3231" (over I2C), "none"
    rtc_name: str = "rtc0"
    rtc_sysfs_root: str = "/sys/class/rtc"
    rtc_dev_root: str = "/dev"
    rtc_i2c_bus: int = 1
    rtc_i2c_address: int = 0x68


def build_pi_hardware(settings: PiSettings, evidence: Path) -> Hardware:
    """Open every part of a real recorder; raises HardwareError naming a part that fails."""
    with pin_factory_warnings_logged():
        return _build(settings, evidence)


@contextmanager
def pin_factory_warnings_logged() -> Iterator[None]:
    """gpiozero picks its default pin factory (lgpio on a Pi) when the first pin is opened,
    warning on stderr for each factory it falls back from: on a recorder those lines would
    reach the officer's console. They go to the log instead (the unit also names lgpio
    outright: ``GPIOZERO_PIN_FACTORY``, so there is no fallback chain at all)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                log.info("gpio: %s", warning.message)


def _build(settings: PiSettings, evidence: Path) -> Hardware:
    from device.backends.gpio import GpioIndicators, GpioInputs
    from device.backends.nmea import SerialGnss
    from device.backends.picamera import PiCamera
    from device.backends.sounddevice_audio import SoundDeviceMicrophone, SoundDeviceSpeaker
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
    if settings.power_source == "max17048":
        from device.backends.max17048 import Max17048Power
        from device.backends.sysfs_power import external_supplies_online
        root = settings.power_supply_root
        power: Power = Max17048Power(settings.gauge_i2c_bus,
                                     lambda: bool(external_supplies_online(root)),
                                     address=settings.gauge_i2c_address,
                                     capacity_wh=settings.battery_capacity_wh)
    else:
        power = SysfsPower(settings.power_supply_root, settings.battery or None)
    hardware = Hardware(
        clock=clock,
        # picamera2 and PortAudio are opened when capture starts: a camera or sound card
        # that is missing then is a hardware_error the self-check names, never a stop.
        camera=PiCamera(settings.video, clock.monotonic, still_size=settings.still_size,
                        encoder=settings.camera_encoder, stream_format=settings.camera_format,
                        restart_after_s=settings.camera_restart_s),
        microphone=SoundDeviceMicrophone(settings.audio, clock.monotonic,
                                         device=settings.audio_input,
                                         latency=settings.input_latency_s),
        speaker=SoundDeviceSpeaker(device=settings.audio_output,
                                   latency=settings.output_latency_s),
        inputs=GpioInputs(dict(settings.button_pins), clock.monotonic, settings.long_press_s),
        indicators=GpioIndicators({o: p for o, p in settings.indicator_pins.items() if p >= 0}),
        gnss=gnss,
        power=power,
        storage=StatvfsStorage(evidence),
        rtc=open_rtc(settings),
    )
    close_power = getattr(power, "close", None)
    if close_power is not None:  # the gauge's I2C bus
        hardware.on_close.append(close_power)
    return hardware


class AbsentRtc:
    """An RTC that could not be opened: every read and write names why, so the agent logs
    it at boot and the self-check shows it — a recorder without its RTC still records."""

    def __init__(self, name: str, error: str) -> None:
        self._name = name
        self._error = error

    @property
    def name(self) -> str:
        return self._name

    def read(self) -> RtcReading:
        raise HardwareError(self._error)

    def write(self, utc: float) -> None:
        raise HardwareError(self._error)

    def close(self) -> None:
        """Nothing was opened."""


def open_rtc(settings: PiSettings) -> Rtc | None:
    """The configured RTC, an ``AbsentRtc`` naming why it cannot be opened, or None."""
    if settings.rtc_source == "none":
        return None
    try:
        if settings.rtc_source == "ds3231":
            from device.backends.ds3231 import Ds3231Rtc
            return Ds3231Rtc(settings.rtc_i2c_bus, settings.rtc_i2c_address)
        from device.backends.linux_rtc import LinuxRtc
        return LinuxRtc(settings.rtc_name, settings.rtc_sysfs_root, settings.rtc_dev_root)
    except HardwareError as exc:
        log.warning("%s", exc)
        return AbsentRtc(settings.rtc_source, str(exc))
