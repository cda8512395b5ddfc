"""Benchmarks, printed as ratios against the raw limit measured in the same run.

simulated shift: a 10-minute scenario at 640×360 in virtual time; the figure is
simulated seconds per wall second (target ≥ 10× on 2 cores). Beside it, the raw limit:
how fast libx264 alone encodes the same scene at the same settings — the shift can never
run faster than encode fps / frame rate — and the share of that limit the whole
simulation reaches.

    .venv/bin/python bench/run.py [--json] [--scenario patrol] [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

# Run as ``python bench/run.py``, bench/ comes first on sys.path and bench/sync.py would
# shadow the ``sync`` package: take the folder off before importing the product.
sys.path[:] = [entry for entry in sys.path
               if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from firmware_py.config import load as load_config
from simulator.harness import scenario as scenarios
from simulator.camera import SimCamera
from firmware_py.recording.pipeline import video_config
from bodycam.simulation import run_scenario


class _Null:
    def output_frame(self, frame) -> None:
        pass


def raw_encode_fps(config, frames: int = 600) -> float:
    """libx264 through the simulated camera with nothing else running."""
    clock = [0.0]
    camera = SimCamera(video_config(config.device), lambda: clock[0])
    camera.start(_Null())
    fps = config.device.video.fps
    started = time.perf_counter()
    for i in range(1, frames + 1):
        clock[0] = i / fps
        camera.tick(clock[0])
    elapsed = time.perf_counter() - started
    camera.stop()
    camera.close()
    return frames / elapsed


def bench_shift(name: str, seconds: float) -> dict:
    scenario = scenarios.load(name)
    if seconds != scenario.duration_s:
        scenario = replace(scenario, duration_s=seconds,
                           events=tuple(e for e in scenario.events if e.at <= seconds))
    config = load_config(overrides=scenario.config)
    raw = raw_encode_fps(config)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_scenario(scenario, Path(tmp), config)
    fps = config.device.video.fps
    ceiling = raw / fps
    return {
        "benchmark": "simulated shift",
        "scenario": name,
        "resolution": f"{config.device.video.width}x{config.device.video.height}@{fps}",
        "simulated_s": round(result.simulated_seconds, 1),
        "wall_s": round(result.wall_seconds, 2),
        "speed_x_realtime": round(result.speed, 2),
        "target_x_realtime": 10.0,
        "raw_encode_fps": round(raw, 1),
        "raw_limit_x_realtime": round(ceiling, 2),
        "ratio_to_raw_limit": round(result.speed / ceiling, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="patrol")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    np.random.seed(0)
    row = bench_shift(args.scenario, args.seconds)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"simulated shift ({row['scenario']}, {row['resolution']}, {row['simulated_s']:g} s): "
              f"{row['speed_x_realtime']:.1f}x real time (target >= {row['target_x_realtime']:g}x)")
        print(f"  raw libx264 encode: {row['raw_encode_fps']:.0f} fps = limit "
              f"{row['raw_limit_x_realtime']:.1f}x real time; the shift reaches "
              f"{row['ratio_to_raw_limit']:.2f} of that limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
