"""Verification of sealed evidence (R18.1): signatures, hashes, the chain — and, with the
agency key, the plaintext.

Without the agency key everything is checked on the stored (encrypted) bytes: each
manifest's canonical form and Ed25519 signature against the enrolled devices, each file's
SHA-256 and size and chunk structure, and the chain of ``prev`` hashes and sequence
numbers. With the agency key every chunk is also decrypted and authenticated, and the
plaintext SHA-256 compared with the manifest's.

Each sealed item ends in one status: ``valid``; ``altered`` (which check failed);
``out_of_order`` (its files hold another item's bytes, or its chain link points elsewhere);
``unknown_device`` (signed by a key no enrolled device has); and the chain reports
``missing`` sequence numbers. Breaks in an activity's footage are listed with the sealed
interruption that explains each (``firmware_py/evidence/gaps.py``). Only an all-valid result with
no number missing from the chain and no unexplained gap exits 0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from firmware_py.evidence.canonical import GENESIS, canonical
from firmware_py.evidence.chainhead import check_token, find_heads, latest
from firmware_py.evidence.evidence_file import EvidenceFileError, ParsedFile, decrypt_chunks, parse
from firmware_py.evidence.gaps import Gap, find_gaps
from firmware_py.evidence.keys import EnrolledDevice
from firmware_py.evidence.seal import FORMAT, MANIFEST, SIGNATURE

# Where the dock keeps an upload that would have replaced archived evidence (dock.conflicts):
# ``<archive>/<device>/.conflicts/<file_id>.conflict.json`` beside the bytes it received.
CONFLICTS = ".conflicts"
CONFLICT_RECORD = ".conflict.json"

VALID, ALTERED, MISSING, OUT_OF_ORDER, UNKNOWN_DEVICE = (
    "valid", "altered", "missing", "out_of_order", "unknown_device")


@dataclass
class ItemReport:
    manifest: str
    path: Path
    status: str = VALID
    problems: list[str] = field(default_factory=list)
    device: str | None = None
    sequence: int | None = None
    kind: str | None = None
    activity: str | None = None
    cut_short: bool = False
    plaintext_checked: bool = False
    digest: str | None = None
    body: dict[str, Any] | None = None

    def fail(self, status: str, problem: str) -> None:
        # The first failure names the status; later ones add detail.
        if self.status == VALID:
            self.status = status
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "path": str(self.path), "status": self.status,
                "problems": self.problems, "device": self.device, "sequence": self.sequence,
                "kind": self.kind, "activity": self.activity, "cut_short": self.cut_short,
                "plaintext_checked": self.plaintext_checked}


@dataclass
class Report:
    items: list[ItemReport]
    missing: dict[str, list[int]]  # device → sequence numbers absent inside its chain
    chain_starts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # breaks in the footage of an activity
    # device → its newest signed chain head and whether the evidence reaches it
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Uploads the dock refused because they would have replaced archived evidence: the
    # archive itself is intact, but someone tried — a custodian must see each one.
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (all(i.status == VALID for i in self.items) and not any(self.missing.values())
                and not self.problems and bool(self.items)
                and all(g.explained for g in self.gaps) and not self.conflicts)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.status] = counts.get(item.status, 0) + 1
        return {"ok": self.ok, "counts": counts, "missing": self.missing,
                "chain_starts": self.chain_starts, "problems": self.problems,
                "gaps": [g.to_json() for g in self.gaps],
                "unexplained_gaps": sum(not g.explained for g in self.gaps),
                "heads": self.heads,
                "conflicts": self.conflicts,
                "items": [i.to_json() for i in self.items]}


def find_manifests(paths: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found.update(path.rglob(f"*{MANIFEST}"))
        elif path.name.endswith(MANIFEST):
            found.add(path)
        elif path.exists():
            sibling = _manifest_for(path)
            if sibling is not None:
                found.add(sibling)
    return sorted(found)


def find_conflicts(paths: list[Path]) -> list[dict[str, Any]]:
    """The dock's conflict records (see CONFLICTS) under ``paths``: a device's archive
    folder holds its own; an activity folder's are those in its device folder naming it."""
    found: dict[Path, dict[str, Any]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            continue
        records = list(path.rglob(f"{CONFLICTS}/*{CONFLICT_RECORD}"))
        beside = path.parent / CONFLICTS
        records += [r for r in beside.glob(f"*{CONFLICT_RECORD}") if beside.is_dir()]
        for record in records:
            try:
                body = json.loads(record.read_text())
            except (OSError, ValueError):
                body = {"reason": "unreadable conflict record"}
            if not isinstance(body, dict):
                body = {"reason": "unreadable conflict record"}
            if record.parent == beside and body.get("activity") != path.name:
                continue
            found[record] = {**body, "record": str(record)}
    return [found[k] for k in sorted(found)]


def _manifest_for(path: Path) -> Path | None:
    for candidate in path.parent.glob(f"*{MANIFEST}"):
        if path.name.startswith(candidate.name[: -len(MANIFEST)]):
            return candidate
    return None


def verify(paths: list[Path], registry: dict[str, EnrolledDevice],
           agency_key: X25519PrivateKey | None = None, tsa_ca: Path | None = None) -> Report:
    """Check the sealed evidence under ``paths``; with ``agency_key`` the plaintext too, with
    ``tsa_ca`` (the time-stamping authority's CA) the RFC 3161 tokens over chain heads."""
    manifests = find_manifests(paths)
    items = [_check_item(m, registry, agency_key) for m in manifests]
    items.sort(key=lambda i: (str(i.device), i.sequence if isinstance(i.sequence, int) else 0))
    _check_swaps(items)
    missing, starts = _check_chain(items)
    report = Report(items, missing, starts, gaps=find_gaps(items),
                    conflicts=find_conflicts(paths))
    _check_heads(report, paths, registry, tsa_ca)
    if not manifests:
        report.problems.append(f"no sealed evidence (no *{MANIFEST}) under "
                               f"{', '.join(str(p) for p in paths)}")
    return report


def check_manifest(data: bytes, signature: bytes | None,
                   registry: dict[str, EnrolledDevice]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """A manifest's own checks — form, canonical bytes, signer, signature — without its files.

    Returns the parsed body (None when unreadable) and (status, problem) pairs."""
    problems: list[tuple[str, str]] = []
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON, too deep, a huge number
        return None, [(ALTERED, f"manifest is not JSON ({str(exc)[:200] or type(exc).__name__})")]
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        return None, [(ALTERED, "manifest has no known format")]
    try:
        canonical_form = canonical(body)
    except ValueError:  # a float, which no sealed record holds
        canonical_form = None
    if canonical_form != data:
        problems.append((ALTERED, "manifest is not in canonical form (edited)"))
    signer = registry.get(str(body.get("signing_key")))
    if signer is None:
        problems.append((UNKNOWN_DEVICE, f"signed by key {body.get('signing_key')}, which no "
                         "enrolled device has"))
    elif signer.device != body.get("device"):
        problems.append((UNKNOWN_DEVICE, f"claims device {body.get('device')!r} but the key is "
                         f"enrolled to {signer.device!r}"))
    elif signature is None:
        problems.append((ALTERED, "signature file missing"))
    else:
        try:
            signer.public_key.verify(signature, data)
        except InvalidSignature:
            problems.append((ALTERED, "signature does not match the manifest"))
    return body, problems


def _check_item(path: Path, registry: dict[str, EnrolledDevice],
                agency_key: X25519PrivateKey | None) -> ItemReport:
    item = ItemReport(path.name, path)
    data = path.read_bytes()
    item.digest = hashlib.sha256(data).hexdigest()
    sig_path = path.with_name(path.name[: -len(MANIFEST)] + SIGNATURE)
    body, problems = check_manifest(data, sig_path.read_bytes() if sig_path.exists() else None,
                                    registry)
    for status, problem in problems:
        item.fail(status, problem)
    if body is None:
        return item
    item.body = body
    sequence = body.get("sequence")
    if type(sequence) is not int or sequence < 1:  # bool is an int to Python, not here
        item.fail(ALTERED, f"sequence {repr(sequence)[:40]} is not a positive integer")
        sequence = None  # no place in the chain
    item.device, item.sequence = body.get("device"), sequence
    item.kind, item.activity = body.get("kind"), body.get("activity")
    item.cut_short = bool(body.get("cut_short"))
    files = body.get("files", [])
    if not isinstance(files, list) or not all(isinstance(r, dict) for r in files):
        item.fail(ALTERED, "files is not a list of file records")
    for record in file_records(body):
        _check_file(item, path.parent, record, agency_key)
    return item


def file_records(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The file records a manifest lists; anything else there is no record (see _check_item)."""
    files = (body or {}).get("files", [])
    return [r for r in files if isinstance(r, dict)] if isinstance(files, list) else []


def _plain_name(name: str) -> bool:
    return not ("/" in name or "\\" in name or name in ("", ".", ".."))


def _check_file(item: ItemReport, folder: Path, record: dict[str, Any],
                agency_key: X25519PrivateKey | None) -> None:
    name = str(record.get("name"))
    if not _plain_name(name):
        item.fail(ALTERED, f"{name!r}: not a plain file name")
        return
    path = folder / name
    if not path.is_file():
        item.fail(MISSING, f"{name}: file missing")
        return
    data = path.read_bytes()
    if len(data) != record.get("stored_bytes"):
        item.fail(ALTERED, f"{name}: {len(data)} bytes stored, manifest says "
                  f"{record.get('stored_bytes')}")
    if hashlib.sha256(data).hexdigest() != record.get("stored_sha256"):
        item.fail(ALTERED, f"{name}: SHA-256 of the stored bytes differs from the manifest")
        if record.get("encrypted"):
            try:
                _check_header(item, name, parse(data, name))
            except EvidenceFileError:
                pass  # not even a header: the hash has said it
        return
    if not record.get("encrypted"):
        item.plaintext_checked = True  # stored in the clear: the stored hash is the plaintext's
        return
    try:
        parsed = parse(data, name)
    except EvidenceFileError as exc:
        item.fail(ALTERED, str(exc))
        return
    _check_header(item, name, parsed)
    if len(parsed.chunks) != record.get("chunks") or parsed.torn_bytes:
        item.fail(ALTERED, f"{name}: {len(parsed.chunks)} chunks (+{parsed.torn_bytes} stray "
                  f"bytes), manifest says {record.get('chunks')}")
    if agency_key is None:
        return
    digest, size, final_seen = hashlib.sha256(), 0, False
    try:
        for chunk, plain, final in decrypt_chunks(parsed, agency_key, name):
            if final_seen:
                raise EvidenceFileError(f"{name}: chunk {chunk.index} follows the final chunk")
            digest.update(plain)
            size += len(plain)
            final_seen = final
    except EvidenceFileError as exc:
        item.fail(ALTERED, str(exc))
        return
    if record.get("complete") and not final_seen:
        item.fail(ALTERED, f"{name}: the final chunk is missing (truncated)")
    if record.get("plaintext_sha256") is not None:
        if digest.hexdigest() != record["plaintext_sha256"] or size != record.get("plaintext_bytes"):
            item.fail(ALTERED, f"{name}: decrypted content differs from the manifest's hash")
    item.plaintext_checked = True


def _check_header(item: ItemReport, name: str, parsed: ParsedFile) -> None:
    """A file's header names the file and its device: a renamed or exchanged file says so."""
    if parsed.header.get("name") != name:
        item.fail(ALTERED, f"{name}: its header names it {str(parsed.header.get('name'))[:120]!r}"
                  " (renamed or exchanged)")
    if item.body and parsed.header.get("device") != item.body.get("device"):
        item.fail(ALTERED, f"{name}: its header names device "
                  f"{str(parsed.header.get('device'))[:40]!r}, the manifest "
                  f"{item.body.get('device')!r}")


def _check_swaps(items: list[ItemReport]) -> None:
    """An altered file whose bytes are another item's: reordered, not merely edited."""
    owners: dict[str, str] = {}
    for item in items:
        for record in file_records(item.body):
            owners[str(record.get("stored_sha256"))] = f"{item.manifest} ({record.get('name')})"
    for item in items:
        if item.status != ALTERED:
            continue
        for record in file_records(item.body):
            path = item.path.parent / str(record.get("name"))
            if not _plain_name(str(record.get("name"))) or not path.is_file():
                continue
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
            owner = owners.get(actual)
            if owner and actual != record.get("stored_sha256"):
                item.status = OUT_OF_ORDER
                item.problems.insert(0, f"{record.get('name')} holds the bytes sealed by {owner}")


def _check_chain(items: list[ItemReport]) -> tuple[dict[str, list[int]], dict[str, int]]:
    missing: dict[str, list[int]] = {}
    starts: dict[str, int] = {}
    by_device: dict[str, dict[int, ItemReport]] = {}
    # Items that passed their own checks claim their sequence numbers first: an altered
    # manifest repeating another's number must not make the genuine one look out of order.
    for item in sorted(items, key=lambda i: i.status != VALID):
        if item.body is None or item.status == UNKNOWN_DEVICE or not isinstance(item.sequence, int):
            continue
        chain = by_device.setdefault(str(item.device), {})
        if item.sequence in chain:
            item.fail(OUT_OF_ORDER, f"sequence {item.sequence} also claimed by "
                      f"{chain[item.sequence].manifest}")
            continue
        chain[item.sequence] = item
    for device, chain in by_device.items():
        numbers = sorted(chain)
        starts[device] = numbers[0]
        missing[device] = [n for n in range(numbers[0], numbers[-1] + 1) if n not in chain]
        if numbers[0] == 1 and chain[1].body and chain[1].body.get("prev") != GENESIS:
            chain[1].fail(ALTERED, "first in the chain but does not start from genesis")
        for n in numbers[1:]:
            before = chain.get(n - 1)
            item = chain[n]
            # An altered predecessor's digest changed with it: its successor's link is not
            # to blame, and the predecessor already reports the alteration.
            if (before is not None and before.status == VALID and item.body
                    and item.body.get("prev") != before.digest):
                item.fail(OUT_OF_ORDER, f"its chain link does not point at sequence {n - 1} "
                          f"({before.manifest})")
    return missing, starts


def _check_heads(report: Report, paths: list[Path], registry: dict[str, EnrolledDevice],
                 tsa_ca: Path | None) -> None:
    """Completeness at the newest end: the evidence must reach the highest chain head the
    device signed (at a docking), and the manifest there must be the one it names."""
    heads, problems = find_heads(paths, registry)
    report.problems.extend(problems)
    for device, head in latest(heads).items():
        present = {i.sequence: i for i in report.items
                   if i.device == device and isinstance(i.sequence, int)}
        highest = max(present, default=0)
        entry: dict[str, Any] = {"file": head.path.name, "sequence": head.sequence,
                                 "head": head.head, "utc_ms": head.utc_ms, "reached": True}
        report.heads[device] = entry
        if tsa_ca is not None:
            # Trusted time: when the unit's TSA saw this head (not the device's clock).
            entry["timestamp"], problem = check_token(head.path, tsa_ca)
            if problem:
                report.problems.append(problem)
        if head.sequence > highest:
            entry["reached"] = False
            report.missing.setdefault(device, []).extend(range(highest + 1, head.sequence + 1))
            report.problems.append(
                f"{device}: the chain head it signed ({head.path.name}) names sequence "
                f"{head.sequence}, the evidence ends at {highest}: the newest items were removed")
        elif head.sequence > 0 and present.get(head.sequence) is not None \
                and present[head.sequence].digest != head.head:
            entry["reached"] = False
            report.problems.append(f"{device}: the manifest at sequence {head.sequence} is not "
                                   f"the one its chain head {head.path.name} names")


def summary_lines(report: Report) -> Iterator[str]:
    for item in report.items:
        where = f"#{item.sequence}" if item.sequence is not None else "#?"
        extra = " (cut short)" if item.cut_short else ""
        checked = "" if item.plaintext_checked or item.status != VALID else " [plaintext not checked]"
        line = f"{item.status.upper():<14} {where:>6}  {item.kind or '?':<11} {item.manifest}{extra}{checked}"
        yield line
        for problem in item.problems:
            yield f"{'':22}- {problem}"
    for device, numbers in report.missing.items():
        if numbers:
            yield f"MISSING        {device}: sequence {_ranges(numbers)} absent from the chain"
    for gap in report.gaps:
        where = "inside a recording" if gap.within_recording else "between recordings"
        if gap.explained:
            why = ", ".join(f"interruption {w['interruption']} ({w['reason'] or '?'})"
                            for w in gap.explained_by)
            yield f"GAP            {gap.activity}: {gap.seconds:.1f} s {where}, explained by {why}"
        else:
            yield (f"UNEXPLAINED    {gap.activity}: {gap.seconds:.1f} s {where} after "
                   f"{gap.after}, no interruption on record")
    for device, head in report.heads.items():
        if head["reached"]:
            stamped = f", time-stamped {head['timestamp']}" if head.get("timestamp") else ""
            yield (f"HEAD           {device}: signed chain head #{head['sequence']} "
                   f"({head['file']}) reached{stamped}")
    for problem in report.problems:
        yield f"PROBLEM        {problem}"
    for c in report.conflicts:
        yield (f"CONFLICT       {c.get('device')} sent {c.get('activity')}/{c.get('name')} "
               f"({c.get('sha256', '?')[:12]}…), refused: {c.get('reason')}; kept aside in "
               f"{c.get('bytes_path')}")
    yield "ALL VALID" if report.ok else "NOT VALID"


def _ranges(numbers: list[int]) -> str:
    out, start, prev = [], numbers[0], numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)
