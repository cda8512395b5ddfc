"""Contract of the camera protocol (``device.camera.Camera``): the assertions every camera
backend must pass, whatever drives its time. ``tests/test_contract_camera.py`` runs them
on the simulator's camera (virtual time) here, and on ``PiCamera`` over picamera2 and
libcamera's virtual camera inside the chroot (``python tests/camera_contract.py`` there,
real time, started by the same test file through ``tests/virtual_camera.py``).

Plain functions and asserts, no pytest: the chroot has no test runner.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from device.camera import Camera, EncodedFrame

FPS, WIDTH, HEIGHT = 30, 640, 360
STILL = (1280, 720)


class Frames:
    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []

    def output_frame(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)


def check_camera(camera: Camera, pass_time: Callable[[float], None],
                 monotonic: Callable[[], float]) -> dict:
    """Run the contract on ``camera`` (configured WIDTH x HEIGHT at FPS, 1 s keyframes,
    stills of STILL); returns what was measured."""
    from firmware_py.recording.segment import h264_problem

    assert isinstance(camera, Camera)
    out, shapes = Frames(), []

    def pre_callback(frame: np.ndarray, timestamp_us: int) -> None:
        shapes.append((frame.shape, frame.dtype, frame.flags.c_contiguous))
        frame[:8, :8] = 255  # drawn into the picture, before the encoder

    started = monotonic()
    camera.start(out, pre_callback)
    try:
        try:
            camera.start(Frames())
        except RuntimeError:  # HardwareError is one too
            pass
        else:
            raise AssertionError("a second start while running was accepted")
        pass_time(2.5)
        still_shapes: list[tuple] = []
        still = camera.capture_still(lambda f, ts: still_shapes.append(f.shape))
        pass_time(0.5)
    finally:
        camera.stop()
    delivered = len(out.frames)
    pass_time(0.3)
    assert len(out.frames) == delivered, "frames after stop"
    frames = out.frames
    assert camera.frames_delivered == delivered
    assert 2.0 * FPS <= delivered <= 3.5 * FPS, delivered

    # The pre-callback sees every frame as contiguous I420 of the video size.
    assert set(shapes) == {((HEIGHT * 3 // 2, WIDTH), np.dtype(np.uint8), True)}, set(shapes)
    # H.264 access units, the first a keyframe, a keyframe at least once a second.
    assert all(h264_problem(f.data, f.keyframe) is None for f in frames)
    assert frames[0].keyframe
    keys = [n for n, f in enumerate(frames) if f.keyframe]
    assert max(np.diff(keys)) <= FPS, keys
    assert camera.extradata.startswith(b"\x00\x00\x00\x01") and camera.extradata[4] & 0x1F == 7
    # Capture times: monotonic µs, a frame interval apart, from around the start.
    times = np.array([f.timestamp_us for f in frames])
    assert np.allclose(np.diff(times), 1e6 / FPS, atol=1e6 / FPS * 0.05), np.diff(times)
    assert abs(times[0] / 1e6 - started) < 1.0, (times[0] / 1e6, started)
    pts = np.array([f.pts for f in frames])
    assert (np.diff(pts) == 1).all(), pts
    # A still of the photo size, stamped through its own pre-callback, as JPEG.
    assert still_shapes == [(STILL[1] * 3 // 2, STILL[0])], still_shapes
    assert (still.width, still.height) == STILL and still.jpeg[:2] == b"\xff\xd8"
    assert times[0] <= still.timestamp_us <= times[-1] + 1e6
    return {"frames": delivered, "keyframes": len(keys), "still_bytes": len(still.jpeg)}


def check_restart(camera, stall: Callable[[float], None], pass_time: Callable[[float], None],
                  restart_after_s: float) -> dict:
    """A camera silent for longer than ``restart_after_s`` is closed and opened again by its
    backend, and frames come back (the agent's watch then sees camera_resumed)."""
    out = Frames()
    camera.start(out)
    try:
        pass_time(1.0)
        before = len(out.frames)
        assert before >= FPS // 2, before
        stall(restart_after_s * 2.5)
        pass_time(restart_after_s * 2.5 + 2.0)
        after = len(out.frames) - before
    finally:
        camera.stop()
    assert camera.restarts >= 1, "the silent camera was not restarted"
    assert after >= FPS // 2, f"only {after} frames after the restart"
    times = np.array([f.timestamp_us for f in out.frames])
    assert (np.diff(times) > 0).all(), "capture times went backwards across the restart"
    return {"restarts": camera.restarts, "frames_after": after}


def main() -> None:
    """Inside the virtual-camera chroot: the contract on PiCamera over picamera2."""
    import json
    import time

    sys.path.insert(0, "/bodycam")
    from device.backends.picamera import PiCamera
    from device.camera import VideoConfig
    from tests.virtual_camera import quirk_classes

    camera_class, encoder_class = quirk_classes(FPS)
    camera = PiCamera(VideoConfig(WIDTH, HEIGHT, FPS, 1_500_000, 1.0), time.monotonic,
                      still_size=STILL, encoder="libav", stream_format="NV12",
                      camera_class=camera_class, encoder_class=encoder_class)
    try:
        result = check_camera(camera, time.sleep, time.monotonic)
    finally:
        camera.close()
    restarting = PiCamera(VideoConfig(WIDTH, HEIGHT, FPS, 1_500_000, 1.0), time.monotonic,
                          still_size=STILL, encoder="libav", stream_format="NV12",
                          restart_after_s=1.0, camera_class=camera_class,
                          encoder_class=encoder_class)

    def stall(seconds: float) -> None:
        restarting._picam2.stall_s = seconds  # the harness's wedged sensor

    try:
        result |= check_restart(restarting, stall, time.sleep, 1.0)
    finally:
        restarting.close()

    class LateCamera(camera_class):
        """Fails to open the first time, as a camera whose ribbon settles after boot."""
        opened = 0

        def __init__(self, camera_num: int = 0) -> None:
            LateCamera.opened += 1
            if LateCamera.opened == 1:
                raise RuntimeError("Camera __init__ sequence did not complete.")
            super().__init__(camera_num)

    late = PiCamera(VideoConfig(WIDTH, HEIGHT, FPS, 1_500_000, 1.0), time.monotonic,
                    still_size=STILL, encoder="libav", stream_format="NV12",
                    restart_after_s=1.0, camera_class=LateCamera, encoder_class=encoder_class)
    out = Frames()
    try:
        late.start(out)
    except RuntimeError as exc:  # HardwareError: the agent logs it and goes on
        result["first_open"] = str(exc)
    else:
        raise AssertionError("a camera that could not be opened started")
    try:
        time.sleep(3.0)
    finally:
        late.close()
    assert len(out.frames) >= FPS // 2, f"{len(out.frames)} frames after a late open"
    result["late_frames"] = len(out.frames)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
