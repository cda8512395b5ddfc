"""Export of verified evidence (R14.2): plaintext media, photos and metadata, and the report.

Nothing is written unless everything asked for verifies — signatures, chain, stored and
plaintext hashes — so an export is either complete and checked or refused with reasons.
The manifests and signatures travel with the plaintext, so the export can be checked
again (``sha256sum`` against ``plaintext_sha256``) without this software.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from firmware_py.evidence.evidence_file import SUFFIX, decrypt_chunks, parse
from firmware_py.evidence.keys import EnrolledDevice
from firmware_py.evidence.seal import SIGNATURE, MANIFEST
from firmware_py.evidence.verify import Report, verify

REPORT = "verification-report.json"


class ExportRefused(RuntimeError):
    def __init__(self, report: Report) -> None:
        self.report = report
        bad = [i for i in report.items if i.status != "valid"]
        gaps = {d: n for d, n in report.missing.items() if n}
        reasons = [f"{i.manifest}: {i.status} ({'; '.join(i.problems)})" for i in bad[:5]]
        reasons += [f"{d}: sequence numbers {n} missing" for d, n in gaps.items()]
        reasons += report.problems
        super().__init__("export refused: " + " | ".join(reasons))


def export(paths: list[Path], registry: dict[str, EnrolledDevice],
           agency_key: X25519PrivateKey, out: Path) -> Report:
    report = verify(paths, registry, agency_key)
    if not report.ok:
        raise ExportRefused(report)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for item in report.items:
        folder = out / item.path.parent.name
        folder.mkdir(exist_ok=True)
        for record in (item.body or {}).get("files", []):
            source = item.path.parent / record["name"]
            if record.get("encrypted"):
                target = folder / record["name"][: -len(SUFFIX)]
                parsed = parse(source.read_bytes(), source.name)
                with open(target, "wb") as fh:
                    for _, plain, _ in decrypt_chunks(parsed, agency_key, source.name):
                        fh.write(plain)
            else:
                shutil.copyfile(source, folder / record["name"])
        stem = item.path.name[: -len(MANIFEST)]
        shutil.copyfile(item.path, folder / item.path.name)
        shutil.copyfile(item.path.with_name(stem + SIGNATURE), folder / (stem + SIGNATURE))
    (out / REPORT).write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    return report
