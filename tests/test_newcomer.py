"""What a new user could not do: a dock on the network, a recorder enrolled by the one
command, ``bodycam run`` in real time in a process of its own, record pressed and the
recorder docked through its control socket — and the evidence arrives at the dock,
verified and receipted, the recorder's evidence directory empty (R13.1, R13.2).

Everything here runs as separate programs, as at a brigade: ``bodycam dock serve`` with
Mosquitto (mutual TLS, the shipped ACL) listening on every interface with a certificate
naming the address the recorder uses, ``bodycam dock enroll``, ``bodycam run`` on
simulated hardware paced by the wall clock, ``bodycam verify``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dock.broker import free_port

UNIT = "Baofeng County HRSS Labour Inspection Brigade"


def bodycam(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bodycam", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


class ControlClient:
    """The test's hands on the recorder: one line out, one line back."""

    def __init__(self, path: Path, within_s: float = 60) -> None:
        deadline = time.monotonic() + within_s
        while True:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self._sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._reader = self._sock.makefile("r")

    def send(self, line: str) -> str:
        self._sock.sendall(line.encode() + b"\n")
        return self._reader.readline().strip()

    def status(self) -> dict:
        return json.loads(self.send("status"))

    def wait_for(self, check, within_s: float, what: str) -> dict:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            status = self.status()
            if check(status):
                return status
            time.sleep(0.25)
        raise AssertionError(f"{what} did not happen within {within_s:g} s: {status}")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


def dock_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "dock.toml"
    path.write_text(f"""
[dock]
id = "dock-brigade"
dir = "{tmp_path / 'dock'}"
archive = "{tmp_path / 'archive'}"
[broker]
mode = "mosquitto"
host = "0.0.0.0"
port = {port}
names = ["localhost", "127.0.0.1"]
[enrolment]
port = 0
""")
    return path


def device_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(f"""
[device]
id = "BC-0007"
hardware = "sim"
[video]
width = 320
height = 180
fps = 10
[recording]
segment_seconds = 10
pre_event_seconds = 2
[dock]
host = "127.0.0.1"
port = {port}
retry_s = 1.0
""")
    return path


