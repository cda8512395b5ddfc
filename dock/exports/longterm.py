"""Long-term copies (R16.2, Article 16): two independent, labelled copies of one activity,
each checkable without this software, each read back and verified after writing.

A copy holds, under the directory given:

- ``sealed/<device>/<activity>/`` — the sealed originals as archived (manifests,
  signatures, encrypted files, records, the dock's receipts);
- ``sealed/<device>/<other activity>/`` — only the manifests (and signatures) that link the
  activity's last item to the device's signed chain head, and ``sealed/<device>/chain/`` —
  that head, its signature and its RFC 3161 token: the activity is shown complete;
- ``playable/`` — one MP4 per recording and the photos as JPEG, with Content Credentials;
- ``keys/`` — the device's public key, the dock's receipt key and the dock's CA certificate;
- ``verify-by-hand.sh``, ``VERIFY.txt`` (how to check the copy with openssl, sha256sum and a
  C2PA validator), ``LABEL.txt`` and ``label.pdf`` (unit, maker, time, activity, case name
  and number; printable), and ``SHA256SUMS`` over every other file.

Before anything is written the activity is verified with the agency key; after writing,
each copy is read back from its medium — every file against ``SHA256SUMS``, the sealed
evidence verified again, every Content Credential validated — and the act is recorded in
the dock's access log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from PIL import Image, ImageDraw, ImageFont

from dock import access_log
from dock.exports.credentials import ExportKey, read_credentials
from dock.exports.playable import export_playable
from dock.receipts import RECEIPT, RECEIPT_SIG
from firmware_py.evidence.chainhead import FOLDER as CHAIN_FOLDER
from firmware_py.evidence.chainhead import SIGNATURE as HEAD_SIG
from firmware_py.evidence.chainhead import SUFFIX as HEAD_SUFFIX
from firmware_py.evidence.chainhead import TOKEN as HEAD_TOKEN
from firmware_py.evidence.chainhead import find_heads
from firmware_py.evidence.keys import EnrolledDevice, pem_public
from firmware_py.evidence.seal import MANIFEST, SIGNATURE
from firmware_py.evidence.store import sha256_file
from firmware_py.evidence.verify import verify

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "verify-by-hand.sh"
SUMS = "SHA256SUMS"
DOCK_RECEIPT_PUB = Path("keys/dock_ed25519.pub.pem")


class CopyRefused(RuntimeError):
    """Nothing (more) was written: the message says why."""


@dataclass(frozen=True)
class Label:
    """What Article 16 asks on the label, and what identifies this copy."""

    unit: str
    maker: str
    made_utc: str
    activity: str
    case_name: str
    case_number: str
    devices: str
    officer: str
    matter: str
    copy: int
    copies: int

    def lines(self) -> list[str]:
        return [f"Long-term copy {self.copy} of {self.copies} (Article 16)",
                f"Unit:        {self.unit}",
                f"Case:        {self.case_name or '-'}",
                f"Case number: {self.case_number or '-'}",
                f"Activity:    {self.activity} ({self.matter})",
                f"Device:      {self.devices}",
                f"Officer:     {self.officer}",
                f"Made by:     {self.maker}",
                f"Made at:     {self.made_utc}"]


@dataclass(frozen=True)
class CopyResult:
    path: Path
    files: int
    fingerprint: str  # SHA-256 of its SHA256SUMS: names the whole copy
    verified: bool
    problems: list[str]


def archive_copy(archive: Path, dock_dir: Path, registry: dict[str, EnrolledDevice],
                 agency_key: X25519PrivateKey, export_key: ExportKey, activity: str,
                 targets: list[Path], maker: str, case_name: str = "",
                 case_number: str = "") -> list[CopyResult]:
    """Write and read back one copy of ``activity`` into each of ``targets``."""
    archive, targets = Path(archive), [Path(t) for t in targets]
    if len(targets) < 2 or len({t.resolve() for t in targets}) != len(targets):
        raise CopyRefused("Article 16 asks for two copies: give --to twice, to two places")
    for target in targets:
        if target.exists() and any(target.iterdir()):
            raise CopyRefused(f"{target}: not empty; a copy goes to an empty directory")
    if not SCRIPT.exists():
        raise CopyRefused(f"{SCRIPT}: the verification script is missing from this install")
    folders = sorted(d for d in archive.glob(f"*/{activity}") if d.is_dir())
    if not folders or "/" in activity or activity.startswith("."):
        raise CopyRefused(f"no activity {activity!r} in {archive}")
    report = verify(folders, registry, agency_key)
    if not report.ok:
        bad = [f"{i.manifest}: {i.status}" for i in report.items if i.status != "valid"]
        raise CopyRefused(f"{activity} does not verify: {'; '.join(bad + report.problems)[:500]}")
    plan = [_device_plan(folder, registry) for folder in folders]
    first = next(i.body for i in report.items if i.body)
    with tempfile.TemporaryDirectory(prefix="bodycam-copy-") as tmp:
        playable = Path(tmp) / "playable"
        export_playable(folders, registry, agency_key, playable, export_key)
        results = []
        for number, target in enumerate(targets, 1):
            label = Label(unit=str(first.get("unit")), maker=maker,
                          made_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          activity=activity, case_name=case_name, case_number=case_number,
                          devices=", ".join(p.device for p in plan),
                          officer=str(first.get("officer") or "none assigned"),
                          matter=_matter(folders[0]), copy=number, copies=len(targets))
            _write_copy(target, plan, playable, dock_dir, export_key, label)
            results.append(read_back(target, registry, export_key.ca_cert, activity))
    access_log.record(archive, maker, "archive_copy", {
        "activity": activity, "case_name": case_name, "case_number": case_number,
        "copies": [{"to": str(r.path.resolve()), "files": r.files, "sha256sums": r.fingerprint,
                    "verified": r.verified} for r in results]})
    return results


@dataclass(frozen=True)
class _DevicePlan:
    device: str
    public_pem: bytes
    folder: Path  # the activity's folder in the archive
    context: list[Path]  # manifests after the activity, up to the head
    head: Path | None


def _device_plan(folder: Path, registry: dict[str, EnrolledDevice]) -> _DevicePlan:
    device_dir = folder.parent
    bodies = [json.loads(p.read_bytes()) for p in folder.glob(f"*{MANIFEST}")]
    last = max(body["sequence"] for body in bodies)
    heads, _ = find_heads([device_dir / CHAIN_FOLDER], registry)
    reaching = sorted((h for h in heads if h.sequence >= last), key=lambda h: h.sequence)
    if not reaching:
        raise CopyRefused(f"{device_dir.name}: no signed chain head reaches sequence {last}; "
                          "the activity cannot be shown complete (dock the device again)")
    head = reaching[0]
    context = []
    for manifest in device_dir.glob(f"*/*{MANIFEST}"):
        if manifest.parent == folder:
            continue
        sequence = json.loads(manifest.read_bytes()).get("sequence")
        if isinstance(sequence, int) and last < sequence <= head.sequence:
            context.append(manifest)
    # The key that sealed this activity (a device enrolled again has another since).
    key = registry[str(bodies[-1]["signing_key"])]
    return _DevicePlan(device_dir.name, pem_public(key.public_key), folder, sorted(context),
                       head.path)


def _matter(folder: Path) -> str:
    try:
        summary = json.loads((folder / "activity.json").read_text())
        return f"{summary.get('matter_en', '?')} / {summary.get('matter_zh', '?')}"
    except (OSError, ValueError):
        return "activity not ended"


def _write_copy(target: Path, plan: list[_DevicePlan], playable: Path, dock_dir: Path,
                export_key: ExportKey, label: Label) -> None:
    target.mkdir(parents=True, exist_ok=True)
    keys = target / "keys"
    keys.mkdir()
    shutil.copyfile(Path(dock_dir) / DOCK_RECEIPT_PUB, keys / "dock-receipt.pub.pem")
    shutil.copyfile(export_key.ca_cert, keys / "dock-ca.crt")
    for device in plan:
        (keys / f"{device.device}.pub.pem").write_bytes(device.public_pem)
        sealed = target / "sealed" / device.device
        shutil.copytree(device.folder, sealed / device.folder.name)
        for manifest in device.context:
            folder = sealed / manifest.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            stem = manifest.name[: -len(MANIFEST)]
            for name in (manifest.name, stem + SIGNATURE):
                shutil.copyfile(manifest.parent / name, folder / name)
        if device.head is not None:
            chain = sealed / CHAIN_FOLDER
            chain.mkdir()
            stem = device.head.name[: -len(HEAD_SUFFIX)]
            for suffix in (HEAD_SUFFIX, HEAD_SIG, HEAD_TOKEN, HEAD_SUFFIX + RECEIPT,
                           HEAD_SUFFIX + RECEIPT_SIG):
                if (device.head.parent / (stem + suffix)).exists():
                    shutil.copyfile(device.head.parent / (stem + suffix), chain / (stem + suffix))
    shutil.copytree(playable, target / "playable")
    shutil.copyfile(SCRIPT, target / "verify-by-hand.sh")
    (target / "LABEL.txt").write_text("\n".join(label.lines()) + "\n", encoding="utf-8")
    label_pdf(label, target / "label.pdf")
    (target / "VERIFY.txt").write_text(verify_text(plan, label), encoding="utf-8")
    files = sorted(p for p in target.rglob("*") if p.is_file())
    (target / SUMS).write_text("".join(f"{sha256_file(p)}  {p.relative_to(target)}\n"
                                       for p in files), encoding="utf-8")
    for path in files + [target / SUMS]:
        os.chmod(path, 0o444)
    _fsync_tree(target)  # on the medium before it is read back


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")) + [root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def verify_text(plan: list[_DevicePlan], label: Label) -> str:
    """How a reader checks this copy with stock tools alone (the commands after ``$`` run
    from the copy's top directory, as they are)."""
    sealed = [f"    $ sh verify-by-hand.sh -r keys/dock-receipt.pub.pem -t keys/dock-ca.crt "
              f"-s {label.activity} sealed/{device.device} keys/{device.device}.pub.pem"
              for device in plan]
    return f"""HOW TO CHECK THIS COPY
======================

{chr(10).join(label.lines())}

You need: a POSIX shell, openssl (3.0 or later) and sha256sum; for the playable copies,
any C2PA (Content Credentials) validator. Nothing from the maker of this copy is trusted
by these steps except the keys in keys/, which you should compare with the unit's
published keys (the dock CA's fingerprint: `openssl x509 -in keys/dock-ca.crt -noout
-fingerprint -sha256`). Run the commands after `$` from this directory.

1. Every file is as written (SHA256SUMS lists every other file of the copy):

    $ sha256sum -c --quiet SHA256SUMS && echo 'every file as written'

2. The sealed originals: each manifest signed by the recorder's key, the chain of
   manifests unbroken, every stored file with the hash its manifest gives, the dock's
   signed receipt for each, the activity complete up to the recorder's signed chain head,
   and the unit's RFC 3161 time-stamp on that head. It ends with ALL VERIFIED. With the
   agency's private key, add `-k agency_x25519.pem -o plain` to decrypt every file and
   check every chunk (the procedure is docs/evidence-format.md, section 6):

{chr(10).join(sealed)}

3. The playable copies in playable/ (MP4 per recording, JPEG per photo) carry Content
   Credentials: open them in any C2PA validator (e.g. c2patool, or
   https://contentcredentials.org/verify). They must validate; with keys/dock-ca.crt as
   a trust anchor they report "Trusted". The assertion "org.bodycam.evidence" names the
   device, the chain positions and the SHA-256 of each manifest the copy came from
   (compare: `sha256sum sealed/<device>/<activity>/*.manifest.json`), and the actions say
   "no edits except container change". playable/export.json lists the same per file.
"""


def label_pdf(label: Label, path: Path) -> None:
    """A printable label sheet (A4): the label twice, one for the medium, one for its case."""
    dpi = 150
    page = Image.new("RGB", (int(8.27 * dpi), int(11.69 * dpi)), "white")
    draw = ImageDraw.Draw(page)
    face = ImageFont.load_default(size=26)
    for n, top in enumerate((90, 900)):
        draw.rectangle((80, top, page.width - 80, top + 700), outline="black", width=3)
        y = top + 40
        for line in label.lines() + [("— for the medium" if n == 0 else "— for its case")]:
            draw.text((120, y), line, fill="black", font=face)
            y += 64
    page.save(path, "PDF", resolution=dpi)


def read_back(target: Path, registry: dict[str, EnrolledDevice], ca_cert: Path,
              activity: str) -> CopyResult:
    """Check a written copy from its medium: sums, seals, Content Credentials."""
    problems: list[str] = []
    sums = target / SUMS
    listed = 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        listed += 1
        if sha256_file(target / name) != digest:
            problems.append(f"{name}: reads back other bytes than were written")
    report = verify(sorted(p for p in (target / "sealed").glob(f"*/{activity}")), registry)
    if not report.ok:
        problems += [f"{i.manifest}: {i.status}" for i in report.items if i.status != "valid"]
        problems += report.problems
    for copy in sorted((target / "playable").rglob("*")):
        if copy.suffix in (".mp4", ".jpg"):
            credentials = read_credentials(copy, ca_cert)
            if credentials.state != "Trusted":
                problems.append(f"{copy.name}: Content Credentials {credentials.state} "
                                f"({', '.join(credentials.failures)})")
    fingerprint = sha256_file(sums)
    log.info("copy %s read back: %d files, %s", target, listed,
             "verified" if not problems else f"{len(problems)} problems")
    return CopyResult(target, listed, fingerprint, not problems, problems)

