"""The command line's edges (issue 12): scenario names against folders of the same name,
a reader that stops early, exit code 3 for a part that cannot be opened, ``dock --config``
on either side of the action, the shipped scenarios in ``--help``, and no paho ERROR at the
end of a run that went well."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bodycam import device_commands
from bodycam.cli import build_parser, main
from device.clock import DeviceClock
from device.hardware import HardwareError
from firmware_py.evidence import audit
from simulator.harness import scenario as scenarios

ROOT = Path(__file__).resolve().parent.parent


# --- (4a) a shipped scenario's name wins over a folder of that name -----------------------

def test_a_folder_named_like_a_shipped_scenario_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cold-start").mkdir()  # what `simulate cold-start --out cold-start` leaves
    assert scenarios.load("cold-start").name == "cold-start"
    assert main(["selfcheck", "--hardware", "sim", "--scenario", "cold-start", "--json",
                 "--out", str(tmp_path / "dev")]) == 1  # cold-start's self-check fails


def test_a_folder_given_as_the_scenario_is_a_scenario_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    assert main(["simulate", "mine", "--out", str(tmp_path / "o")]) == 2
    assert "mine: is a directory, not a scenario file" in capsys.readouterr().err
    # An existing file wins over a shipped name: it is what the officer pointed at.
    (tmp_path / "patrol").write_text('[scenario]\nname = "mine"\nduration = "1m"\n')
    assert scenarios.load("patrol").name == "mine"


# --- (4b) a reader that stops early -------------------------------------------------------

def test_a_reader_that_closes_early_gets_no_traceback(tmp_path):
    log = audit.AuditLog(tmp_path / "audit.jsonl", DeviceClock(), durable=False)
    for n in range(3000):
        log.append("note", {"n": n, "text": "x" * 60})
    log.close()
    bodycam = subprocess.Popen([sys.executable, "-m", "bodycam", "log", str(tmp_path)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert bodycam.stdout is not None and bodycam.stderr is not None
    bodycam.stdout.readline()  # `| head -1`: read a line, then go away
    bodycam.stdout.close()
    err = bodycam.stderr.read().decode()
    assert bodycam.wait(60) == 1, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert err == ""


# --- (4c) a part that cannot be opened ----------------------------------------------------

def test_hardware_error_is_exit_3(monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise HardwareError("/dev/serial0: no such device (GNSS receiver)")

    monkeypatch.setattr(device_commands, "open_recorder", refuse)
    assert main(["selfcheck", "--hardware", "pi", "--root", "."]) == 3
    assert "hardware error: /dev/serial0: no such device" in capsys.readouterr().err
    readme = (ROOT / "README.md").read_text()
    assert "3 a part of the hardware could not be opened" in " ".join(readme.split())


# --- (4d) no paho ERROR at the end of a run that went well --------------------------------

SHORT_DOCKED = """
[scenario]
name = "short-docked"
duration = "40s"
[config.video]
width = 160
height = 120
fps = 5
bitrate = 100000
[config.stamp]
font_px = 12
[[event]]
at = "2s"
action = "press"
button = "record"
[[event]]
at = "12s"
action = "press"
button = "record"
[[event]]
at = "15s"
action = "dock"
"""


def test_a_short_docked_simulation_logs_no_error(tmp_path):
    path = tmp_path / "short.toml"
    path.write_text(SHORT_DOCKED)
    run = subprocess.run([sys.executable, "-m", "bodycam", "simulate", str(path), "--out",
                          str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "synced" in run.stdout
    assert not [line for line in run.stderr.splitlines() if " ERROR " in line], run.stderr


def test_stopping_the_dock_logs_no_paho_error(tmp_path, monkeypatch, caplog):
    """The cause of "Client is not connected" at shutdown: paho's network thread closed the
    socket after the DISCONNECT and went round its loop once more before ``loop_stop`` told
    it to stop. Made certain here by a ``loop_stop`` that comes late, as it does when the
    stopping thread is not scheduled at once."""
    import paho.mqtt.client as paho

    from dock.broker import EmbeddedBroker
    from dock.service import DockService

    late = threading.Event()
    original = paho.Client.loop_stop

    def loop_stop_late(self):
        late.wait(0.3)
        return original(self)

    monkeypatch.setattr(paho.Client, "loop_stop", loop_stop_late)
    caplog.set_level(logging.DEBUG, logger="sync.mqtt")
    with EmbeddedBroker() as broker:
        dock = DockService(tmp_path / "dock", tmp_path / "archive", broker.host, broker.port)
        dock.start()
        dock.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


# --- (5a) dock --config before or after the action ----------------------------------------

def test_dock_config_goes_before_or_after_the_action(tmp_path, capsys):
    conf = tmp_path / "dock.toml"
    conf.write_text(f'[dock]\ndir = "{tmp_path / "d"}"\narchive = "{tmp_path / "a"}"\n')
    parser = build_parser()
    for argv in (["dock", "serve", "--config", str(conf)],
                 ["dock", "--config", str(conf), "serve"],
                 ["dock", "ledger", "--config", str(conf), "--csv"],
                 ["dock", "assign", "BC-1", "OFF-1", "--config", str(conf)],
                 ["dock", "enroll", "--config", str(conf), "--device-root", "r",
                  "--device-id", "BC-1", "--unit", "U"]):
        assert parser.parse_args(argv).config == conf, argv
    assert parser.parse_args(["dock", "withdraw", "BC-1", "--config", str(conf)]).config == conf
    assert parser.parse_args(["dock", "serve"]).config is None
    assert main(["dock", "ledger", "--config", str(conf), "--csv"]) == 0
    assert (tmp_path / "d").is_dir() and (tmp_path / "a").is_dir()


# --- (5e) the shipped scenarios, all of them, in --help -----------------------------------

def test_simulate_help_lists_every_shipped_scenario(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    shipped = sorted(p.stem for p in scenarios.SCENARIO_DIR.glob("*.toml"))
    assert "obstruction" in shipped
    assert f"({', '.join(shipped)})" in text
