"""The recorder as a systemd service: the sd_notify messages its loop sends (READY, the
watchdog, STOPPING) to a fake ``NOTIFY_SOCKET``, the watchdog going quiet when the loop
hangs, the shipped unit through ``systemd-analyze verify``, and ``bodycam install`` into a
prefix.

The agent's loop runs in real time here (it is the real-time loop systemd watches), on
the Pi's backends as ``tests/test_pi_docking.py`` runs them; each test takes a second or two.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from gpiozero import Device as GpioDevice
from gpiozero.pins.mock import MockFactory

from bodycam.cli import main as bodycam
from bodycam.install import UNIT_TEMPLATE, render_unit
from bodycam.wiring import PiRecorder
from dock.enrollment import enroll_device
from firmware_py.agent.supervision import ServiceNotifier
from firmware_py.config import load
from simulator.battery import SimBattery

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime

UNIT = "Baofeng County HRSS Labour Inspection Brigade"


class FakeSystemd:
    """The receiving end of ``NOTIFY_SOCKET``: every datagram with when it came."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []

    def drain(self, seconds: float) -> list[tuple[float, str]]:
        """Collect what arrives for ``seconds`` (real time: the loop runs in real time)."""
        got = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            got.append((time.monotonic(), data.decode()))
        self.messages += got
        return got

    def kinds(self) -> list[str]:
        return [m.split("\n")[0] for _, m in self.messages]

    def until(self, seen: Callable[[list[str]], bool], within_s: float) -> bool:
        """Collect until ``seen(kinds so far)`` holds; False if it did not within the time."""
        end = time.monotonic() + within_s
        while not seen(self.kinds()):
            if time.monotonic() > end:
                return False
            self.drain(0.05)
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path):
    fake = FakeSystemd(tmp_path / "notify")
    yield fake
    fake.close()


