"""Hostile evidence files (issue 7): damage is reported as such, and reading changes nothing.

A small sealed evidence set is built once per module with the real sealing code (enrolment,
``EncryptingFile``, ``Sealer``): a segment (media and metadata), a photo (photo and
metadata) and an activity record kept in the clear. Each example copies it, then truncates a
file at any point, appends garbage to it or flips bytes in it — media, metadata, manifest or
signature. Properties: the reader (``parse``/``decrypt_chunks``) fails with nothing but its
own ``EvidenceFileError`` and never hands back damaged content as whole; ``bodycam verify``
reports the damaged item as not valid, leaves the others valid, exits 1, and changes no file
on disk.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bodycam.cli import main
from firmware_py.evidence.evidence_file import (MAGIC, ChunkCounter, EncryptingFile,
                                                EvidenceFileError, StoredFile, decrypt_chunks,
                                                parse)
from firmware_py.evidence.keys import (device_identity, device_key, enroll, load_agency_private,
                              load_registry)
from firmware_py.evidence.seal import MANIFEST, Sealer, plain_file
from firmware_py.evidence.store import EvidenceStore
from firmware_py.evidence.verify import verify
from hostile import examples

DEVICE = "BC-0001"
UNIT = "Baofeng County HRSS Labour Inspection Brigade"
UTC_MS = 1_764_378_060_000  # 2025-11-29 01:01:00 UTC


@dataclass(frozen=True)
class SealedSet:
    """Sealed evidence on a device, and the dock (enrolled devices, agency key) to check it."""

    device: Path
    dock: Path
    agency: X25519PrivateKey
    owner: dict[str, str]  # every evidence file (path under evidence/) → its item's manifest
    plaintext: dict[str, bytes]  # encrypted file (path under evidence/) → what was written

    @property
    def evidence(self) -> Path:
        return self.device / "evidence"


def _encrypted(path: Path, agency_public: X25519PublicKey, chunks: list[bytes],
               plaintext: dict[str, bytes]) -> StoredFile:
    f = EncryptingFile(path, agency_public, {"device": DEVICE, "name": path.name},
                       utc_ms=lambda: UTC_MS, durable=False)
    for data in chunks:
        f.write(data)
        f.flush()  # one authenticated chunk per flush, as the recorder writes them
    plaintext[path.name] = b"".join(chunks)
    return f.close()


@functools.cache
def sealed_set() -> SealedSet:
    """Built once per process (the properties take no pytest fixtures, for bench/fuzz.py)."""
    root = Path(tempfile.mkdtemp(prefix="bodycam-hostile-evidence-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    device, dock = root / "device", root / "dock"
    enroll(device, dock, DEVICE, UNIT)
    identity = device_identity(device)
    store = EvidenceStore(device / "evidence", DEVICE)
    activity = store.open_activity(UTC_MS / 1000)
    sealer = Sealer(identity, store)
    plain: dict[str, bytes] = {}
    fields = {"activity": activity.id, "officer": "OFF-0417"}

    stem = store.evidence_path(activity, store.next_sequence(), UTC_MS / 1000, "")
    media = _encrypted(stem.with_name(stem.name + ".ts.bce"), identity.agency_public,
                       [bytes([i]) * 700 for i in range(3)], plain)
    meta = _encrypted(stem.with_name(stem.name + ".meta.jsonl.bce"), identity.agency_public,
                      [b'{"kind":"segment_opened"}\n'], plain)
    sealer.seal("segment", stem, [("media", media), ("metadata", meta)], fields)

    stem = store.evidence_path(activity, store.next_sequence(), UTC_MS / 1000 + 7, "")
    photo = _encrypted(stem.with_name(stem.name + ".jpg.bce"), identity.agency_public,
                       [b"\xff\xd8\xff\xe0" + bytes(500)], plain)
    meta = _encrypted(stem.with_name(stem.name + ".json.bce"), identity.agency_public,
                      [b'{"kind":"photo"}'], plain)
    sealer.seal("photo", stem, [("photo", photo), ("metadata", meta)], fields)

    record = activity.path / "activity.json"
    record.write_bytes(json.dumps({"id": activity.id, "recordings": 1}).encode())
    sealer.seal("activity", activity.path / "activity", [("record", plain_file("record", record))],
                fields)

    owner: dict[str, str] = {}
    for manifest in sorted(activity.path.glob(f"*{MANIFEST}")):
        stem_name = manifest.name[:-len(MANIFEST)]
        for path in activity.path.iterdir():
            if path.name.startswith(stem_name + "."):
                owner[f"{activity.id}/{path.name}"] = manifest.name
    assert len(owner) == 11, sorted(owner)  # 5 files, 3 manifests, 3 signatures
    return SealedSet(device, dock, load_agency_private(dock),
                     owner, {f"{activity.id}/{name}": data for name, data in plain.items()})


# --- damage ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Damage:
    """Truncation, appended garbage or flipped bytes, placed relative to the file's length."""

    kind: str  # "truncate", "append", "flip"
    where: tuple[float, ...]  # positions as fractions of the length
    data: bytes  # appended bytes, or the XOR masks of flipped ones (never zero)

    def apply(self, original: bytes) -> bytes:
        if self.kind == "truncate":
            return original[:int(self.where[0] * len(original))]
        if self.kind == "append":
            return original + self.data
        damaged = bytearray(original)
        flipped = {min(int(f * len(original)), len(original) - 1) for f in self.where}
        for i, mask in zip(sorted(flipped), self.data):  # each byte once: two flips could undo
            damaged[i] ^= mask
        return bytes(damaged)


