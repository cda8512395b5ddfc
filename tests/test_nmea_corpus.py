"""The NMEA corpus (``tests/data/nmea/``): receiver outputs through the serial reader over
a pty, each epoch checked against the expected epochs beside it (issue 15)."""

from __future__ import annotations

import json
import os
import select
import time
import tty

import pytest

from device.backends.nmea import QUIET_GAP_S, SerialGnss
from tests.nmea_corpus import DATA, RECEIVERS, record

NAMES = sorted(RECEIVERS)


def test_corpus_files_are_what_the_receivers_say():
    """The committed files are the generator's output (regenerate: python -m tests.nmea_corpus)."""
    assert sorted(p.stem for p in DATA.glob("*.nmea")) == NAMES
    for name in NAMES:
        data, expected = record(name)
        assert (DATA / f"{name}.nmea").read_bytes() == data, name
        assert json.loads((DATA / f"{name}.json").read_text())["epochs"] == expected, name


def read_over_pty(data: bytes) -> tuple[list, SerialGnss]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    now = [100.0]
    gnss = SerialGnss(os.ttyname(slave), 9600, monotonic=lambda: now[0])
    lines = data.count(b"\n")
    fixes = []
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if data:
                try:
                    data = data[os.write(master, data):]
                except BlockingIOError:
                    pass
            select.select([gnss.fileno()], [], [], 0.01)
            fixes += gnss.poll()
            if not data and gnss.stats.sentences >= lines:
                break
        now[0] += QUIET_GAP_S  # the receiver falls silent: the last epoch is delivered
        fixes += gnss.poll()
    finally:
        gnss.close()
        os.close(master)
        os.close(slave)
    return fixes, gnss


def as_said(fix) -> dict:
    return {"time_utc": fix.time_utc.isoformat() if fix.time_utc else None, "valid": fix.valid,
            "lat": fix.latitude, "lon": fix.longitude, "quality": fix.quality,
            "satellites": fix.satellites, "mode": fix.mode, "altitude_m": fix.altitude_m}


@pytest.mark.parametrize("name", NAMES)
def test_receiver_output_through_the_serial_reader(name):
    expected = json.loads((DATA / f"{name}.json").read_text())["epochs"]
    fixes, gnss = read_over_pty((DATA / f"{name}.nmea").read_bytes())
    got = [as_said(f) for f in fixes]
    assert len(got) == len(expected), (name, got)
    for g, e in zip(got, expected):
        for key in ("lat", "lon"):
            if e[key] is not None:
                assert g[key] == pytest.approx(e[key], abs=1e-9), (name, key, g, e)
                g[key] = e[key]
        assert g == e, name
    s = gnss.stats
    # A healthy receiver: nothing it says is garbage, proprietary sentences included.
    assert s.malformed == s.bad_checksum == s.overlong == 0, (name, s.last_error)
    assert s.last_error == ""


# --- through the agent: the metadata track and the garbage watch ----------------------------

from conftest import export_plain  # noqa: E402
from bodycam.simulation import simulation  # noqa: E402
from firmware_py.evidence import audit  # noqa: E402
from firmware_py.recording import metadata  # noqa: E402
from simulator.harness import scenario as sc  # noqa: E402
from tests.nmea_corpus import burst_for  # noqa: E402


def shift_with(name: str, out):
    s = sc.parse({"scenario": {"name": name, "duration": "40s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": {"video": {"width": 320, "height": 180, "fps": 15},
                             "recording": {"segment_seconds": 10}},
                  "gnss": {"time_to_first_fix": "4s"},
                  "event": [{"at": 8, "action": "press", "button": "record"},
                            {"at": 35, "action": "press", "button": "record"}]}, "t.toml")
    sim = simulation(s, out)
    fixes_said = {"n": 0}

    def speak(second: int, has_fix: bool) -> list[str]:
        if has_fix:
            fixes_said["n"] += 1
        return burst_for(name, second, fixes_said["n"] if has_fix else None)[0]

    sim.world.gnss.set_dialect(speak)
    sim.run()
    entries = audit.read(out / "device" / "audit.jsonl")
    segments = sorted(export_plain(out).glob("*/*.ts"))
    track = [r for path in segments for r in metadata.read(path.with_suffix(".meta.jsonl"))
             if r["kind"] == "gnss"]
    return entries, track


@pytest.mark.req("R10.2")
def test_rtk_multi_constellation_receiver_in_the_metadata_track(tmp_path):
    entries, track = shift_with("rtk_multi", tmp_path)
    fixed = [r for r in track if r["valid"]]
    assert len(fixed) >= 20
    assert all((r["mode"], r["quality"], r["satellites"]) == (3, 4, 31) for r in fixed)
    assert all(r["lat"] is not None and r["alt_m"] == 12.0 for r in fixed)
    assert not [e for e in entries if e["kind"] == "gnss_garbage"]


@pytest.mark.parametrize("name", ["mediatek_mt3339", "ublox_m8"])
def test_healthy_receiver_with_proprietary_output_raises_no_garbage(tmp_path, name):
    entries, track = shift_with(name, tmp_path)
    assert [r for r in track if r["valid"]]
    assert not [e for e in entries if e["kind"] == "gnss_garbage"]