@pytest.mark.req("R13.1", "R13.2")
def test_a_new_recorder_records_docks_and_its_evidence_reaches_the_dock(tmp_path):
    port = free_port("127.0.0.1")
    dock_toml = dock_config(tmp_path, port)
    serve = subprocess.Popen([sys.executable, "-m", "bodycam", "dock", "--config", str(dock_toml),
                              "serve", "--seconds", "240"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = None
    try:
        assert "listening through mosquitto" in serve.stdout.readline()
        root = tmp_path / "recorder"
        enrolled = bodycam("dock", "--config", dock_toml, "enroll", "--device-root", root,
                           "--device-id", "BC-0007", "--unit", UNIT)
        assert enrolled.returncode == 0, enrolled.stderr
        run = subprocess.Popen([sys.executable, "-m", "bodycam", "run", "--config",
                                device_config(tmp_path, port), "--root", root,
                                "--seconds", "200"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        hands = ControlClient(root / "control.sock")
        try:
            hands.wait_for(lambda s: s["state"] == "ready", 30, "the boot self-check")
            assert hands.send("press record").startswith("ok press record")
            hands.wait_for(lambda s: s["state"] == "recording", 10, "recording")
            time.sleep(3)
            assert hands.send("press photo").startswith("ok")
            time.sleep(2)
            assert hands.send("long_press record").startswith("ok")  # stop, end the activity
            hands.wait_for(lambda s: s["state"] == "ready" and s["evidence_files"] > 0, 15,
                           "the activity's end")
            assert hands.send("dock").startswith("ok dock")
            status = hands.wait_for(lambda s: s["sync_sessions"] >= 1 and not s["syncing"], 60,
                                    "a sync session")
            assert hands.send("launch rockets").startswith("error not a command")
        finally:
            hands.close()
    finally:
        if run is not None:
            run.terminate()
            run_out, run_err = run.communicate(timeout=60)
        serve.terminate()
        serve_out, serve_err = serve.communicate(timeout=60)
    assert run.returncode == 0, run_err[-3000:]
    assert "Traceback" not in run_err and "Traceback" not in serve_err, run_err + serve_err
    assert status["last_sync"]["failed"] == 0
    assert status["last_sync"]["receipted"] == status["last_sync"]["offered"] > 3
    assert status["evidence_files"] == 0, "everything receipted was deleted on the recorder"
    left = [p for p in (root / "evidence").rglob("*") if p.is_file()
            and not p.name.startswith(".")]
    assert left == []
    assert "docked" in run_out  # the timeline the recorder printed
    assert "BC-0007:" in serve_out  # the custodian saw the device come in
    verified = bodycam("verify", tmp_path / "archive" / "BC-0007", "--trust", tmp_path / "dock",
                       "--key", tmp_path / "dock", "--json")
    assert verified.returncode == 0, verified.stdout[-3000:]
    report = json.loads(verified.stdout)
    kinds = {item["kind"] for item in report["items"]}
    assert {"segment", "photo", "activity"} <= kinds


@pytest.mark.req("R18.3")
def test_an_unenrolled_recorder_refuses_and_says_what_to_run(tmp_path):
    result = bodycam("run", "--root", tmp_path / "new", "--seconds", "5")
    assert result.returncode == 2
    assert "not enrolled" in result.stderr and "bodycam dock enroll" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "new" / "dock").exists(), "it did not enrol itself"


@pytest.mark.parametrize("line, answer", [
    ("press record", "ok press record"),
    ("hold marker 2", "ok hold marker for 2 s"),
    ("fault battery_drain 10", "ok fault battery_drain by 10 %"),
    ('{"action": "press", "button": "photo"}', "ok press photo"),
    ("press nose", "error command.button: 'nose' is not one of record, photo, marker"),
    ("hold record", "error not a command"),
    ('{"action": "power_cut"}', "error command.action: 'power_cut' is not one of"),
    ("\x00\xff", "error not a command"),
])
def test_control_commands_are_checked_like_scenario_events(line, answer):
    import threading

    from bodycam.control import Control

    control = Control()
    done: list = []
    reply: list[str] = []
    worker = threading.Thread(target=lambda: reply.append(control.submit(line)))
    worker.start()
    while worker.is_alive():
        control.drain(done.append, lambda: {})
        time.sleep(0.01)
    assert reply[0].startswith(answer)
    assert bool(done) == answer.startswith("ok")


def test_the_keyboard_is_the_officers_buttons(tmp_path):
    """At a terminal, single keys press the buttons and dock the recorder; q quits."""
    import os
    import pty

    from dock.enrollment import enroll_device

    root = tmp_path / "recorder"
    enroll_device(root, tmp_path / "dock", "BC-0009", UNIT)
    config = tmp_path / "device.toml"
    config.write_text('[device]\nid = "BC-0009"\n[video]\nwidth = 320\nheight = 180\nfps = 10\n')
    master, slave = pty.openpty()
    run = subprocess.Popen([sys.executable, "-m", "bodycam", "run", "--config", str(config),
                            "--root", str(root), "--seconds", "60"],
                           stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    os.close(slave)
    try:
        hands = ControlClient(root / "control.sock")
        hands.wait_for(lambda s: s["state"] == "ready", 30, "the boot self-check")
        os.write(master, b"r")
        hands.wait_for(lambda s: s["state"] == "recording", 10, "recording from the r key")
        os.write(master, b"R")
        hands.wait_for(lambda s: s["state"] == "ready", 15, "the R key ending the activity")
        os.write(master, b"d")
        hands.wait_for(lambda s: s["state"] == "docked", 10, "docking from the d key")
        hands.close()
        os.write(master, b"q")
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        os.close(master)
    assert run.returncode == 0, err[-2000:]
    assert "keys: r/R record" in out
    assert "[r] ok press record" in out and "[d] ok dock" in out
    assert "recording_started" in out and "activity_ended" in out
    assert "shutdown" in out  # q stopped it in order
