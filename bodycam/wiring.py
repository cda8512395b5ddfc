"""Builds the recorder, once for every kind of hardware.

``build_device`` is the one place an agent is put together: the device root's layout, the
audit log (signed with the device's key), the agent's parts and its docking hook — a
``DockLink`` that starts the device's sync when the recorder is docked. The simulator's
harness is handed this function (it may not import this package), so a simulated docking
runs the same code as one on a Raspberry Pi.

``open_recorder`` is the one selection point between ``sim`` and ``pi`` hardware.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from bodycam.control import Control
from bodycam.docking import DockLink, SyncPaths
from device.backends.pi import PiSettings, build_pi_hardware
from device.hardware import Hardware, HardwareError
from device.indicators import Output
from device.inputs import Button
from firmware_py.agent.assembly import assemble
from firmware_py.agent.edge import Agent
from firmware_py.agent.supervision import ServiceNotifier
from firmware_py.config import Config, DeviceConfig
from firmware_py.evidence.audit import AuditLog
from firmware_py.evidence.chainhead import write_chain_head
from firmware_py.evidence.keys import device_identity, read_enrollment, require_enrolled
from firmware_py.paths import DeviceLayout
from firmware_py.recording.pipeline import audio_config, video_config
from simulator.harness.runner import Simulation, TimelineEntry
from simulator.harness.scenario import Scenario
from sync.credentials import DockAddress, device_sync_files

log = logging.getLogger(__name__)

FindDock = Callable[[], DockAddress | None]


@dataclass
class Device:
    """An assembled recorder: its agent and what the agent was given."""

    agent: Agent
    audit: AuditLog
    layout: DeviceLayout
    link: DockLink | None

    def close(self) -> None:
        """Shut the agent down, end any sync session, close the audit log."""
        try:
            self.agent.close()
        finally:
            if self.link is not None:
                self.link.close()
            self.audit.close()


def build_device(config: Config, hardware: Hardware, root: Path,
                 find_dock: FindDock | None) -> Device:
    """The agent on ``hardware`` with its files under ``root``. With ``find_dock`` the
    agent syncs whenever it is docked; without (a simulation with no dock) it keeps
    everything."""
    config = as_enrolled(config, root)
    layout = DeviceLayout.from_config(root, config.device)
    audit = AuditLog(layout.audit_log, hardware.clock)
    link = None
    if find_dock is not None:
        link = DockLink(SyncPaths(layout.root, layout.evidence, layout.audit_log),
                        config.device.device.id, audit, hardware.clock, hardware.power,
                        find_dock, correct_above_s=config.policy.selfcheck.clock_correct_above_s,
                        retry_s=config.device.dock.retry_s)
        link.before_session.append(lambda: sign_chain_head(layout, config, hardware))
    try:
        agent = assemble(config, hardware, audit, layout, docking=link)
    except BaseException:
        audit.close()
        raise
    return Device(agent, audit, layout, link)


def sign_chain_head(layout: DeviceLayout, config: Config, hardware: Hardware) -> None:
    """At each docking: the device's chain head, signed, among the files it offers."""
    identity = device_identity(layout.root, config.device.device.id)
    path = write_chain_head(layout.evidence, identity, hardware.clock.now())
    if path is not None:
        log.info("chain head signed: %s", path.name)


def as_enrolled(config: Config, root: Path) -> Config:
    """The configuration with the id and unit the device root is enrolled as: enrolment
    (``enrollment.json``, written by ``bodycam dock enroll`` or ``bodycam enroll --code``)
    is what a recorder is, so a root enrolled at the dock runs as it is. An unenrolled root
    is refused (``NotEnrolledError``: one line saying what to run)."""
    enrollment = read_enrollment(root)
    device = config.device.device
    if (enrollment["device"], enrollment["unit"]) == (device.id, device.unit):
        return config
    section = replace(device, id=enrollment["device"], unit=enrollment["unit"])
    return replace(config, device=replace(config.device, device=section))


