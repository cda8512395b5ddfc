"""Recording benchmarks at 720p30 in the simulator (issue 3 targets).

- press → first frame on disk: from the moment the record button goes down to the moment
  the first frame of the new recording (the oldest buffered keyframe, 30 s before the
  press) has been fsynced. Reported in two parts: virtual time until the agent acts (a
  short press is recognised on release, 0.2 s here) and the wall time the pipeline takes to
  write and flush the buffered 30 s. Target ≤ 0.5 s together.
- memory: the agent's share of the peak resident set size while recording. The simulator
  (scene, libx264 at 720p, audio) runs in the same process, so two fresh processes run
  the same shift: one with the agent, one with the simulated parts alone; the difference
  is the agent's. Target < 100 MB.

    .venv/bin/python bench/recording.py [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as ``python bench/recording.py``, bench/ comes first on sys.path and bench/sync.py would
# shadow the ``sync`` package: take the folder off before importing the product.
sys.path[:] = [entry for entry in sys.path
               if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from simulator.harness import scenario as sc
from bodycam.simulation import simulation


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench(press_at: float = 40.0, record_s: float = 60.0) -> dict:
    data = {"scenario": {"name": "bench-720p", "duration": f"{press_at + record_s + 5:g}s"},
            "config": {"video": {"width": 1280, "height": 720, "fps": 30, "bitrate": 4_000_000},
                       "recording": {"pre_event_seconds": 30, "segment_seconds": 60}},
            "event": [{"at": press_at, "action": "press", "button": "record"},
                      {"at": press_at + record_s, "action": "press", "button": "record"}]}
    scenario = sc.parse(data, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        baseline = rss_mb()
        sim = simulation(scenario, Path(tmp))
        recorder = sim.agent.pipeline
        timing: dict[str, float] = {}
        original = recorder.start_recording

        def timed_start(at, activity=None):
            timing["virtual_at"] = sim.world.clock.now
            started = time.perf_counter()
            facts = original(at, activity)
            timing["wall_s"] = time.perf_counter() - started
            return facts

        recorder.start_recording = timed_start
        sim.start()
        peak = rss_mb()
        t = 0.0
        while t < scenario.duration_s:
            t += 1.0
            sim.advance_to(t)
            peak = max(peak, rss_mb())
        result = sim.finish()
    recognise_s = timing["virtual_at"] - press_at
    total = recognise_s + timing["wall_s"]
    return {
        "benchmark": "recording 1280x720@30",
        "press_to_first_frame_on_disk_s": round(total, 3),
        "of_which_recognition_s": round(recognise_s, 3),
        "of_which_pipeline_wall_s": round(timing["wall_s"], 3),
        "target_s": 0.5, "ratio_to_target": round(total / 0.5, 3),
        "peak_rss_mb": round(peak, 1), "rss_before_agent_mb": round(baseline, 1),
        "target_rss_mb": 100.0,
        "simulated_s": round(result.simulated_seconds, 1), "wall_s": round(result.wall_seconds, 1),
        "speed_x_realtime": round(result.speed, 2),
    }


def simulator_only(seconds: float = 105.0) -> dict:
    """The same simulated parts with no agent: what the simulator alone holds."""
    from device.camera import VideoConfig
    from device.microphone import AudioConfig
    from simulator.audio import AcousticSpace, SimMicrophone
    from simulator.camera import SimCamera
    from simulator.clock import VirtualClock

    class Null:
        def output_frame(self, frame) -> None:
            pass

        def output_audio(self, block) -> None:
            pass

    clock = VirtualClock()
    camera = SimCamera(VideoConfig(1280, 720, 30, 4_000_000, 1.0), clock)
    microphone = SimMicrophone(AudioConfig(16000, 1, 20), clock, AcousticSpace(16000))
    camera.start(Null())
    microphone.start(Null())
    peak = rss_mb()
    while clock.now < seconds:
        clock.advance(1 / 30)
        camera.tick(clock.now)
        microphone.tick(clock.now)
        if round(clock.now * 30) % 30 == 0:
            peak = max(peak, rss_mb())
    return {"peak_rss_mb": round(peak, 1)}


def _in_fresh_process(part: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--part", part], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    parser.add_argument("--part", choices=("agent", "simulator"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:  # one of the two fresh processes the figures come from
        print(json.dumps(bench() if args.part == "agent" else simulator_only()))
        return 0
    row = _in_fresh_process("agent")
    sim_only = _in_fresh_process("simulator")
    row["simulator_only_rss_mb"] = sim_only["peak_rss_mb"]
    row["agent_rss_mb"] = round(row["peak_rss_mb"] - sim_only["peak_rss_mb"], 1)
    row["ratio_to_rss_target"] = round(row["agent_rss_mb"] / row["target_rss_mb"], 3)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"press -> first frame on disk at 720p30 with a 30 s buffer: "
              f"{row['press_to_first_frame_on_disk_s']:.3f} s (target <= 0.5 s; "
              f"{row['of_which_recognition_s']:.3f} s recognising the press, "
              f"{row['of_which_pipeline_wall_s']:.3f} s writing the buffer) = "
              f"{row['ratio_to_target']:.2f} of the target")
        print(f"agent memory while recording 720p30: {row['agent_rss_mb']:.0f} MB "
              f"(target < 100 MB) = {row['ratio_to_rss_target']:.2f} of the target; "
              f"process peak {row['peak_rss_mb']:.0f} MB less the simulator alone "
              f"{row['simulator_only_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
