"""Time of fix (issue 15, defect 8): an epoch is timed at the start of the receiver's burst.

The simulated receiver sends at 9600 baud, as a UART does: its four sentences take about
0.3 s to cross the line. Timed at the last sentence, a correct clock would measure 0.3 s
"fast" (0.75–0.9 s with the longer bursts of real receivers, above the 0.5 s correction
threshold); timed at the burst's first sentence it measures within a poll period.
"""

from __future__ import annotations

import pytest

from bodycam.simulation import simulation
from device.backends.nmea import QUIET_GAP_S, SerialGnss
from device.clock import DeviceClock
from firmware_py.evidence import audit
from simulator.clock import DriftingWallClock, VirtualClock
from simulator.gnss import SimGnssReceiver
from simulator.harness import scenario as sc
from tests.test_gnss import LONDON

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime

START_UTC = 1_795_000_000.0  # 2026-11-18


@pytest.mark.parametrize("poll_s", [0.01, 1 / 15])
def test_offset_of_a_correct_clock_is_measured_within_0_1_s_at_9600_baud(poll_s):
    clock = VirtualClock()
    wall = DriftingWallClock(clock, START_UTC, initial_error_s=0.0, drift_ppm=0)
    device = DeviceClock(wall=wall, monotonic=clock, utc_offset_s=0)
    sim = SimGnssReceiver(clock, wall.true_utc, LONDON, time_to_first_fix_s=2.0,
                          baudrate=9600)
    gnss = SerialGnss(sim.port_path, 9600, monotonic=clock)
    offsets, delivered_after = [], []
    try:
        for _ in range(round(20 / poll_s)):
            clock.advance(poll_s)
            sim.tick(clock.now)
            for fix in gnss.poll():
                offsets.append(device.offset_from(fix.time_utc.timestamp(), fix.received_at))
                delivered_after.append(clock.now - (fix.time_utc.timestamp() - START_UTC))
    finally:
        gnss.close()
        sim.close()
    burst_s = max(len("".join(e.sentences)) for e in sim.recent_epochs) / 960  # the longest
    assert burst_s > 0.25  # timed at the last sentence, the clock would look 0.25 s+ fast
    assert len(offsets) >= 18
    print(f"poll {poll_s:.3f} s: offsets {min(offsets):+.4f}..{max(offsets):+.4f} s, "
          f"delivered {min(delivered_after):.3f}..{max(delivered_after):.3f} s after the second")
    assert max(abs(o) for o in offsets) < 0.1
    assert max(abs(o) for o in offsets) <= poll_s + 0.002  # within a poll of the truth
    # Each epoch is delivered when its burst ends (a quiet gap), before the next second.
    assert max(delivered_after) < burst_s + QUIET_GAP_S + 3 * poll_s < 1.0


def _run(tmp_path, error_s: float):
    s = sc.parse({"scenario": {"name": "timing", "duration": "30s",
                               "start": "2026-11-29T09:00:00+08:00"},
                  "config": {"video": {"width": 320, "height": 180, "fps": 15}},
                  "clock": {"initial_error_s": error_s}, "gnss": {"time_to_first_fix": 3}},
                 "t.toml")
    sim = simulation(s, tmp_path)
    sim.start()
    sim.advance_to(25)
    offset = sim.agent.time.reading.offset_s if sim.agent.time.reading else None
    sim.finish()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    return offset, [e["fields"] for e in entries if e["kind"] == "clock_corrected"]


@pytest.mark.req("R7.4")
def test_a_correct_clock_is_not_corrected_by_a_9600_baud_receiver(tmp_path):
    offset, corrections = _run(tmp_path, 0.0)
    assert corrections == []
    assert offset is not None and abs(offset) < 0.1


@pytest.mark.req("R7.4")
def test_a_wrong_clock_is_corrected_by_its_offset(tmp_path):
    offset, corrections = _run(tmp_path, 0.8)
    [correction] = corrections
    assert correction["source"] == "gnss"
    assert correction["offset_before_s"] == pytest.approx(0.8, abs=0.1)
