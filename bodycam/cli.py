"""The ``bodycam`` command line: one program, a subcommand per job.

Exit codes: 0 success; 1 the job ran and found a problem (a failed self-check, evidence
that does not verify, a broken audit log, something overdue); 2 the command could not start
(bad configuration, bad scenario, bad arguments) — with one line on stderr naming what is
wrong; 3 a hardware part could not be opened (``pi`` backends), with one line naming it.
A reader that stops early (``bodycam log | head``) ends the command quietly, with no
traceback, and exit code 1 (as Python's own exit on a broken pipe).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from bodycam import device_commands, dock_commands, evidence_commands, sim_commands
from bodycam.heap import keep_chunk_buffers
from bodycam.options import EXIT_HARDWARE, EXIT_PROBLEM, EXIT_USAGE
from device.hardware import HardwareError
from firmware_py.config import ConfigError
from firmware_py.evidence.keys import KeyFileError, NotEnrolledError
from simulator.harness.scenario import ScenarioError

log = logging.getLogger("bodycam")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bodycam",
        description="Body-worn evidence recorder: agent, dock, simulator and tools.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    device_commands.register(sub)
    sim_commands.register(sub)
    dock_commands.register(sub)
    evidence_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_chunk_buffers()  # before any evidence moves: see bodycam/heap.py
    try:
        code = _run(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader stopped early (``bodycam log | head``): the standard way out (Python's
        # docs, "Note on SIGPIPE"): point stdout at devnull, so the interpreter's final
        # flush finds nothing to write, and leave quietly with the usual code for it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PROBLEM  # what Python itself exits with on EPIPE


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"bodycam: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ScenarioError as exc:
        print(f"bodycam: scenario error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HardwareError as exc:
        print(f"bodycam: hardware error: {exc}", file=sys.stderr)
        return EXIT_HARDWARE
    except NotEnrolledError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyFileError as exc:
        print(f"bodycam: key error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
