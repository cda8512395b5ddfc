"""Runs inside the virtual-camera chroot (``tests/virtual_camera.py``), started by
``tests/test_pi_camera.py``: a pi recorder whose camera is ``PiCamera`` on picamera2 and
libcamera's virtual camera records for real.

The device root ``/out/device`` was enrolled by the test beforehand. Everything but the
camera is the Pi's backends as ``tests/test_pi_docking.py`` runs them (gpiozero's mock
pins, a pty for GNSS, a power_supply tree); there is no PortAudio in the chroot, so the
microphone and speaker report a hardware error and the recorder goes on without sound.
The officer presses record after the pre-event buffer has filled, takes a photo in the
middle, and ends the activity with a long press. What the camera delivered, and when each
frame arrived, goes to ``/out/summary.json`` for the test to check beside the evidence.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, "/bodycam")

FPS = 30
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "/out")
SCRIPT = [(4.0, "press", "record"), (7.0, "press", "photo"), (9.5, "hold", "record"),
          (11.5, "release", "record"), (12.5, "end", "")]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from tests.virtual_camera import quirk_classes
    camera_class, encoder_class = quirk_classes(FPS)

    from gpiozero import Device as GpioDevice
    from gpiozero.pins.mock import MockFactory

    from bodycam.wiring import build_device, pi_settings
    from device.backends.picamera import PiCamera
    from device.backends.pi import build_pi_hardware
    from firmware_py.config import load
    from firmware_py.recording.pipeline import video_config
    from simulator.battery import SimBattery

    GpioDevice.pin_factory = MockFactory()
    root = OUT / "device"
    SimBattery(OUT / "power_supply", start_percent=80.0)
    gnss_master, gnss_slave = os.openpty()
    config = load(overrides={
        "device": {"hardware": "pi"},
        "video": {"width": 640, "height": 360, "fps": FPS, "encoder": "libav",
                  "stream_format": "NV12"},
        "photo": {"width": 1280, "height": 720},
        "recording": {"pre_event_seconds": 3, "segment_seconds": 10},
        "gnss": {"port": os.ttyname(gnss_slave)},
        "power": {"sysfs_root": str(OUT / "power_supply")}})
    settings = pi_settings(config.device)
    evidence = root / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    hardware = build_pi_hardware(settings, evidence)
    # The one harness change to the recorder: its camera on the virtual camera's quirks.
    hardware.camera = PiCamera(video_config(config.device), hardware.clock.monotonic,
                               still_size=settings.still_size, encoder="libav",
                               stream_format="NV12", camera_class=camera_class,
                               encoder_class=encoder_class)
    device = build_device(config, hardware, root, None)
    agent = device.agent
    arrivals: list[tuple[float, int, bool]] = []  # (monotonic arrival, capture µs, keyframe)
    sinks_output = agent.sinks.output_frame

    def watched(frame) -> None:
        arrivals.append((time.monotonic(), frame.timestamp_us, frame.keyframe))
        sinks_output(frame)

    agent.sinks.output_frame = watched
    pins = {name: GpioDevice.pin_factory.pin(getattr(config.device.buttons, f"{name}_pin"))
            for name in ("record", "photo", "marker")}
    marks: dict[str, float] = {}
    start = time.monotonic()
    try:
        agent.start()
        script = list(SCRIPT)
        while script:
            now = time.monotonic() - start
            if now >= script[0][0]:
                at, what, button = script.pop(0)
                marks[f"{what} {button}".strip()] = time.monotonic()
                if what in ("press", "hold"):
                    pins[button].drive_low()
                if what == "press":
                    for _ in range(20):  # held for 0.2 s, as a finger does
                        agent.step()
                        time.sleep(0.01)
                    pins[button].drive_high()
                if what == "release":
                    pins[button].drive_high()
            agent.step()
            time.sleep(0.01)
    finally:
        device.close()
        hardware.close()
        os.close(gnss_master)
        os.close(gnss_slave)
    summary = {"frames": len(arrivals), "marks": marks, "arrivals": arrivals,
               "restarts": hardware.camera.restarts, "started": start}
    (OUT / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
