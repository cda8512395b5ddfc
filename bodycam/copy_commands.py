"""``bodycam dock archive-copy``: the two labelled long-term copies of Article 16 (R16.2).

The wiring only: ``dock.exports.longterm`` verifies the activity, writes each copy, reads
it back and records the act in the dock's access log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bodycam.options import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from dock import config as dock_config
from dock.exports.credentials import export_key
from dock.exports.longterm import CopyRefused, archive_copy
from firmware_py.evidence.keys import load_agency_private, load_registry


def register(dock_sub: Any) -> None:
    d = dock_sub.add_parser(
        "archive-copy", help="two labelled long-term copies of an activity (R16.2)",
        description="Verify ACTIVITY with the agency key, then write it to each --to "
        "directory: the sealed originals with the dock's receipts and the device's signed "
        "chain head and time-stamp, playable MP4s and JPEGs with Content Credentials, the "
        "keys to check them, LABEL.txt and label.pdf (unit, maker, time, activity, case name "
        "and number), VERIFY.txt (how to check the copy with openssl, sha256sum and a C2PA "
        "validator) and SHA256SUMS. Each copy is read back and verified after writing; the "
        "act goes into the dock's access log. Exit 1 when a copy does not read back whole.")
    d.add_argument("activity", metavar="ACTIVITY", help="the activity id (its folder name)")
    d.add_argument("--to", dest="targets", action="append", type=Path, required=True,
                   metavar="DIR", help="an empty directory for one copy (give it twice)")
    d.add_argument("--maker", required=True, help="who makes the copies (on the label)")
    d.add_argument("--case", default="", help="case name, for the label")
    d.add_argument("--case-number", default="", help="case number, for the label")
    d.set_defaults(func=cmd_archive_copy)


def cmd_archive_copy(args: argparse.Namespace) -> int:
    config = dock_config.load(args.config)
    dock_dir, archive = Path(config.dock.dir), Path(config.dock.archive)
    if not (dock_dir / "ca" / "ca.crt").exists():
        print(f"bodycam: {dock_dir}: no dock here (no ca/ca.crt)", file=sys.stderr)
        return EXIT_USAGE
    try:
        results = archive_copy(archive, dock_dir, load_registry(dock_dir),
                               load_agency_private(dock_dir), export_key(dock_dir),
                               args.activity, args.targets, args.maker, args.case,
                               args.case_number)
    except CopyRefused as exc:
        print(f"bodycam: archive-copy refused: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    for result in results:
        state = "verified" if result.verified else "NOT VERIFIED: " + "; ".join(result.problems)
        print(f"{result.path}: {result.files} files, SHA256SUMS {result.fingerprint[:16]}…, "
              f"read back and {state}")
    return EXIT_OK if all(r.verified for r in results) else EXIT_PROBLEM