fractions = st.floats(0, 1, exclude_max=True)
damages = st.one_of(
    st.builds(Damage, st.just("truncate"), st.tuples(fractions), st.just(b"")),
    st.builds(Damage, st.just("append"), st.just(()), st.binary(min_size=1, max_size=300)),
    st.builds(Damage, st.just("flip"), st.lists(fractions, min_size=1, max_size=3).map(tuple),
              st.binary(min_size=3, max_size=3).map(lambda b: bytes(x or 1 for x in b))),
)


def read_back(data: bytes, agency: X25519PrivateKey, name: str) -> tuple[bytes, bool, int]:
    """Plaintext, whether the last chunk read is the final one, stray bytes after the chunks."""
    parsed = parse(data, name)
    plain, final = bytearray(), False
    for _, text, is_final in decrypt_chunks(parsed, agency, name):
        assert not final, "a chunk after the final one was accepted"
        plain += text
        final = is_final
    return bytes(plain), final, parsed.torn_bytes


def encrypted_files() -> list[str]:
    return sorted(sealed_set().plaintext)


@pytest.mark.req("R18.1")
@examples(150)
@given(st.sampled_from(range(4)), damages)
def test_damaged_file_is_refused_by_the_reader_with_its_own_error(which: int,
                                                                  damage: Damage) -> None:
    evidence = sealed_set()
    name = encrypted_files()[which]
    original = (evidence.evidence / name).read_bytes()
    data = damage.apply(original)
    try:
        plain, final, torn = read_back(data, evidence.agency, name)
    except EvidenceFileError as exc:
        assert str(exc).startswith(name) and "\n" not in str(exc)
        return
    if data != original:
        assert not (final and torn == 0 and plain == evidence.plaintext[name]), \
            "damaged file read back as whole"


@pytest.mark.req("R18.1")
@examples(150)
@given(st.sampled_from(range(4)), damages, st.lists(st.integers(1, 300_000), min_size=1,
                                                   max_size=40))
