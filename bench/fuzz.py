"""Time-boxed fuzz run of the hostile-input properties (tests/test_hostile_*.py, issue 7).

The same Hypothesis properties the test suite runs, with many more examples: each property
is run again and again — every run with ``--scale`` times its suite number of examples and
a fresh seed drawn from ``--seed`` — until its share of ``--seconds`` is spent. The same
``--seed`` gives the same sequence of runs, so a failure found here comes back with that
seed (and ``--target``); Hypothesis also prints the failing example and a
``@reproduce_failure`` blob.

    .venv/bin/python bench/fuzz.py [--seconds 20] [--seed 0] [--scale 2] [--target TEXT]

Prints each property with its runs, examples and time, then the totals. Exit code 0 when
every property held, 1 when one failed, 2 when no property matched ``--target``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"


@dataclass
class Outcome:
    target: str
    runs: int = 0
    examples: int = 0
    seconds: float = 0.0
    failure: str = ""  # the error, and the seed of the run that found it


def properties(pattern: str) -> list[tuple[str, Callable[..., Any]]]:
    """Every Hypothesis property in the hostile-input test modules, in file order."""
    found = []
    for path in sorted(TESTS.glob("test_hostile_*.py")):
        module = importlib.import_module(path.stem)
        for name, obj in vars(module).items():
            if name.startswith("test_") and hasattr(obj, "hypothesis"):
                target = f"{path.stem}.{name}"
                if pattern in target:
                    found.append((target, obj))
    return found


def fuzz(target: str, prop: Callable[..., Any], budget: float, seed: int) -> Outcome:
    from hypothesis import seed as hypothesis_seed

    outcome = Outcome(target)
    inner = prop.hypothesis.inner_test  # type: ignore[attr-defined]

    def counted(*args: Any, **kwargs: Any) -> Any:
        outcome.examples += 1
        return inner(*args, **kwargs)

    prop.hypothesis.inner_test = counted  # type: ignore[attr-defined]
    rng = random.Random(f"{seed}:{target}")
    start = time.monotonic()
    try:
        while True:
            run_seed = rng.getrandbits(64)
            hypothesis_seed(run_seed)(prop)
            outcome.runs += 1
            try:
                prop()
            except Exception as exc:  # a property failed: report it, go on to the next one
                print(f"\nFAILED {target} (run {outcome.runs}, hypothesis seed {run_seed}):")
                traceback.print_exc(limit=-3)
                outcome.failure = f"{type(exc).__name__} in run {outcome.runs} " \
                                  f"(hypothesis seed {run_seed})"
                break
            elapsed = time.monotonic() - start
            if elapsed + elapsed / outcome.runs > budget:  # another run would overrun
                break
    finally:
        prop.hypothesis.inner_test = inner  # type: ignore[attr-defined]
        outcome.seconds = time.monotonic() - start
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="wall time for the whole run, shared by the properties")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sequence of runs")
    parser.add_argument("--scale", type=int, default=2,
                        help="examples per run, as a multiple of the suite's number")
    parser.add_argument("--target", default="", help="only properties whose name holds this")
    args = parser.parse_args(argv)

    # The test modules read these when they are imported (tests/hostile.py).
    os.environ["BODYCAM_FUZZ"] = "1"
    os.environ["BODYCAM_FUZZ_SCALE"] = str(args.scale)
    # Run as a script, bench/ comes first on sys.path and bench/sync.py would shadow the
    # sync package; the test modules import each other and tests/hostile.py by name.
    sys.path[:] = [str(TESTS)] + [entry for entry in sys.path
                                  if Path(entry or ".").resolve() != HERE]

    targets = properties(args.target)
    if not targets:
        print(f"fuzz: no property matches {args.target!r}", file=sys.stderr)
        return 2
    print(f"fuzz: {len(targets)} properties, {args.seconds:g} s "
          f"({args.seconds / len(targets):.1f} s each), seed {args.seed}, "
          f"{args.scale}x the suite's examples per run")
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + args.seconds
    for i, (target, prop) in enumerate(targets):
        # Time one property left unused goes to the ones after it.
        share = max(0.0, deadline - time.monotonic()) / (len(targets) - i)
        outcome = fuzz(target, prop, share, args.seed)
        outcomes.append(outcome)
        result = f"FAILED: {outcome.failure}" if outcome.failure else "ok"
        print(f"  {target:<88} {outcome.runs:>4} runs {outcome.examples:>7} examples "
              f"{outcome.seconds:>6.1f} s  {result}", flush=True)
    failures = [o for o in outcomes if o.failure]
    print(f"fuzz: {len(outcomes)} properties, {sum(o.examples for o in outcomes)} examples, "
          f"{sum(o.seconds for o in outcomes):.1f} s, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
