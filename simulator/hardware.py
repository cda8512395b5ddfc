"""The simulated recorder: every part built on one virtual clock, wired as on a Pi.

``build_world`` returns a ``SimWorld``: the ``Hardware`` bundle the agent runs on, plus
the simulator's handles on each part (to press buttons, inject faults, dock) and ``tick``
that moves them all to the present virtual time. The agent sees only ``Hardware``; where a
real code path can run on a PC it does — the GNSS reader reads NMEA from a pty, the
buttons and LEDs are gpiozero devices on mock pins, power is read from a sysfs tree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from device.camera import VideoConfig
from device.clock import DeviceClock
from device.gpio import GpioIndicators, GpioInputs
from device.hardware import Hardware
from device.indicators import Output
from device.inputs import Button
from device.microphone import AudioConfig
from device.nmea import SerialGnss
from device.sysfs_power import SysfsPower
from firmware_py.config import DeviceConfig
from simulator.audio import AcousticSpace, SimMicrophone, SimSpeaker
from simulator.battery import SimBattery
from simulator.buttons import SimButtons
from simulator.camera import SimCamera
from simulator.clock import DriftingWallClock, VirtualClock
from simulator.gnss import Route, SimGnssReceiver
from simulator.scenario import Scenario
from simulator.storage import QuotaStorage

log = logging.getLogger(__name__)


def video_config(device: DeviceConfig) -> VideoConfig:
    v = device.video
    return VideoConfig(v.width, v.height, v.fps, v.bitrate, v.keyframe_interval_s)


def audio_config(device: DeviceConfig) -> AudioConfig:
    a = device.audio
    return AudioConfig(a.sample_rate, a.channels, a.block_ms)


def button_pins(device: DeviceConfig) -> dict[Button, int]:
    b = device.buttons
    return {Button.RECORD: b.record_pin, Button.PHOTO: b.photo_pin, Button.MARKER: b.marker_pin}


def indicator_pins(device: DeviceConfig) -> dict[Output, int]:
    i = device.indicators
    pins = {Output.LED_GREEN: i.led_green_pin, Output.LED_RED: i.led_red_pin,
            Output.LED_BLUE: i.led_blue_pin, Output.BUZZER: i.buzzer_pin,
            Output.VIBRATION: i.vibration_pin}
    return {output: pin for output, pin in pins.items() if pin >= 0}


@dataclass
class SimWorld:
    """The simulated device and its surroundings, advanced together in virtual time."""

    clock: VirtualClock
    wall: DriftingWallClock
    hardware: Hardware
    camera: SimCamera
    microphone: SimMicrophone
    speaker: SimSpeaker
    space: AcousticSpace
    gnss: SimGnssReceiver
    battery: SimBattery
    storage: QuotaStorage
    buttons: SimButtons
    root: Path
    load_w: float = 0.0
    _pending: list[tuple[float, Button]] = field(default_factory=list)

    def tick(self) -> None:
        """Bring every part to the present virtual time (call after advancing the clock)."""
        now = self.clock.now
        for release_at, button in list(self._pending):
            if release_at <= now:
                self.buttons.release(button)
                self._pending.remove((release_at, button))
        self.gnss.tick(now)
        self.camera.tick(now)
        self.microphone.tick(now)
        self.battery.update(now, self.load_w)

    def hold(self, button: Button, seconds: float) -> None:
        """Press ``button`` now and release it ``seconds`` of virtual time later."""
        self.buttons.press(button)
        self._pending.append((self.clock.now + seconds, button))

    def close(self) -> None:
        self.hardware.close()
        self.gnss.close()


def build_world(device: DeviceConfig, scenario: Scenario, root: Path) -> SimWorld:
    """Build the simulated device under ``root`` (its storage, sysfs and evidence)."""
    root.mkdir(parents=True, exist_ok=True)
    clock = VirtualClock()
    wall = DriftingWallClock(clock, scenario.start_utc, scenario.clock_error_s,
                             scenario.clock_drift_ppm)
    device_clock = DeviceClock(wall=wall, monotonic=clock, utc_offset_s=device.device.utc_offset_s)

    sysfs = root / "sys" / "class" / "power_supply"
    battery = SimBattery(sysfs, capacity_wh=scenario.battery_capacity_wh,
                         start_percent=scenario.battery_percent)
    if scenario.docked_at_start:
        battery.dock()
    battery.update(0.0, 0.0)

    evidence = evidence_dir(device, root)
    evidence.mkdir(parents=True, exist_ok=True)
    storage = QuotaStorage(evidence, int(scenario.storage_quota_mb * 1e6))

    route = Route([(p.latitude, p.longitude) for p in scenario.route], speed_mps=scenario.speed_mps)
    receiver = SimGnssReceiver(clock, wall.true_utc, route,
                               time_to_first_fix_s=scenario.gnss_ttff_s,
                               satellites=scenario.gnss_satellites)
    gnss = SerialGnss(receiver.port_path, device.gnss.baudrate, monotonic=clock)

    buttons = SimButtons(button_pins(device), indicator_pins(device))
    inputs = GpioInputs(button_pins(device), clock, device.buttons.long_press_s,
                        pin_factory=buttons.factory)
    indicators = GpioIndicators(indicator_pins(device), pin_factory=buttons.factory)

    space = AcousticSpace(device.audio.sample_rate, seed=scenario.seed)
    camera = SimCamera(video_config(device), clock,
                       still_size=(device.photo.width, device.photo.height))
    microphone = SimMicrophone(audio_config(device), clock, space)
    speaker = SimSpeaker(space, clock)

    hardware = Hardware(clock=device_clock, camera=camera, microphone=microphone,
                        speaker=speaker, inputs=inputs, indicators=indicators, gnss=gnss,
                        power=SysfsPower(sysfs, device.power.battery or None),
                        storage=storage)
    return SimWorld(clock, wall, hardware, camera, microphone, speaker, space, receiver,
                    battery, storage, buttons, root)


def evidence_dir(device: DeviceConfig, root: Path) -> Path:
    path = Path(device.device.evidence_dir)
    return path if path.is_absolute() else root / path
