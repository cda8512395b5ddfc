"""The README's commands work as shown: its shell blocks marked ``<!-- runnable -->`` run
here, in order, as one script in an empty directory, with ``bodycam`` on the PATH as after
``source .venv/bin/activate`` — a dock on the embedded broker and one on Mosquitto with
mutual TLS, recorders enrolled both ways, run, recording, docked and verified. Every other
shell block must say why it is not run (``<!-- not run: … -->``), so none is forgotten.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^(?P<marker><!--[^\n]*-->\n)?```sh\n(?P<body>.*?)^```$", re.S | re.M)
SCRIPT_LIMIT_S = 400


def blocks(text: str) -> list[tuple[str, str]]:
    return [((m.group("marker") or "").strip(), m.group("body")) for m in BLOCK.finditer(text)]


def test_every_shell_block_is_run_or_says_why_not():
    found = blocks(README.read_text())
    assert len(found) >= 6
    for marker, body in found:
        assert marker == "<!-- runnable -->" or marker.startswith("<!-- not run: "), (
            f"a shell block without a runnable / not run marker:\n{body}")


def test_the_readme_runs(tmp_path):
    runnable = [body for marker, body in blocks(README.read_text())
                if marker == "<!-- runnable -->"]
    script = "set -euo pipefail\n" + "\n".join(runnable)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # Its own process group: the docks and recorders it leaves in the background end with it.
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SCRIPT_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the README's commands did not finish in {SCRIPT_LIMIT_S} s:\n"
                             f"{out[-3000:]}\n{err[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the servers it started
        except ProcessLookupError:
            pass
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}"
                   for p in sorted((tmp_path / "brigade").glob("*.log")))
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}{logs}"
    assert "ALL VALID" in out
    assert "Traceback" not in err + logs
