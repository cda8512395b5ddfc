"""The agent's own CPU time per video frame, on top of the H.264 encoder, at 1080p30 and
720p30 — what a Raspberry Pi must spare besides its encoder (the hardware one on Pi 4,
libx264 on Pi 5).

The agent runs on the simulator's parts, but the camera replays H.264 encoded once before
the clock starts (so libx264 is not counted, as on a Pi the encoder runs in picamera2's
own thread or in hardware): each frame still goes through the agent's pre-callback (the
stamp drawn into the raw frame) and then the pipeline. Measured as the process's CPU time
(all threads: the sealer's hashing included) per frame over 20 s of video, twice:

- *ready*: pre-event buffer only (stamp, buffer, the agent's loop, microphone and GNSS);
- *recording*: the same plus mux to MPEG-TS, AAC, encryption, hashing and metadata.

Both include the simulator's microphone and GNSS (a few per cent; not the agent's), so
they are upper bounds of the agent's share.

    .venv/bin/python bench/pi_frame_cost.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType

# Run as ``python bench/pi_frame_cost.py``, bench/ comes first on sys.path and
# bench/sync.py would shadow the ``sync`` package: take the folder off before importing.
sys.path[:] = [entry for entry in sys.path
               if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from bodycam.simulation import simulation  # noqa: E402
from device.camera import EncodedFrame  # noqa: E402
from simulator.harness import scenario as sc  # noqa: E402
from simulator.scene import Scene  # noqa: E402

SECONDS = 20.0
SIZES = {"1080p30": (1920, 1080), "720p30": (1280, 720)}
# Rough single-core speed of this machine's cores over a Pi's for this kind of work
# (numpy, AES-GCM and SHA-256 in OpenSSL, Python): an estimate, not a measurement.
PI_SLOWDOWN = {"Pi 4 (Cortex-A72, 1.5 GHz)": (4.0, 6.0), "Pi 5 (Cortex-A76, 2.4 GHz)": (2.0, 3.0)}


def pre_encode(width: int, height: int, fps: int, gop: int, frames: int):
    """``frames`` access units (IDR every ``gop``) and a few raw frames to stamp."""
    scene = Scene(1)
    raws = []
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, fps), Fraction(fps)
    ctx.bit_rate, ctx.gop_size, ctx.max_b_frames = 8_000_000 * width // 1920, gop, 0
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"}
    ctx.open()
    units = []
    buf = scene.new_buffer(width, height)
    for n in range(frames):
        scene.render(n / fps, buf)
        if n < 8:
            raws.append(buf.copy())
        frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
        frame.pts = n
        if n % gop == 0:
            frame.pict_type = PictureType.I
        units += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    units += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    return units, raws


def measure(label: str, width: int, height: int) -> dict:
    fps, ready_s, record_s = 30, 8.0, SECONDS
    press = ready_s
    data = {"scenario": {"name": f"cpu-{label}", "duration": f"{press + record_s + 3:g}s"},
            "config": {"video": {"width": width, "height": height, "fps": fps,
                                 "bitrate": 8_000_000 * width // 1920},
                       "photo": {"width": width, "height": height},
                       "recording": {"pre_event_seconds": 5, "segment_seconds": 60}},
            "event": [{"at": press, "action": "press", "button": "record"}]}
    scenario = sc.parse(data, "bench")
    gop = fps
    units, raws = pre_encode(width, height, fps, gop, 4 * gop)
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulation(scenario, Path(tmp))
        camera = sim.world.camera

        def replay(index: int) -> None:  # SimCamera._capture, without scene and encoder
            timestamp_us = round((camera._start_time + index / fps) * 1e6)
            raw = raws[index % len(raws)]
            if camera._pre_callback is not None:
                camera._pre_callback(raw, timestamp_us)
            data, key = units[index % len(units)]
            camera._deliver(EncodedFrame(data=data, keyframe=key, pts=index,
                                         timestamp_us=timestamp_us))

        camera._capture = replay
        sim.start()
        sim.advance_to(2.0)  # boot and self-check out of the way

        def window(until: float) -> tuple[float, int]:
            cpu, frames = time.process_time(), camera.frames_delivered
            while sim.world.clock.now < until - 1e-9:
                sim.advance_to(min(until, sim.world.clock.now + 1.0))
            return time.process_time() - cpu, camera.frames_delivered - frames

        ready_cpu, ready_frames = window(press - 0.5)
        sim.advance_to(press + 1.0)  # the press, and the buffer written out
        rec_cpu, rec_frames = window(press + record_s)
        state = str(sim.agent.state)
        sim.finish()
    assert state == "recording", state
    return {"size": label, "ready_ms_per_frame": round(ready_cpu / ready_frames * 1000, 2),
            "recording_ms_per_frame": round(rec_cpu / rec_frames * 1000, 2),
            "recording_core_share_here": round(rec_cpu / rec_frames * fps, 3),
            "frames": rec_frames}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args(argv)
    rows = [measure(label, *size) for label, size in SIZES.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        ms = row["recording_ms_per_frame"]
        print(f"{row['size']}: agent CPU {ms:.2f} ms/frame recording "
              f"({row['ready_ms_per_frame']:.2f} ms ready) = {row['recording_core_share_here']:.0%} "
              f"of one core here, on top of the encoder")
        for pi, (low, high) in PI_SLOWDOWN.items():
            print(f"    estimate for {pi}: {ms * low * 30 / 1000:.0%}-{ms * high * 30 / 1000:.0%} "
                  "of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
