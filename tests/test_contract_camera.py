"""The camera contract (``tests/camera_contract.py``) on every camera backend that runs
here: the simulator's, and the Pi's ``PiCamera`` on picamera2 and libcamera's virtual
camera (in the chroot of ``scripts/virtual-camera.sh``, about 15 s of real time) — where
a camera that stalls is also restarted by the backend and delivers again, and one that
cannot be opened at start is tried again until it delivers."""

from __future__ import annotations

import json

import pytest

from device.camera import VideoConfig
from simulator.camera import SimCamera
from simulator.clock import VirtualClock
from tests.camera_contract import FPS, HEIGHT, STILL, WIDTH, check_camera
from tests.virtual_camera import run_in_chroot

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime


def test_the_simulated_camera_keeps_the_contract():
    clock = VirtualClock(500.0)
    camera = SimCamera(VideoConfig(WIDTH, HEIGHT, FPS, 1_500_000, 1.0), clock, still_size=STILL)

    def pass_time(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end - 1e-9:
            clock.advance(min(1 / FPS, end - clock.now))
            camera.tick(clock.now)

    result = check_camera(camera, pass_time, clock)
    assert result["frames"] >= 2 * FPS


def test_picamera2_on_the_virtual_camera_keeps_the_contract(tmp_path):
    result = run_in_chroot("tests/camera_contract.py", tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["frames"] >= 2 * FPS and measured["still_bytes"] > 1000
    assert measured["restarts"] >= 1 and measured["frames_after"] >= FPS // 2
    # A camera that cannot be opened at start is named, then tried again until it works.
    assert "cannot be opened" in measured["first_open"] and measured["late_frames"] >= FPS // 2