def test_the_notifier_speaks_sd_notify_and_paces_the_watchdog(systemd):
    now = [100.0]
    notifier = ServiceNotifier(systemd.path, watchdog_s=2.0, monotonic=lambda: now[0])
    notifier.ready("BC-0001: ready")
    for _ in range(5):  # five passes of the loop within one second: one ping
        notifier.alive()
        now[0] += 0.2
    now[0] += 0.1  # half the interval since the first ping
    notifier.alive()
    notifier.stopping()
    assert [m for _, m in systemd.drain(0.2)] == [
        "READY=1\nSTATUS=BC-0001: ready", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


def test_the_environment_decides_whether_and_how_often_to_ping(systemd):
    env = {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "4000000",
           "WATCHDOG_PID": str(os.getpid())}
    notifier = ServiceNotifier.from_environment(env)
    assert notifier.supervised and notifier.watchdog_s == 4.0
    assert ServiceNotifier.from_environment({**env, "WATCHDOG_PID": "1"}).watchdog_s is None
    assert ServiceNotifier.from_environment({**env, "WATCHDOG_USEC": "soon"}).watchdog_s is None
    unsupervised = ServiceNotifier.from_environment({})
    assert not unsupervised.supervised and unsupervised.notify("READY=1") is False
    # An abstract-namespace address (systemd's own form) is reached through a NUL byte.
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0bodycam-test-{os.getpid()}")
    try:
        assert ServiceNotifier(f"@bodycam-test-{os.getpid()}").notify("READY=1")
        assert abstract.recv(100) == b"READY=1"
    finally:
        abstract.close()


@pytest.fixture
def pi_recorder(tmp_path, monkeypatch):
    monkeypatch.setattr(GpioDevice, "pin_factory", MockFactory())
    root = tmp_path / "device"
    enroll_device(root, tmp_path / "dock", "BC-0001", UNIT)
    SimBattery(tmp_path / "power_supply", start_percent=80.0)
    gnss_master, gnss_slave = os.openpty()
    config = load(overrides={
        "device": {"hardware": "pi"},
        "audio": {"input_device": "no such card", "output_device": "no such card"},
        "gnss": {"port": os.ttyname(gnss_slave)},
        "power": {"sysfs_root": str(tmp_path / "power_supply")}})
    recorder = PiRecorder(config, root, dock=False)
    yield recorder
    os.close(gnss_master)
    os.close(gnss_slave)


def test_the_recorder_loop_says_ready_pings_the_watchdog_and_goes_quiet_when_it_hangs(
        systemd, pi_recorder):
    recorder = pi_recorder
    agent = recorder.agent
    hang, hanging, release = threading.Event(), threading.Event(), threading.Event()
    real_step = agent.step

    def step() -> None:  # a step that never returns while ``hang`` is set
        if hang.is_set():
            hanging.set()
            release.wait()
        real_step()

    agent.step = step
    stop = threading.Event()
    notifier = ServiceNotifier(systemd.path, watchdog_s=0.2)
    loop = threading.Thread(target=recorder.run, args=(stop, notifier), daemon=True)
    loop.start()
    try:
        # Real time on a shared machine: wait for what must come, with generous limits.
        assert systemd.until(lambda kinds: "READY=1" in kinds, 20), systemd.kinds()
        assert systemd.kinds()[0] == "READY=1"
        assert systemd.until(lambda kinds: kinds.count("WATCHDOG=1") >= 4, 10), systemd.kinds()
        hang.set()
        assert hanging.wait(10), "the loop never reached its hanging step"
        systemd.drain(0.1)  # a ping sent just before the hang
        hung = systemd.drain(1.0)  # five watchdog half-intervals
        assert hung == [], f"the watchdog was pinged by a hung loop: {hung}"
        hang.clear()
        release.set()
        before = len(systemd.messages)
        assert systemd.until(lambda kinds: "WATCHDOG=1" in kinds[before:], 10), \
            "no ping once the loop ran again"
    finally:
        release.set()
        stop.set()
        loop.join(timeout=20)
        recorder.finish()
    assert not loop.is_alive()
    assert systemd.until(lambda kinds: kinds[-1:] == ["STOPPING=1"], 5), systemd.kinds()


def test_bodycam_run_tells_systemd_from_its_environment(tmp_path, systemd):
    root = tmp_path / "device"
    enroll_device(root, tmp_path / "dock", "BC-0001", UNIT)
    env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"}
    run = subprocess.Popen([str(Path(sys.executable).parent / "bodycam"), "run", "--root", str(root), "--seconds", "3"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        systemd.drain(0.2)
    if run.poll() is None:
        run.kill()
    systemd.drain(0.1)
    assert run.wait() == 0, run.stderr.read().decode() if run.stderr else ""
    kinds = [m.split("\n")[0] for _, m in systemd.messages]
    assert kinds[0] == "READY=1" and kinds[-1] == "STOPPING=1", kinds
    assert kinds.count("WATCHDOG=1") >= 3, kinds


def systemd_analyze(unit: Path) -> subprocess.CompletedProcess:
    program = shutil.which("systemd-analyze")
    assert program, "systemd-analyze is missing: run scripts/system-deps.sh (make test does)"
    return subprocess.run([program, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)


def test_install_into_a_prefix_writes_a_unit_systemd_accepts(tmp_path, capsys):
    assert bodycam(["install", "--root", str(tmp_path), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"
    for what in ("install packages: apt-get install -y python3-picamera2",
                 "create system user bodycam in groups "
                 "video,audio,gpio,i2c,dialout", "write " + str(tmp_path / "etc/bodycam/device.toml"),
                 "enable the service: systemctl daemon-reload && systemctl enable"):
        assert f"would {what}" in said, said

    assert bodycam(["install", "--root", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert f"not into {tmp_path}: install packages" in said  # apt is never run into a prefix
    unit = tmp_path / "etc/systemd/system/bodycam.service"
    device = load(tmp_path / "etc/bodycam/device.toml", tmp_path / "etc/bodycam/policy.toml")
    assert device.device.device.hardware == "pi"
    text = unit.read_text()
    for line in ("Type=notify", "WatchdogSec=10s", "Restart=always", "User=bodycam",
                 "SupplementaryGroups=video audio gpio i2c dialout", "ProtectSystem=strict",
                 "StateDirectory=bodycam", "NoNewPrivileges=yes",
                 "SystemCallFilter=@system-service", "--root /var/lib/bodycam"):
        assert line in text.splitlines() or line in text, line
    result = systemd_analyze(unit)
    assert result.returncode == 0, result.stderr

    rule = (tmp_path / "etc/udev/rules.d/60-bodycam-rtc.rules").read_text()
    assert 'SUBSYSTEM=="rtc"' in rule and 'GROUP="bodycam"' in rule and 'MODE="0640"' in rule

    # A second install keeps the officer's configuration as it is.
    (tmp_path / "etc/bodycam/device.toml").write_text('[device]\nhardware = "pi"\nid = "BC-0007"\n')
    assert bodycam(["install", "--root", str(tmp_path)]) == 0
    assert "keep " + str(tmp_path / "etc/bodycam/device.toml") in capsys.readouterr().out
    assert "BC-0007" in (tmp_path / "etc/bodycam/device.toml").read_text()


@pytest.mark.req("R7.4")
def test_the_unit_may_set_the_rtc_but_never_the_system_clock(tmp_path):
    """docs/rtc.md: CAP_SYS_TIME alone (RTC_SET_TIME needs it), the syscalls that set the
    system clock filtered, no ProtectClock= (it would make the RTC read-only) and no
    device allow-list (it would shut out the camera, GPIO, I2C and the UART)."""
    unit = tmp_path / "bodycam.service"
    unit.write_text(render_unit(Path(sys.executable)))
    lines = unit.read_text().splitlines()
    for line in ("CapabilityBoundingSet=CAP_SYS_TIME", "AmbientCapabilities=CAP_SYS_TIME",
                 "SystemCallFilter=@system-service", "SystemCallFilter=~@clock",
                 "NoNewPrivileges=yes"):
        assert line in lines, line
    assert not [l for l in lines if l.startswith(("ProtectClock=", "DeviceAllow=",
                                                  "PrivateDevices="))]
    program = shutil.which("systemd-analyze")
    clock_calls = subprocess.run([program, "syscall-filter", "@clock"], capture_output=True,
                                 text=True, timeout=60).stdout.split()
    assert {"clock_settime", "settimeofday", "adjtimex", "clock_adjtime"} <= set(clock_calls)
    assert "ioctl" not in clock_calls  # RTC_SET_TIME goes through ioctl, which stays allowed
    security = subprocess.run([program, "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60).stdout
    assert "✓ SystemCallFilter=~@clock" in security
    capabilities = [l for l in security.splitlines() if "CapabilityBoundingSet=" in l
                    and l.startswith("✗")]
    assert [l.split()[1] for l in capabilities] == ["CapabilityBoundingSet=~CAP_SYS_TIME"]


def test_systemd_analyze_refuses_a_unit_whose_program_is_missing(tmp_path):
    # The check above can fail: a unit pointing at a program that is not there is refused.
    unit = tmp_path / "bodycam.service"
    unit.write_text(render_unit(tmp_path / "no-such-bodycam"))
    result = systemd_analyze(unit)
    assert result.returncode != 0 and "no-such-bodycam" in result.stderr
    assert "@BODYCAM@" in UNIT_TEMPLATE.read_text()


def test_an_unenrolled_pi_service_says_so_waits_and_records_once_enrolled(tmp_path, systemd):
    """``bodycam run`` on a Pi under systemd, not enrolled: READY with the reason, the
    watchdog fed, the LEDs blinking ``unenrolled`` — and once enrolment appears (as
    ``bodycam enroll --code`` leaves it) the recorder itself starts, in the same process."""
    root = tmp_path / "device"
    SimBattery(tmp_path / "power_supply", start_percent=80.0)
    gnss_master, gnss_slave = os.openpty()
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\nhardware = "pi"\n[gnss]\nport = "{os.ttyname(gnss_slave)}"\n'
                      f'[power]\nsysfs_root = "{tmp_path / "power_supply"}"\n'
                      '[audio]\noutput_device = "no such card"\ninput_device = "no such card"\n')
    env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000",
           "GPIOZERO_PIN_FACTORY": "mock"}  # no GPIO here: gpiozero's own mock pins
    run = subprocess.Popen([str(Path(sys.executable).parent / "bodycam"), "run", "--config",
                            str(config), "--root", str(root), "--seconds", "30"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert systemd.until(lambda kinds: "READY=1" in kinds, 30), systemd.kinds()
        ready = next(m for _, m in systemd.messages if m.startswith("READY=1"))
        assert "STATUS=not enrolled" in ready, ready
        assert systemd.until(lambda kinds: kinds.count("WATCHDOG=1") >= 3, 5), systemd.kinds()
        assert not (root / "evidence").exists(), "an unenrolled recorder writes no evidence"
        enroll_device(root, tmp_path / "dock", "BC-0001", UNIT)  # enrolled over the network
        # The recorder itself now starts: its agent's loop says READY again.
        assert systemd.until(lambda kinds: kinds.count("READY=1") >= 2, 30), systemd.kinds()
        assert systemd.until(lambda _: (root / "audit.jsonl").exists(), 10)
    finally:
        run.terminate()
        stderr = run.communicate(timeout=30)[1]
        os.close(gnss_master)
        os.close(gnss_slave)
    assert run.returncode == 0, stderr
    assert "not enrolled" in stderr  # the one line in the journal
    systemd.drain(0.2)
    assert systemd.kinds()[-1] == "STOPPING=1"


def test_waiting_for_enrolment_blinks_speaks_once_and_ends_when_enrolled(tmp_path, systemd,
                                                                         monkeypatch):
    from bodycam.unenrolled import wait_for_enrolment
    from device.backends.gpio import GpioIndicators
    from device.indicators import Output
    from firmware_py.fieldwork.speech import PhraseRenderer
    from simulator.audio import AcousticSpace, SimSpeaker

    monkeypatch.setattr(GpioDevice, "pin_factory", MockFactory())
    indicators = GpioIndicators({Output.LED_RED: 6, Output.LED_BLUE: 13, Output.LED_GREEN: 5})
    speaker = SimSpeaker(AcousticSpace(16_000), time.monotonic)
    root, stop, result = tmp_path / "device", threading.Event(), []
    waiting = threading.Thread(target=lambda: result.append(wait_for_enrolment(
        root, "BC-0001", stop, indicators=indicators, speaker=speaker,
        renderer=PhraseRenderer(tmp_path / "speech", 16_000),
        supervisor=ServiceNotifier(systemd.path, watchdog_s=0.2), poll_s=0.2)), daemon=True)
    red = GpioDevice.pin_factory.pin(6)
    waiting.start()
    try:
        states = []
        end = time.monotonic() + 3.5
        while time.monotonic() < end:  # the red LED: a second on, a second off
            states.append(red.state)
            time.sleep(0.05)
        changes = sum(1 for a, b in zip(states, states[1:]) if a != b)
        assert changes >= 3, states  # on, off, on again: blinking, not just lit
        assert len(speaker.played) == 1 and speaker.played[0][1] > 2.0  # said once, both languages
        enroll_device(root, tmp_path / "dock", "BC-0001", UNIT)
        waiting.join(timeout=5)
    finally:
        stop.set()
        waiting.join(timeout=5)
        indicators.close()
    assert result == [True]
    assert red.state == 0, "the LEDs are left off for the recorder to take over"


def test_gpiozero_fallback_warnings_go_to_the_log_not_the_console(tmp_path, monkeypatch, caplog,
                                                                    capfd):
    """No pin factory chosen (gpiozero's default search, as on a Pi without
    GPIOZERO_PIN_FACTORY): whatever gpiozero warns on its way is logged, never printed."""
    import logging
    import warnings

    from bodycam.wiring import pi_settings
    from device.backends.pi import build_pi_hardware
    from device.hardware import HardwareError

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(GpioDevice, "pin_factory", None)
    SimBattery(tmp_path / "power_supply", start_percent=80.0)
    gnss_master, gnss_slave = os.openpty()
    config = load(overrides={"device": {"hardware": "pi"},
                             "gnss": {"port": os.ttyname(gnss_slave)},
                             "power": {"sysfs_root": str(tmp_path / "power_supply")}})
    caplog.set_level(logging.INFO, logger="device.backends.pi")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning escaping would fail here
            try:
                build_pi_hardware(pi_settings(config.device), tmp_path).close()
            except HardwareError as exc:  # a machine whose GPIO gpiozero cannot open
                assert "GPIO" in str(exc)
    finally:
        os.close(gnss_master)
        os.close(gnss_slave)
        GpioDevice.pin_factory = None  # whatever gpiozero chose here stays in this test
    assert "Falling back from lgpio" in caplog.text
    captured = capfd.readouterr()
    assert "Falling back" not in captured.err + captured.out
