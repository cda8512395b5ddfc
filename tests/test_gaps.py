"""Gaps in an activity's footage and their explanation (Art. 8, 12; firmware_py/evidence/gaps.py),
found by ``bodycam verify`` from sealed manifests alone.

A shift where the officer stops for an obstruction longer than the pre-event buffer has one
gap, explained by the sealed work record of that interruption with its reason. Take the
work record away and the same gap is reported unexplained; take a segment out of the
middle of a recording and the break inside the recording is unexplained too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from simulator.harness import scenario as sc
from bodycam.simulation import simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 10, "pre_event_seconds": 2}}
EVENTS = [{"at": 3, "action": "press", "button": "record"},
          {"at": 25, "action": "press", "button": "record"},  # the party obstructs
          {"at": 28, "action": "press", "button": "marker"},  # two presses: obstruction
          {"at": 29, "action": "press", "button": "marker"},
          {"at": 45, "action": "press", "button": "record"},  # resumed 20 s later
          {"at": 60, "action": "long_press", "button": "record"}]


@pytest.fixture(scope="module")
def shift(tmp_path_factory):
    out = tmp_path_factory.mktemp("gaps")
    simulation(sc.parse({"scenario": {"name": "gaps", "duration": "65s"}, "config": FAST,
                         "event": EVENTS}, "gaps.toml"), out).run()
    return out


def verify(out, evidence):
    proc = subprocess.run([sys.executable, "-m", "bodycam", "verify", str(evidence),
                           "--trust", str(out / "dock"), "--json"],
                          capture_output=True, text=True)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.req("R12.1", "R12.3")
def test_an_interruption_longer_than_the_buffer_is_an_explained_gap(shift):
    code, report = verify(shift, shift / "device" / "evidence")
    assert code == 0, report["gaps"]
    (gap,) = report["gaps"]
    # Footage stops at the press (25 s) and starts again 2 s (the buffer) before the resume
    # at 45 s: 18 s without footage, explained by interruption 1, reason obstruction.
    assert 17.0 <= gap["seconds"] <= 19.0
    assert not gap["within_recording"]
    (why,) = gap["explained_by"]
    assert (why["interruption"], why["reason"]) == (1, "obstruction")
    assert report["unexplained_gaps"] == 0


@pytest.mark.req("R12.3", "R18.1")
def test_without_its_work_record_the_gap_is_unexplained(shift, tmp_path):
    evidence = tmp_path / "evidence"
    shutil.copytree(shift / "device" / "evidence", evidence)
    for path in evidence.rglob("interruption-01*"):
        path.unlink()
    code, report = verify(shift, evidence)
    assert code != 0
    (gap,) = report["gaps"]
    assert not gap["explained"] and report["unexplained_gaps"] == 1
    assert any(report["missing"].values()), "the work record's seal is missing from the chain"


@pytest.mark.req("R18.1")
def test_a_segment_taken_from_inside_a_recording_is_an_unexplained_break(shift, tmp_path):
    evidence = tmp_path / "evidence"
    shutil.copytree(shift / "device" / "evidence", evidence)
    manifests = sorted(evidence.rglob("*_000003_*.manifest.json"))
    assert manifests, "the third file of the first recording"
    stem = manifests[0].name[: -len(".manifest.json")]
    for path in evidence.rglob(f"{stem}*"):
        path.unlink()
    code, report = verify(shift, evidence)
    assert code != 0
    inside = [g for g in report["gaps"] if g["within_recording"]]
    assert len(inside) == 1 and not inside[0]["explained"]
    assert 9.0 <= inside[0]["seconds"] <= 11.0  # one 10 s segment