def configured_dock(config: Config, layout: DeviceLayout) -> FindDock:
    """The dock of ``[dock]`` in device.toml, with the TLS files from enrolment."""
    dock, device = config.device.dock, config.device.device

    def find() -> DockAddress | None:
        if not dock.host:
            return None
        if not dock.tls:
            return DockAddress(dock.host, dock.port, None)
        files = device_sync_files(layout.root, device.id)  # names what enrolment left out
        return DockAddress(dock.host, dock.port, (files.ca, files.cert, files.key))

    return find


def pi_settings(device: DeviceConfig) -> PiSettings:
    """What the real backends need, from the device configuration."""
    b, i = device.buttons, device.indicators
    return PiSettings(
        utc_offset_s=device.device.utc_offset_s,
        button_pins={Button.RECORD: b.record_pin, Button.PHOTO: b.photo_pin,
                     Button.MARKER: b.marker_pin},
        long_press_s=b.long_press_s,
        indicator_pins={Output.LED_GREEN: i.led_green_pin, Output.LED_RED: i.led_red_pin,
                        Output.LED_BLUE: i.led_blue_pin, Output.BUZZER: i.buzzer_pin,
                        Output.VIBRATION: i.vibration_pin},
        gnss_port=device.gnss.port, gnss_baudrate=device.gnss.baudrate,
        power_supply_root=device.power.sysfs_root, battery=device.power.battery,
        power_source=device.power.source, gauge_i2c_bus=device.power.i2c_bus,
        gauge_i2c_address=device.power.i2c_address,
        battery_capacity_wh=device.power.capacity_wh,
        gnss_source=device.gnss.source, gnss_pps_pin=device.gnss.pps_pin,
        gpsd_host=device.gnss.gpsd_host,
        gpsd_port=device.gnss.gpsd_port,
        video=video_config(device), still_size=(device.photo.width, device.photo.height),
        camera_encoder=device.video.encoder, camera_format=device.video.stream_format,
        camera_restart_s=device.video.camera_restart_s,
        audio=audio_config(device), audio_input=device.audio.input_device,
        audio_output=device.audio.output_device, input_latency_s=device.audio.input_latency_s,
        output_latency_s=device.audio.output_latency_s,
        rtc_source=device.clock.rtc, rtc_name=device.clock.rtc_name,
        rtc_sysfs_root=device.clock.sysfs_root, rtc_dev_root=device.clock.dev_root,
        rtc_i2c_bus=device.clock.i2c_bus, rtc_i2c_address=device.clock.i2c_address)


class Recorder(Protocol):
    """A recorder to drive: real hardware in real time, or the simulator."""

    @property
    def agent(self) -> Agent: ...

    def start(self) -> None: ...

    def advance(self, seconds: float) -> bool:
        """Run the agent for ``seconds``; False once the recorder is off."""

    def run(self, stop: threading.Event, supervisor: ServiceNotifier | None = None) -> None:
        """Start, then run paced by the wall clock until ``stop`` is set; under systemd
        (``supervisor``) telling it READY and pinging its watchdog from the loop."""

    def finish(self) -> None: ...


