"""Hypothesis settings shared by the hostile-input properties (tests/test_hostile_*.py).

In the test suite every property runs a small, fixed number of examples, derandomized, so
CI runs are repeatable and the whole hostile set stays within a few seconds per module.
``bench/fuzz.py`` sets ``BODYCAM_FUZZ=1`` before importing the test modules: then each
property takes ``BODYCAM_FUZZ_SCALE`` times as many examples per run, with the seed the
fuzz run gives it (``hypothesis.seed``), and prints a reproduction blob when it fails.

Properties in those modules take no pytest fixtures, so the fuzz run can call them as
plain functions.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZING = os.environ.get("BODYCAM_FUZZ") == "1"
FUZZ_SCALE = int(os.environ.get("BODYCAM_FUZZ_SCALE", "2"))


def examples(count: int) -> settings:
    """Settings for one property: ``count`` examples in the suite, more in a fuzz run."""
    if FUZZING:
        return settings(max_examples=count * FUZZ_SCALE, derandomize=False, deadline=None,
                        database=None, print_blob=True,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    return settings(max_examples=count, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
