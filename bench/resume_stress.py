"""Run the broker-restart resume test many times in a row: a stuck file shows as a failure.

    .venv/bin/python bench/resume_stress.py --runs 50

Each run is ``tests/test_dock_sync.py::test_transfer_resumes_after_the_broker_restarts`` in
a fresh pytest process (its own Mosquitto, dock and device): the transfer is cut by a broker
restart a third of the way in, and the test asserts that every file is archived and
receipted in that one docking. Stops at the first failure and prints its output; exits 0
only if every run passed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/test_dock_sync.py::test_transfer_resumes_after_the_broker_restarts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--test", default=TEST, help="the pytest node id to repeat")
    args = parser.parse_args(argv)
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        t = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               args.test], cwd=ROOT, capture_output=True, text=True)
        took = time.monotonic() - t
        if proc.returncode != 0:
            print(f"run {run}/{args.runs}: FAILED after {took:.1f} s\n{proc.stdout}\n{proc.stderr}")
            return 1
        print(f"run {run}/{args.runs}: passed in {took:.1f} s", flush=True)
    print(f"{args.runs} runs in a row passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