class PiRecorder:
    """The agent on a Raspberry Pi's parts, its loop paced by the wall clock."""

    PERIOD_S = 0.01

    def __init__(self, config: Config, root: Path, *, dock: bool = True) -> None:
        layout = DeviceLayout.from_config(root, config.device)
        require_enrolled(layout.root, config.device.device.id)  # before any part is opened
        layout.evidence.mkdir(parents=True, exist_ok=True)
        self.hardware = build_pi_hardware(pi_settings(config.device), layout.evidence)
        try:
            self.device = build_device(config, self.hardware, layout.root,
                                       configured_dock(config, layout) if dock else None)
        except BaseException:
            self.hardware.close()
            raise

    @property
    def agent(self) -> Agent:
        return self.device.agent

    def start(self) -> None:
        self.device.agent.start()

    def advance(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.device.agent.step()
            time.sleep(self.PERIOD_S)
        return True

    def run(self, stop: threading.Event, supervisor: ServiceNotifier | None = None) -> None:
        self.device.agent.run(stop, self.PERIOD_S, supervisor)  # starts the agent

    def finish(self) -> None:
        try:
            self.device.close()
        finally:
            self.hardware.close()


class SimRecorder:
    """The simulated recorder; ``advance`` moves virtual time, ``run`` keeps it to the wall
    clock with the officer's hands on it (``bodycam.control``)."""

    def __init__(self, scenario: Scenario, out: Path, config: Config,
                 on_entry: Callable[[TimelineEntry], None] | None = None, *,
                 device_root: Path | None = None, find_dock: FindDock | None = None,
                 enroll: bool = True) -> None:
        # ``enroll=False``: the device must be enrolled already; nothing enrols it.
        self.simulation = Simulation(scenario, out, config, on_entry, build_device=build_device,
                                     device_root=device_root, find_dock=find_dock,
                                     **({} if enroll else {"enroll_with": None}))

    @property
    def agent(self) -> Agent:
        return self.simulation.agent

    def start(self) -> None:
        self.simulation.start()

    def advance(self, seconds: float) -> bool:
        return self.simulation.advance_to(self.simulation.world.clock.now + seconds)

    def run(self, stop: threading.Event, control: Control | None = None,
            supervisor: ServiceNotifier | None = None) -> None:
        """Virtual time kept to the wall clock, one frame interval at a time; between two
        frames the commands that came in are carried out."""
        frame_s = 1.0 / self.simulation.config.device.video.fps
        started = time.monotonic()
        self.start()
        if supervisor is not None:
            supervisor.ready("simulated recorder")
        while not stop.is_set():
            if control is not None:
                control.drain(self.simulation.apply, self.status)
            if not self.simulation.advance_to(time.monotonic() - started):
                break
            if supervisor is not None:
                supervisor.alive()
            stop.wait(frame_s)
        if supervisor is not None:
            supervisor.stopping()

    def status(self) -> dict[str, Any]:
        """What the recorder is doing, for ``status`` on the control socket."""
        sim = self.simulation
        link = sim.device.link
        evidence = sim.device.layout.evidence
        waiting = sum(1 for p in evidence.rglob("*") if p.is_file() and not p.name.startswith("."))
        last = link.results[-1] if link is not None and link.results else None
        return {"state": str(sim.agent.state), "virtual_s": round(sim.world.clock.now, 3),
                "local_time": sim.world.hardware.clock.now().isoformat(),
                "docked": sim.world.battery.docked,
                "battery_percent": round(sim.world.battery.percent, 1),
                "evidence_files": waiting,
                "syncing": bool(link is not None and link.busy),
                "sync_sessions": len(link.results) if link is not None else 0,
                "last_sync": None if last is None else last.summary()}

    def finish(self) -> None:
        self.simulation.finish()


def open_recorder(config: Config, root: Path, *, scenario: Scenario | None = None,
                  on_entry: Callable[[TimelineEntry], None] | None = None,
                  dock: bool = True) -> Recorder:
    """The recorder of ``device.hardware``: the one place sim and pi part ways.

    Without ``scenario`` the recorder is the one of ``root``: its files are ``root`` itself,
    it must be enrolled there (``bodycam dock enroll``; nothing here enrols it), and with
    ``dock`` it syncs to the dock of ``[dock]`` whenever it is docked — a simulated
    recorder, started now for 48 hours, exactly as a Pi. With ``scenario`` it is a simulated
    recorder in that scenario's conditions, its files under ``root/device``, enrolled with a
    simulated agency in ``root/dock``.
    """
    if config.device.device.hardware == "pi":
        return PiRecorder(config, root, dock=dock)
    if scenario is not None:
        return SimRecorder(scenario, root, config, on_entry)
    layout = DeviceLayout.from_config(root, config.device)
    require_enrolled(layout.root, config.device.device.id)
    scenario = Scenario("run", "interactive", datetime.now(timezone.utc).timestamp(),
                        48 * 3600)
    return SimRecorder(scenario, root, config, on_entry, device_root=layout.root,
                       find_dock=configured_dock(config, layout) if dock else None,
                       enroll=False)


def first_selfcheck(recorder: Recorder, within_s: float, step_s: float = 0.1):
    """Start the recorder and run it until its boot self-check is done."""
    recorder.start()
    waited = 0.0
    while not recorder.agent.reports and waited < within_s:
        if not recorder.advance(step_s):
            break
        waited += step_s
    if not recorder.agent.reports:
        raise HardwareError(f"self-check did not finish within {within_s:g} s")
    return recorder.agent.reports[0]
