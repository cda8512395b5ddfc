"""``bodycam dock archive-copy``: two labelled long-term copies of an activity (R16.2).

Each copy is checked the way its reader would: the commands of its own ``VERIFY.txt`` are
run as a shell script under ``/bin/sh`` with a ``PATH`` of stock tools only (openssl,
sha256sum, POSIX tools — no Python); they must pass on the copy as written and fail on a
copy with one byte changed. The label, the access log entry and the independence of the
two copies are checked too.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from docked import bodycam, shared_docked_shift
from dock import access_log
from dock.exports.credentials import read_credentials

TOOLS = ["sh", "openssl", "sha256sum", "od", "tail", "head", "sed", "tr", "cut", "sort", "wc",
         "find", "cmp", "grep", "mktemp", "rm", "cp", "mkdir", "cat", "printf", "echo"]
assert not [t for t in TOOLS if shutil.which(t) is None], "make test installs the stock tools"


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = shared_docked_shift(tmp_path_factory)
    (out / "dock.toml").write_text(f'[dock]\ndir = "{out / "dock"}"\narchive = "{out / "archive"}"\n')
    activity = next(p.name for p in (out / "archive" / "BC-0001").iterdir()
                    if p.name[0].isdigit())
    proc = bodycam("dock", "--config",
                   str(out / "dock.toml"), "archive-copy", activity,
                   "--to", str(out / "disc-1"), "--to", str(out / "disc-2"),
                   "--maker", "Custodian Li Wei", "--case", "Wage arrears, Textile Co.",
                   "--case-number", "BF-LI-2026-117")
    return out, proc


@pytest.fixture(scope="module")
def stock_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    bin_dir = tmp_path_factory.mktemp("stock-bin")
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def run_verify_txt(copy: Path, stock_path: str) -> subprocess.CompletedProcess:
    """The commands of the copy's VERIFY.txt (the lines after ``$``), as one script."""
    commands = [line.strip()[2:] for line in (copy / "VERIFY.txt").read_text().splitlines()
                if line.strip().startswith("$ ")]
    assert len(commands) >= 2
    script = "set -e\n" + "\n".join(commands) + "\n"
    return subprocess.run(["/bin/sh", "-c", script], cwd=copy, capture_output=True, text=True,
                          timeout=300, env={"PATH": stock_path,
                                            "TMPDIR": os.environ.get("TMPDIR", "/tmp")})


@pytest.mark.req("R16.2")
def test_two_copies_verify_by_their_own_verify_txt_with_stock_tools(copies, stock_path):
    out, proc = copies
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("read back and verified") == 2
    for name in ("disc-1", "disc-2"):
        copy = out / name
        run = run_verify_txt(copy, stock_path)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "every file as written" in run.stdout and "ALL VERIFIED" in run.stdout
        assert "time-stamp token verifies" in run.stdout
        assert "signed chain head #" in run.stdout
        playable = sorted((copy / "playable").rglob("*.mp4")) + sorted(
            (copy / "playable").rglob("*.jpg"))
        assert len(playable) >= 2
        for item in playable:
            assert read_credentials(item, copy / "keys" / "dock-ca.crt").state == "Trusted"


@pytest.mark.req("R16.2", "R14.2")
def test_copies_are_labelled_independent_and_logged(copies):
    out, _ = copies
    one, two = out / "disc-1", out / "disc-2"
    label = (one / "LABEL.txt").read_text()
    for text in ("Baofeng County HRSS Labour Inspection Brigade", "Custodian Li Wei",
                 "Wage arrears, Textile Co.", "BF-LI-2026-117", "copy 1 of 2", "Made at:"):
        assert text in label, text
    assert "copy 2 of 2" in (two / "LABEL.txt").read_text()
    assert (one / "label.pdf").read_bytes()[:5] == b"%PDF-"
    # Independent: every file its own, nothing shared by link between the two.
    files = [p for p in one.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_nlink == 1 and not p.is_symlink() for p in files)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in files)
    assert {p.relative_to(one) for p in files} == {p.relative_to(two) for p in two.rglob("*")
                                                   if p.is_file()}
    entries = [e for e in access_log.read(out / "archive") if e["action"] == "archive_copy"]
    assert len(entries) == 1 and entries[0]["who"] == "Custodian Li Wei"
    assert [c["verified"] for c in entries[0]["copies"]] == [True, True]
    assert entries[0]["case_number"] == "BF-LI-2026-117"


@pytest.mark.req("R16.2")
def test_a_changed_byte_in_a_copy_fails_its_verify_txt(copies, stock_path, tmp_path):
    out, _ = copies
    copy = tmp_path / "disc"
    shutil.copytree(out / "disc-1", copy)
    media = max(copy.rglob("*.ts.bce"), key=lambda p: p.stat().st_size)
    media.chmod(0o644)
    data = bytearray(media.read_bytes())
    data[len(data) // 3] ^= 0x01
    media.write_bytes(bytes(data))
    run = run_verify_txt(copy, stock_path)
    assert run.returncode != 0
    assert "FAILED" in run.stdout + run.stderr  # sha256sum names the file


def test_archive_copy_refuses_one_copy_and_a_used_directory(copies):
    out, _ = copies
    activity = next(p.name for p in (out / "archive" / "BC-0001").iterdir() if p.name[0].isdigit())
    for targets in ([out / "x1"], [out / "disc-1", out / "x2"]):
        args = [a for t in targets for a in ("--to", str(t))]
        proc = bodycam("dock", "--config",
                       str(out / "dock.toml"), "archive-copy", activity, *args,
                       "--maker", "X")
        assert proc.returncode == 1 and "archive-copy refused" in proc.stderr
    assert len([e for e in access_log.read(out / "archive")
                if e["action"] == "archive_copy"]) == 1
