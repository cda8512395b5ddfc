"""The ``bodycam`` command line: one program, a subcommand per job.

Exit codes: 0 success; 1 the job ran and found a problem (a failed self-check, a part that
could not be opened); 2 the command could not start (bad configuration, bad scenario, bad
arguments) — with one line on stderr naming what is wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from bodycam import device_commands, dock_commands, evidence_commands, sim_commands
from bodycam.options import EXIT_PROBLEM, EXIT_USAGE
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
        return EXIT_PROBLEM
    except NotEnrolledError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyFileError as exc:
        print(f"bodycam: key error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
