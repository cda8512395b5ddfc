"""A short shift docked into the simulated dock: a real archive for the tests of what is
made from it (docs/verify-by-hand.sh, playable copies, long-term copies)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from bodycam.simulation import run_docked
from simulator.harness import scenario as sc

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 10, "pre_event_seconds": 3}}

# A recording of 19 s in three segments and a pre-event part, a photo and a marker in it,
# the activity ended, then the dock.
EVENTS = [{"at": 5, "action": "press", "button": "record"},
          {"at": 12, "action": "press", "button": "photo"},
          {"at": 14, "action": "press", "button": "marker"},
          {"at": 24, "action": "long_press", "button": "record"},
          {"at": 30, "action": "dock"}]


def docked_shift(out: Path) -> Path:
    """Run the shift under ``out``: ``out/archive/BC-0001`` is the device's archive,
    ``out/dock`` the dock, ``out/device.pub.pem`` the device's key from the registry."""
    _, sessions = run_docked(sc.parse({"scenario": {"name": "docked", "duration": "40s",
                                                    "start": "2026-11-29T09:00:00+08:00"},
                                       "config": FAST, "event": EVENTS}, "docked.toml"), out)
    assert sessions, "the shift never docked"
    (out / "device.pub.pem").write_text(
        json.loads((out / "dock" / "devices" / "BC-0001.json").read_text())["public_key"])
    return out


_shared: dict[str, Path] = {}


def shared_docked_shift(factory) -> Path:
    """One docked shift for the whole test session (``factory``: pytest's
    ``tmp_path_factory``): the tests that read it copy before they change anything, and
    write only under their own folders of it."""
    if "out" not in _shared:
        _shared["out"] = docked_shift(factory.mktemp("docked-shift"))
    return _shared["out"]


@dataclass
class Ran:
    """What a ``bodycam`` command run in this process returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def bodycam(*args: str) -> Ran:
    """``bodycam ARGS`` in this process (the command line's own ``main``): the same code as
    the installed command, without a second interpreter's start-up per call."""
    from bodycam.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Ran(code, out.getvalue(), err.getvalue())
