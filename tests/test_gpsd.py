"""gpsd as the GNSS source (issue 15): a real gpsd (Debian's package) reads the simulated
receiver's pty; ``GpsdGnss`` reads gpsd's JSON reports over its socket."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from device.backends.gpsd import GpsdGnss
from device.clock import DeviceClock
from device.gnss import Gnss
from device.hardware import HardwareError
from dock.broker import free_port
from firmware_py.recording.metadata import fix_record
from simulator.clock import VirtualClock
from simulator.gnss import SimGnssReceiver
from tests.nmea_corpus import burst_for
from tests.test_gnss import LONDON

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime

# make test installs gpsd (scripts/system-deps.sh): a missing one fails here, never skips.
GPSD = shutil.which("gpsd") or "/usr/sbin/gpsd"


class RealTimeRig:
    """The simulated receiver in real time (gpsd is a real process), paced at 9600 baud."""

    def __init__(self, tmp_path, dialect=None) -> None:
        self.t0 = time.monotonic()
        self.clock = VirtualClock()
        self.sim = SimGnssReceiver(self.clock, time.time, LONDON, time_to_first_fix_s=1.0,
                                   baudrate=9600)
        if dialect is not None:
            self.sim.set_dialect(dialect)
        self.port = free_port()
        self.gpsd = subprocess.Popen(
            [GPSD, "-N", "-n", "-b", "-S", str(self.port), "-F", str(tmp_path / "gpsd.sock"),
             self.sim.port_path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.gnss = GpsdGnss("127.0.0.1", self.port)
        self.fixes = []

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.clock.advance(time.monotonic() - self.t0 - self.clock.now)
            self.sim.tick(self.clock.now)
            try:
                self.fixes += self.gnss.poll()
            except HardwareError:
                pass  # gpsd still starting
            time.sleep(0.005)

    def close(self) -> None:
        self.gnss.close()
        self.gpsd.terminate()
        self.gpsd.wait(timeout=5)
        self.sim.close()


def test_gpsd_reports_become_fixes_with_burst_start_times(tmp_path):
    rig = RealTimeRig(tmp_path)
    try:
        rig.run(7.0)
    finally:
        rig.close()
    assert isinstance(rig.gnss, Gnss)
    truth = {e.utc: e for e in rig.sim.recent_epochs}
    valid = [f for f in rig.fixes if f.valid]
    assert len(valid) >= 4, rig.fixes
    clock = DeviceClock()  # the system clock: what gpsd's TOFF reports against
    offsets = []
    for fix in valid:
        epoch = truth[int(fix.time_utc.timestamp())]
        assert fix.latitude == pytest.approx(epoch.latitude, abs=1e-6)
        assert fix.longitude == pytest.approx(epoch.longitude, abs=1e-6)
        assert fix.altitude_m == pytest.approx(LONDON.altitude_m)
        assert (fix.mode, fix.quality) == (3, 1)
        # gpsd sends SKY (satellites used, DOPs) only on GSV, which the simulated receiver
        # sends as real ones do, at the end of its burst: the fix may carry the SKY of the
        # epoch before (tests/test_contract_gnss.py).
        before = truth.get(epoch.utc - 1)
        assert fix.hdop in [epoch.hdop] + ([before.hdop] if before and before.valid else [])
        assert fix.satellites is not None and fix.satellites >= 4
        offsets.append(clock.offset_from(fix.time_utc.timestamp(), fix.received_at))
    # The simulator's UTC is the system clock: a correct clock, measured within 0.2 s —
    # gpsd's TOFF marks its first sentence's arrival (about +0.08 s at 9600 baud), and the
    # suite runs with other tests beside it on two cores.
    print(f"gpsd offsets {min(offsets):+.4f}..{max(offsets):+.4f} s")
    assert max(abs(o) for o in offsets) < 0.2
    # The metadata track takes a gpsd fix as it takes a serial one.
    record = fix_record(valid[-1], clock.now())
    assert record["kind"] == "gnss" and record["valid"] and record["mode"] == 3
    assert rig.gnss.stats.malformed == 0


def dialect(name):
    count = {"n": 0}

    def speak(second: int, has_fix: bool) -> list[str]:
        count["n"] += has_fix
        return burst_for(name, second, count["n"] if has_fix else None)[0]
    return speak


def test_gpsd_with_a_multi_constellation_rtk_receiver(tmp_path):
    rig = RealTimeRig(tmp_path, dialect("rtk_multi"))
    try:
        rig.run(6.0)
    finally:
        rig.close()
    valid = [f for f in rig.fixes if f.valid]
    assert len(valid) >= 3, rig.fixes
    assert all((f.mode, f.quality) == (3, 4) for f in valid)  # RTK fixed, from TPV status


def test_gpsd_satellites_and_dops_from_sky(tmp_path):
    rig = RealTimeRig(tmp_path, dialect("ublox_m8"))
    try:
        rig.run(6.0)
    finally:
        rig.close()
    valid = [f for f in rig.fixes if f.valid]
    assert len(valid) >= 3, rig.fixes
    print("gpsd u-blox:", valid[-1])
    assert valid[-1].satellites == 13 and valid[-1].hdop == pytest.approx(0.92)


def test_no_gpsd_is_a_hardware_error_not_a_hang():
    gnss = GpsdGnss("127.0.0.1", free_port())
    try:
        deadline = time.monotonic() + 3
        with pytest.raises(HardwareError, match="gpsd at 127.0.0.1"):
            while time.monotonic() < deadline:
                started = time.monotonic()
                gnss.poll()
                assert time.monotonic() - started < 0.05  # never blocks
                time.sleep(0.05)
    finally:
        gnss.close()


def test_gnss_source_gpsd_reaches_the_pi_settings():
    from bodycam.wiring import pi_settings
    from firmware_py.config import DeviceConfig, build
    device = build(DeviceConfig, {"gnss": {"source": "gpsd", "gpsd_host": "10.0.0.5",
                                           "gpsd_port": 2948}}, "device.toml")
    settings = pi_settings(device)
    assert (settings.gnss_source, settings.gpsd_host, settings.gpsd_port) == ("gpsd", "10.0.0.5", 2948)
    assert pi_settings(build(DeviceConfig, {}, "device.toml")).gnss_source == "serial"


@pytest.mark.req("R7.5")
def test_a_pi_recorder_on_gpsd_self_checks_its_gnss(tmp_path, monkeypatch):
    """``gnss.source = "gpsd"`` on pi hardware: the recorder's boot self-check reads its fix
    through gpsd (the Pi's other parts as in tests/test_pi_docking.py)."""
    from gpiozero import Device as GpioDevice
    from gpiozero.pins.mock import MockFactory

    from bodycam.wiring import PiRecorder
    from dock.enrollment import enroll_device
    from firmware_py.config import load
    from firmware_py.evidence import audit
    from simulator.battery import SimBattery

    monkeypatch.setattr(GpioDevice, "pin_factory", MockFactory())
    root = tmp_path / "recorder"
    enroll_device(root, tmp_path / "dock", "BC-0005", "Brigade")
    SimBattery(tmp_path / "power_supply", start_percent=80.0)
    rig = RealTimeRig(tmp_path)
    config = load(overrides={
        "device": {"hardware": "pi"},
        "gnss": {"source": "gpsd", "gpsd_port": rig.port},
        "power": {"sysfs_root": str(tmp_path / "power_supply")}})
    recorder = None
    try:
        rig.run(3.0)  # gpsd has the receiver and a fix before the recorder boots
        recorder = PiRecorder(config, root, dock=False)
        recorder.start()
        deadline = time.monotonic() + 20
        while not recorder.agent.reports and time.monotonic() < deadline:
            rig.clock.advance(time.monotonic() - rig.t0 - rig.clock.now)
            rig.sim.tick(rig.clock.now)
            recorder.advance(0.05)
    finally:
        if recorder is not None:
            recorder.finish()
        rig.close()
    assert recorder.agent.reports, "no self-check within 20 s"
    checks = {c.name: c for c in recorder.agent.reports[0].checks}
    assert checks["gnss"].status.value == "pass" and checks["gnss"].message.startswith("fix ")
    assert checks["camera"].status.value == "fail"  # no camera backend on pi in this build
    kinds = [e["kind"] for e in audit.scan(root / "audit.jsonl")[0]]
    assert "gnss_fix" in kinds