def test_chunks_counted_as_they_arrive_are_the_chunks_parse_finds(which: int, damage: Damage,
                                                                  pieces: list[int]) -> None:
    """The dock counts a file's chunks from its bytes as they arrive (``ChunkCounter``), in
    whatever pieces the device sent: damaged or whole, the count is parse's, and a file that
    parse refuses is refused with parse's own error."""
    evidence = sealed_set()
    name = encrypted_files()[which]
    data = damage.apply((evidence.evidence / name).read_bytes())
    counter, at = ChunkCounter(name), 0
    for size in itertools.cycle(pieces):
        if at >= len(data):
            break
        counter.feed(data[at:at + size])
        at += size
    try:
        expected: int | str = len(parse(data, name).chunks)
    except EvidenceFileError as exc:
        expected = str(exc)
    try:
        counted: int | str = counter.count()
    except EvidenceFileError as exc:
        counted = str(exc)
    assert counted == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
header_fields = st.sampled_from(["alg", "agency_key", "ephemeral", "chunk_limit",
                                 "name"])
base64_text = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())


@st.composite
def headers(draw: st.DrawFn, original: dict[str, object]) -> bytes:
    """A header rewritten: one field removed or given another value, or not JSON at all."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=300))
    if choice == 1:
        depth = draw(st.integers(1, 5000))
        return b"[" * depth + b"]" * draw(st.integers(0, depth))
    header = dict(original)
    key = draw(header_fields)
    if choice == 2:
        header.pop(key, None)
    else:
        header[key] = draw(json_values | base64_text)
    return json.dumps(header).encode()  # ASCII: lone surrogates are escaped


@examples(100)
@given(st.sampled_from(range(4)), st.data())
def test_rewritten_header_fails_with_the_readers_own_error(which: int,
                                                           data: st.DataObject) -> None:
    evidence = sealed_set()
    name = encrypted_files()[which]
    original = (evidence.evidence / name).read_bytes()
    parsed = parse(original, name)
    header = data.draw(headers(parsed.header))
    if len(header) > 0xFFFF or header == parsed.header_bytes:
        return
    chunks = original[len(MAGIC) + 2 + len(parsed.header_bytes):]
    rewritten = MAGIC + struct.pack(">H", len(header)) + header + chunks
    try:
        read_back(rewritten, evidence.agency, name)
    except EvidenceFileError as exc:
        assert str(exc).startswith(name) and "\n" not in str(exc)
    else:
        raise AssertionError("a file with another header was read back")


# --- verify ------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file and directory under ``root``: its mode, and for files the SHA-256."""
    seen: dict[str, tuple[int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if name in files else "dir"
            seen[str(path.relative_to(root))] = (path.stat().st_mode, digest)
    return seen


def bodycam_verify(evidence: Path, dock: Path, key: bool) -> tuple[int, dict, str]:
    """``bodycam verify --json`` in this process: exit code, report, standard error."""
    args = ["verify", str(evidence), "--trust", str(dock), "--json"]
    if key:
        args += ["--key", str(dock)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, json.loads(out.getvalue()), err.getvalue()


def verify_report(evidence: Path, key: bool) -> dict:
    """What ``bodycam verify --json`` reports (without building the command line each time)."""
    sealed = sealed_set()
    report = verify([evidence], load_registry(sealed.dock), sealed.agency if key else None)
    return json.loads(json.dumps(report.to_json()))  # as printed: it must be JSON


@pytest.mark.req("R18.1")
@examples(60)
@given(st.sampled_from(range(11)), damages, st.booleans())
def test_verify_reports_the_damaged_item_and_changes_nothing_on_disk(
        which: int, damage: Damage, with_key: bool) -> None:
    evidence = sealed_set()
    victim = sorted(evidence.owner)[which]
    with tempfile.TemporaryDirectory(prefix="bodycam-hostile-") as scratch:
        copy = Path(scratch) / "evidence"
        shutil.copytree(evidence.evidence, copy)
        path = copy / victim
        original = path.read_bytes()
        damaged = damage.apply(original)
        os.chmod(path, 0o644)
        path.write_bytes(damaged)
        os.chmod(path, 0o444)
        before = snapshot(Path(scratch)), snapshot(evidence.dock)
        report = verify_report(copy, with_key)
        assert (snapshot(Path(scratch)), snapshot(evidence.dock)) == before, "verify changed a file"
    statuses = {item["manifest"]: item["status"] for item in report["items"]}
    assert damaged != original and not report["ok"]
    assert statuses[evidence.owner[victim]] != "valid", report
    assert all(status == "valid" for manifest, status in statuses.items()
               if manifest != evidence.owner[victim]), report
    if not victim.endswith(MANIFEST):
        assert statuses[evidence.owner[victim]] == "altered", report


def test_altered_manifest_claiming_a_genuine_number_leaves_the_genuine_item_valid(
        tmp_path: Path) -> None:
    evidence = sealed_set()
    copy = tmp_path / "evidence"
    shutil.copytree(evidence.evidence, copy)
    first = sorted(copy.glob(f"*/*_000001_*{MANIFEST}"))[0]
    os.chmod(first, 0o644)
    first.write_bytes(first.read_bytes().replace(b'"sequence":1,', b'"sequence":3,'))
    report = verify_report(copy, False)
    statuses = {item["manifest"]: item["status"] for item in report["items"]}
    assert statuses == {first.name: "altered", "activity.manifest.json": "valid",
                        sorted(set(evidence.owner.values()))[1]: "valid"}


MANIFEST_KEYS = ["format", "kind", "device", "sequence", "prev", "signing_key", "start", "files",
                 "cut_short", "activity"]
RECORD_KEYS = ["role", "name", "plaintext_sha256", "plaintext_bytes", "stored_sha256",
               "stored_bytes", "chunks", "complete", "encrypted"]


@examples(60)
@given(st.sampled_from(range(3)), st.one_of(st.tuples(st.just(""), st.sampled_from(MANIFEST_KEYS)),
                                            st.tuples(st.just("files[0]"),
                                                      st.sampled_from(RECORD_KEYS))),
       json_values, st.booleans())
def test_manifest_rewritten_and_signed_by_its_device_never_breaks_verify(
        which: int, where: tuple[str, str], value: object, with_key: bool) -> None:
    """A hostile device signs whatever it likes: verify still reports, and changes nothing."""
    evidence = sealed_set()
    manifest_name = sorted(set(evidence.owner.values()))[which]
    with tempfile.TemporaryDirectory(prefix="bodycam-hostile-") as scratch:
        copy = Path(scratch) / "evidence"
        shutil.copytree(evidence.evidence, copy)
        manifest = next(copy.glob(f"*/{manifest_name}"))
        body = json.loads(manifest.read_bytes())
        table, key = where
        (body["files"][0] if table else body)[key] = value
        # JSON as a device would write it, floats and all (a sealed record allows none).
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        for path, content in ((manifest, data),
                              (manifest.with_name(manifest_name.replace(".json", ".sig")),
                               device_key(evidence.device).sign(data))):
            os.chmod(path, 0o644)
            path.write_bytes(content)
        changed = data != (evidence.evidence / manifest.parent.name / manifest_name).read_bytes()
        before = snapshot(Path(scratch))
        report = verify_report(copy, with_key)
        assert snapshot(Path(scratch)) == before, "verify changed a file"
    if changed and manifest_name != "activity.manifest.json":  # the last one has no successor
        assert not report["ok"], "the next item's chain link no longer points at this one"


@pytest.mark.req("R18.1")
def test_untouched_set_verifies_and_a_damaged_one_exits_1(tmp_path: Path) -> None:
    evidence = sealed_set()
    for key in (False, True):
        code, report, _ = bodycam_verify(evidence.evidence, evidence.dock, key)
        assert code == 0 and report["ok"] and len(report["items"]) == 3
        assert all(item["plaintext_checked"] == key or item["kind"] == "activity"
                   for item in report["items"])
    copy = tmp_path / "evidence"
    shutil.copytree(evidence.evidence, copy)
    victim = copy / encrypted_files()[0]
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes()[:-1])
    code, report, err = bodycam_verify(copy, evidence.dock, True)
    assert code == 1 and err == "" and report["counts"] == {"valid": 2, "altered": 1}
