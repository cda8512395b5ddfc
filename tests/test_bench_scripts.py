"""Every benchmark starts as the README runs it: ``.venv/bin/python bench/NAME.py``.

Run as a script, a benchmark has bench/ first on sys.path, where bench/sync.py shadows the
``sync`` package; each must still import the product (``make bench`` ran two that did not).
``--help`` imports everything and measures nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_benchmark_starts_as_a_script(script: Path) -> None:
    proc = subprocess.run([sys.executable, str(script.relative_to(ROOT)), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
