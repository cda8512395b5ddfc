"""``bodycam verify`` and ``bodycam export``: checking sealed evidence, for anyone.

These need no device and no dock service: the enrolled devices' public keys (a dock
directory) and, for the plaintext, the agency's key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bodycam.options import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from firmware_py.evidence.export import ExportRefused, export
from firmware_py.evidence.keys import load_agency_private, load_registry
from firmware_py.evidence.verify import summary_lines, verify

TRUST_HELP = "enrolled devices: a dock directory or its devices/ folder"


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="check sealed evidence: signatures, hashes, chain",
                       description="Verify sealed evidence. Without --key, checks signatures, "
                       "stored-byte hashes and the chain on the ciphertext; with the agency key "
                       "also decrypts every chunk and checks the plaintext hashes. Reports per "
                       "item: valid, altered (which check), missing (gaps in the sequence), "
                       "out_of_order, unknown_device. Exit 0 only when all is valid.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="evidence directories, manifests or files")
    p.add_argument("--trust", type=Path, required=True, metavar="DIR", help=TRUST_HELP)
    p.add_argument("--key", type=Path, metavar="AGENCY_KEY",
                   help="the agency's X25519 private key (PEM), or a dock directory holding it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="write verified plaintext evidence and a report",
                       description="Verify with the agency key, then write the plaintext media "
                       "(MPEG-TS), photos, metadata, manifests and a verification report under "
                       "--out; with --format mp4, one MP4 per recording (segments joined "
                       "without re-encoding, chapters at record, markers, photos and "
                       "interruptions) and the photos as JPEG, each with Content Credentials "
                       "(C2PA) signed by the dock's export key. Refuses, writing nothing, if "
                       "anything fails verification.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--trust", type=Path, required=True, metavar="DIR", help=TRUST_HELP)
    p.add_argument("--key", type=Path, required=True, metavar="AGENCY_KEY")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--format", choices=("plain", "mp4"), default="plain",
                   help="plain: the sealed formats decrypted (default); mp4: playable copies")
    p.add_argument("--dock", type=Path, metavar="DOCK_DIR",
                   help="the dock directory whose CA issues the export key (--format mp4; "
                   "default: the --trust directory)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)


def _verify_inputs(args: argparse.Namespace):
    registry = load_registry(args.trust)
    key = load_agency_private(args.key) if args.key else None
    return registry, key


def cmd_verify(args: argparse.Namespace) -> int:
    registry, key = _verify_inputs(args)
    # The dock's CA is its time-stamping authority's: tokens over chain heads are checked.
    tsa_ca = Path(args.trust) / "ca" / "ca.crt"
    report = verify(args.paths, registry, key, tsa_ca if tsa_ca.exists() else None)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        for line in summary_lines(report):
            print(line)
    return EXIT_OK if report.ok else EXIT_PROBLEM


def cmd_export(args: argparse.Namespace) -> int:
    registry, key = _verify_inputs(args)
    if args.format == "mp4":
        return _export_mp4(args, registry, key)
    try:
        report = export(args.paths, registry, key, args.out)
    except ExportRefused as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps(exc.report.to_json(), indent=1, ensure_ascii=False))
        return EXIT_PROBLEM
    files = sum(len((i.body or {}).get("files", [])) for i in report.items)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        print(f"exported {len(report.items)} sealed items ({files} files), all verified, "
              f"to {args.out}")
    return EXIT_OK


def _export_mp4(args: argparse.Namespace, registry: Any, key: Any) -> int:
    from dock.exports.credentials import CredentialsError, export_key
    from dock.exports.playable import export_playable
    from dock.exports.remux import RemuxError

    dock_dir = args.dock or args.trust
    if not (Path(dock_dir) / "ca" / "ca.crt").exists():
        print(f"bodycam: {dock_dir}: no dock CA (ca/ca.crt) to issue the export key; give "
              "the dock directory with --dock", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = export_playable(args.paths, registry, key, args.out, export_key(dock_dir))
    except (ExportRefused, RemuxError, CredentialsError) as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if args.json:
        print(json.dumps({"ok": True, "copies": [{"file": str(c.path), "sha256": c.sha256,
                                                  "kind": c.kind} for c in result.copies]},
                         indent=1))
    else:
        for copy in result.copies:
            print(f"{copy.kind:<10} {copy.path}  (from chain positions "
                  f"{', '.join(str(s['sequence']) for s in copy.sources)})")
        print(f"exported {len(result.copies)} playable copies with Content Credentials, "
              f"from {len(result.report.items)} verified sealed items, to {args.out}")
    return EXIT_OK
