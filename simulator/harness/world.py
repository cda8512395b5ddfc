"""The simulated recorder: every part built on one virtual clock, wired as on a Pi.

``build_world`` returns a ``SimWorld``: the ``Hardware`` bundle the agent runs on, plus
the simulator's handles on each part (to press buttons, inject faults, dock) and ``tick``
that moves them all to the present virtual time. The agent sees only ``Hardware``; where a
real code path can run on a PC it does — the GNSS reader reads NMEA from a pty, the
buttons and LEDs are gpiozero devices on mock pins, power is read from a sysfs tree.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from device.clock import DeviceClock
from device.backends.gpio import GpioIndicators, GpioInputs
from device.hardware import Hardware
from device.indicators import Output
from device.inputs import Button
from device.backends.nmea import SerialGnss
from device.backends.sysfs_power import SysfsPower
from firmware_py.config import DeviceConfig
from firmware_py.paths import evidence_dir
from firmware_py.recording.pipeline import audio_config, video_config
from simulator.audio import AcousticSpace, SimMicrophone, SimSpeaker
from simulator.battery import SimBattery
from simulator.buttons import SimButtons
from simulator.camera import SimCamera
from simulator.clock import DriftingWallClock, VirtualClock
from simulator.gnss import Route, SimGnssReceiver
from simulator.harness.scenario import Scenario
from simulator.rtc import SimRtc
from simulator.storage import QuotaStorage

log = logging.getLogger(__name__)

WORLD_STATE = ".sim-world.json"


@dataclass(frozen=True)
class PowerOff:
    """A power cut the world lived through: the device lost its power at ``lost_at`` and has
    it back at ``back_at`` (virtual seconds since the scenario's start)."""

    lost_at: float
    back_at: float

    @property
    def off_s(self) -> float:
        return self.back_at - self.lost_at


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
    rtc: SimRtc | None = None
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

    # --- what outlives the device's power -----------------------------------------------

    def save_state(self) -> None:
        """Write down what the world holds outside the device's files — card ballast, RTC
        jumps, broken parts — so that it is still so when the device boots after a power
        cut. Written atomically whenever a scenario event changes it."""
        # The RTC outlives the power too: at the next boot the kernel sets the system
        # clock from it (hctosys), so what was written to it becomes the wall clock's.
        rtc_offset = self.rtc.boot_offset_s if self.rtc is not None else 0.0
        state = {"storage_ballast_bytes": self.storage.ballast_bytes,
                 "clock_jumps_s": self.wall.jumps_s + rtc_offset,
                 "camera_fault": self.camera.fault, "microphone_fault": self.microphone.fault}
        path = self.root / WORLD_STATE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def restore_state(self) -> None:
        path = self.root / WORLD_STATE
        if not path.exists():
            return
        state = json.loads(path.read_text())
        self.storage.fill(int(state.get("storage_ballast_bytes", 0)))
        self.wall.jump(float(state.get("clock_jumps_s", 0.0)))
        if state.get("camera_fault"):
            self.camera.fail(state["camera_fault"])
        if state.get("microphone_fault"):
            self.microphone.fail(state["microphone_fault"])


def build_world(device: DeviceConfig, scenario: Scenario, root: Path,
                restart: PowerOff | None = None) -> SimWorld:
    """Build the simulated device under ``root`` (its storage, sysfs and evidence).

    With ``restart`` the device is switched on again after a power cut: the virtual clock
    (and with it the RTC) starts at ``restart.back_at``, and the battery, the storage and
    the world's state file are taken as the cut left them, not made afresh.
    """
    root.mkdir(parents=True, exist_ok=True)
    clock = VirtualClock(restart.back_at if restart else 0.0)
    wall = DriftingWallClock(clock, scenario.start_utc, scenario.clock_error_s,
                             scenario.clock_drift_ppm)
    device_clock = DeviceClock(wall=wall, monotonic=clock, utc_offset_s=device.device.utc_offset_s)

    sysfs = root / "sys" / "class" / "power_supply"
    if restart is None:
        battery = SimBattery(sysfs, capacity_wh=scenario.battery_capacity_wh,
                             start_percent=scenario.battery_percent)
        if scenario.docked_at_start:
            battery.dock()
        battery.update(0.0, 0.0)
    else:
        battery = SimBattery.restore(sysfs)
        battery.update(restart.lost_at, 0.0)
        battery.update(restart.back_at, 0.0)  # off: no draw (a dock charges it meanwhile)

    evidence = evidence_dir(root, device.device.evidence_dir)
    evidence.mkdir(parents=True, exist_ok=True)
    storage = QuotaStorage(evidence, int(scenario.storage_quota_mb * 1e6))

    route = Route([(p.latitude, p.longitude) for p in scenario.route], speed_mps=scenario.speed_mps)
    receiver = SimGnssReceiver(clock, wall.true_utc, route,
                               time_to_first_fix_s=scenario.gnss_ttff_s,
                               satellites=scenario.gnss_satellites, route_t0=0.0,
                               baudrate=device.gnss.baudrate)  # paced as a UART sends
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

    rtc = SimRtc(wall) if device.clock.rtc != "none" else None
    hardware = Hardware(clock=device_clock, camera=camera, microphone=microphone,
                        speaker=speaker, inputs=inputs, indicators=indicators, gnss=gnss,
                        power=SysfsPower(sysfs, device.power.battery or None),
                        storage=storage, rtc=rtc)
    world = SimWorld(clock, wall, hardware, camera, microphone, speaker, space, receiver,
                     battery, storage, buttons, root, rtc=rtc)
    if rtc is not None:
        rtc.on_write = world.save_state
    if restart is not None:
        world.restore_state()
    return world
