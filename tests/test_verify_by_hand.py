"""docs/verify-by-hand.sh checks and decrypts a real archive with stock tools only, and
fails on tampered copies (issue 18).

A short simulated shift docks through the simulated dock, which leaves a real archive:
the sealed evidence, the device's signed chain head, the dock's receipts as files. The
script runs under ``/bin/sh`` with a ``PATH`` holding only openssl, sha256sum and POSIX
tools — no Python, no jq — against the archive as it is (everything verifies, and the
plaintext it writes is the plaintext the manifests sealed) and against copies with a
flipped byte, a removed item, the newest item removed, two files exchanged and the final
chunk cut off, where it must say NOT VERIFIED and name the problem. ``bodycam verify``
is asked the same about the newest item.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from docked import bodycam, shared_docked_shift

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "verify-by-hand.sh"
# What the script may use: the stock tools it names, and nothing else on PATH.
TOOLS = ["sh", "openssl", "sha256sum", "od", "tail", "head", "sed", "tr", "cut", "sort", "wc",
         "find", "cmp", "grep", "mktemp", "rm", "cp", "mkdir", "cat", "printf"]
MISSING_TOOLS = [t for t in TOOLS + ["ffprobe"] if shutil.which(t) is None]
assert not MISSING_TOOLS, f"needs {MISSING_TOOLS} (make test installs them)"

@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_docked_shift(tmp_path_factory)


@pytest.fixture(scope="module")
def stock_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH of the stock tools only (symlinks), so the script can reach nothing of ours."""
    bin_dir = tmp_path_factory.mktemp("stock-bin")
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def by_hand(stock_path: str, evidence: Path, device_key: Path, *options: str
            ) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", str(SCRIPT), *options, str(evidence), str(device_key)],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": stock_path, "TMPDIR": os.environ.get("TMPDIR", "/tmp")})


def manifests(evidence: Path) -> list[tuple[Path, dict]]:
    found = [(p, json.loads(p.read_bytes())) for p in evidence.rglob("*.manifest.json")]
    return sorted(found, key=lambda item: item[1]["sequence"])


def tampered(archive: Path, tmp_path: Path) -> Path:
    """A writable copy of the device's archive folder (the archive itself is read-only)."""
    copy = tmp_path / "BC-0001"
    shutil.copytree(archive / "archive" / "BC-0001", copy)
    for path in copy.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return copy


def remove_item(manifest: Path, body: dict) -> None:
    for record in body["files"]:
        (manifest.parent / record["name"]).unlink()
    manifest.unlink()
    manifest.with_name(manifest.name.replace(".manifest.json", ".manifest.sig")).unlink()


@pytest.mark.req("R18.1")
def test_the_archive_verifies_and_decrypts_with_stock_tools_only(archive, stock_path, tmp_path):
    evidence = archive / "archive" / "BC-0001"
    plain = tmp_path / "plain"
    proc = by_hand(stock_path, evidence, archive / "device.pub.pem",
                   "-k", str(archive / "dock" / "keys" / "agency_x25519.pem"),
                   "-r", str(archive / "dock" / "keys" / "dock_ed25519.pub.pem"),
                   "-o", str(plain))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert proc.stdout.rstrip().endswith("ALL VERIFIED") and "FAIL" not in proc.stdout
    assert "signed chain head #" in proc.stdout
    sealed = manifests(evidence)
    assert {m["kind"] for _, m in sealed} >= {"segment", "photo", "activity"}
    # Every encrypted file was authenticated chunk by chunk and decrypted to what was sealed.
    decrypted = 0
    for path, body in sealed:
        for record in body["files"]:
            if not record["encrypted"]:
                continue
            out = plain / path.parent.name / record["name"].removesuffix(".bce")
            assert hashlib.sha256(out.read_bytes()).hexdigest() == record["plaintext_sha256"]
            assert f"{record['name']}: {record['chunks']} chunks authenticated" in proc.stdout
            decrypted += 1
    assert decrypted >= 6
    ts = next(plain.rglob("*.ts"))
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(ts)],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and "codec_name=h264" in probe.stdout


def test_archived_files_are_read_only_and_receipted_beside_the_evidence(archive):
    evidence = archive / "archive" / "BC-0001"
    pub = archive / "dock" / "keys" / "dock_ed25519.pub.pem"
    checked = 0
    for path in evidence.rglob("*"):
        if path.is_dir() or path.name.endswith((".receipt.json", ".receipt.sig")):
            continue
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
        if path.parent.name == "audit" or path.suffix == ".tsr":  # the dock's own token
            continue
        receipt = path.with_name(path.name + ".receipt.json")
        body = json.loads(receipt.read_bytes())
        assert body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        proc = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub),
                               "-rawin", "-in", str(receipt), "-sigfile",
                               str(path.with_name(path.name + ".receipt.sig"))],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        checked += 1
    assert checked >= 10


@pytest.mark.req("R18.1")
def test_a_flipped_byte_fails(archive, stock_path, tmp_path):
    copy = tampered(archive, tmp_path)
    media = max(copy.rglob("*.ts.bce"), key=lambda p: p.stat().st_size)
    data = bytearray(media.read_bytes())
    data[len(data) // 2] ^= 0x01
    media.write_bytes(bytes(data))
    proc = by_hand(stock_path, copy, archive / "device.pub.pem")
    assert proc.returncode == 1 and proc.stdout.rstrip().endswith("NOT VERIFIED")
    assert f"FAIL    {media.name}: stored bytes differ" in proc.stdout


@pytest.mark.req("R18.1")
def test_a_removed_item_fails(archive, stock_path, tmp_path):
    copy = tampered(archive, tmp_path)
    sealed = manifests(copy)
    remove_item(*sealed[len(sealed) // 2])
    proc = by_hand(stock_path, copy, archive / "device.pub.pem")
    assert proc.returncode == 1
    n = sealed[len(sealed) // 2][1]["sequence"]
    assert f"sequence {n}-{n} absent from the chain" in proc.stdout


@pytest.mark.req("R18.1")
def test_removed_newest_items_fail_by_the_signed_chain_head(archive, stock_path, tmp_path):
    copy = tampered(archive, tmp_path)
    sealed = manifests(copy)
    remove_item(*sealed[-1])  # the newest: nothing in the chain points at it
    proc = by_hand(stock_path, copy, archive / "device.pub.pem")
    assert proc.returncode == 1
    assert "the newest items were removed" in proc.stdout
    assert "chain links up to sequence" in proc.stdout  # the chain alone looks whole
    # bodycam verify says the same.
    verify = bodycam("verify", str(copy), "--trust",
                     str(archive / "dock"))
    assert verify.returncode == 1
    assert "the newest items were removed" in verify.stdout
    assert f"sequence {sealed[-1][1]['sequence']}" in verify.stdout


@pytest.mark.req("R18.1")
def test_two_exchanged_files_fail_and_are_named(archive, stock_path, tmp_path):
    copy = tampered(archive, tmp_path)
    first, second = sorted(copy.rglob("*.ts.bce"))[1:3]
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    proc = by_hand(stock_path, copy, archive / "device.pub.pem")
    assert proc.returncode == 1
    assert f"FAIL    {first.name}: stored bytes differ" in proc.stdout
    assert f"FAIL    {second.name}: stored bytes differ" in proc.stdout
    # The header inside each file names the other: the swap is named, not only found.
    assert f"FAIL    {first.name}: its header names it {second.name}" in proc.stdout
    assert f"FAIL    {second.name}: its header names it {first.name}" in proc.stdout


@pytest.mark.req("R18.1")
def test_a_cut_final_chunk_fails(archive, stock_path, tmp_path):
    copy = tampered(archive, tmp_path)
    media = max(copy.rglob("*.ts.bce"), key=lambda p: p.stat().st_size)
    data = media.read_bytes()
    # The final chunk of a closed file is its last: 13 head bytes, its ciphertext, 32 tag.
    pos = 6 + int.from_bytes(data[4:6], "big")
    last = pos
    while pos < len(data):
        last = pos
        pos += 13 + int.from_bytes(data[pos:pos + 4], "big") + 32
    assert data[last + 12] == 1  # its flags byte says final
    media.write_bytes(data[:last])
    proc = by_hand(stock_path, copy, archive / "device.pub.pem")
    assert proc.returncode == 1
    assert f"FAIL    {media.name}: stored bytes differ" in proc.stdout


def test_the_chunk_checks_catch_a_cut_or_moved_chunk_on_their_own(archive, stock_path, tmp_path):
    """Below the manifest: with the stored-bytes check passed (a manifest made to fit, as a
    forger with the device's key could), the chunk tags still catch a file cut at a chunk
    boundary and two chunks exchanged."""
    from cryptography.hazmat.primitives import serialization

    source, body = next((p, m) for p, m in manifests(archive / "archive" / "BC-0001")
                        if m["kind"] == "segment" and m["files"][0]["chunks"] >= 3)
    one = tmp_path / "one-item"  # the item alone: the script decrypts only its files
    one.mkdir()
    manifest = one / source.name
    for record in body["files"]:
        shutil.copyfile(source.parent / record["name"], one / record["name"])
    record = body["files"][0]
    media = manifest.parent / record["name"]
    data = media.read_bytes()
    pos = 6 + int.from_bytes(data[4:6], "big")
    starts = []
    while pos < len(data):
        starts.append(pos)
        pos += 13 + int.from_bytes(data[pos:pos + 4], "big") + 32
    starts.append(len(data))
    chunks = [data[a:b] for a, b in zip(starts, starts[1:])]
    device_key = serialization.load_pem_private_key(
        (archive / "device" / "keys" / "device_ed25519.pem").read_bytes(), password=None)

    def refit(stored: bytes) -> subprocess.CompletedProcess:
        media.write_bytes(stored)
        record.update(stored_bytes=len(stored), stored_sha256=hashlib.sha256(stored).hexdigest())
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        manifest.write_bytes(text)
        manifest.with_name(manifest.name.replace(".json", ".sig")).write_bytes(
            device_key.sign(text))
        return by_hand(stock_path, one, archive / "device.pub.pem",
                       "-k", str(archive / "dock" / "keys" / "agency_x25519.pem"))

    head = data[:starts[0]]
    cut = refit(head + b"".join(chunks[:-1]))
    assert cut.returncode == 1 and f"{media.name}: no final chunk" in cut.stdout
    moved = refit(head + chunks[1] + chunks[0] + b"".join(chunks[2:]))
    assert moved.returncode == 1 and f"{media.name}: chunk 0 at byte" in moved.stdout
    assert "fails its tag" in moved.stdout


def write_v1(plaintext: bytes, agency_public, context: dict, written_at: int) -> bytes:
    """A version 1 file (AES-256-GCM, wrapped file key), from the version 1 document: the
    format recorders in service wrote before version 2."""
    import base64
    import struct

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = lambda key: key.public_bytes(Encoding.Raw, PublicFormat.Raw)  # noqa: E731
    ephemeral = X25519PrivateKey.generate()
    e, a = raw(ephemeral.public_key()), raw(agency_public)
    kek = HKDF(SHA256(), 32, salt=e + a, info=b"bodycam evidence file key v1").derive(
        ephemeral.exchange(agency_public))
    file_key = AESGCM.generate_key(256)
    header = json.dumps({"alg": "X25519-HKDF-SHA256/AES-256-GCM",
                         "agency_key": hashlib.sha256(a).hexdigest()[:16],
                         "ephemeral": base64.b64encode(e).decode(),
                         "wrapped_key": base64.b64encode(AESGCM(kek).encrypt(bytes(12), file_key,
                                                                             e + a)).decode(),
                         "chunk_limit": 1 << 20, **context},
                        sort_keys=True, separators=(",", ":")).encode()
    out = [b"BCE1", struct.pack(">H", len(header)), header]
    pieces = [plaintext[i:i + 100_000] for i in range(0, len(plaintext), 100_000)] + [b""]
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        sealed = AESGCM(file_key).encrypt(index.to_bytes(11, "big") + bytes([final]), piece,
                                          hashlib.sha256(header).digest()
                                          + struct.pack(">QQ", index, written_at))
        out.append(struct.pack(">IQ", len(sealed), written_at) + sealed)
    return b"".join(out)


def test_version_1_files_still_verify_and_export(archive, tmp_path):
    """An item whose media is a version 1 file (as recorders wrote before version 2),
    sealed by the device: bodycam verify checks every GCM chunk, export decrypts it."""
    from cryptography.hazmat.primitives import serialization

    from firmware_py.evidence.keys import load_agency_private

    copy = tampered(archive, tmp_path)
    manifest, body = next((p, m) for p, m in manifests(copy) if m["kind"] == "segment")
    record = body["files"][0]
    agency = load_agency_private(archive / "dock")
    plain = tmp_path / "plain"
    assert bodycam("export", str(archive / "archive" / "BC-0001"), "--trust",
                   str(archive / "dock"), "--key", str(archive / "dock"),
                   "--out", str(plain)).returncode == 0
    plaintext = (plain / manifest.parent.name / record["name"].removesuffix(".bce")).read_bytes()
    v1 = write_v1(plaintext, agency.public_key(), {"device": "BC-0001", "name": record["name"],
                                                   "role": "media"}, 1795914060301)
    (manifest.parent / record["name"]).write_bytes(v1)
    record.update(stored_bytes=len(v1), stored_sha256=hashlib.sha256(v1).hexdigest(),
                  chunks=len(plaintext) // 100_000 + 1 + (len(plaintext) % 100_000 > 0))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    manifest.write_bytes(text)
    device_key = serialization.load_pem_private_key(
        (archive / "device" / "keys" / "device_ed25519.pem").read_bytes(), password=None)
    manifest.with_name(manifest.name.replace(".json", ".sig")).write_bytes(device_key.sign(text))
    # The chain link of the next manifest now points at the old bytes: check this item alone.
    verify = bodycam("verify", str(manifest), "--trust", str(archive / "dock"), "--key",
                     str(archive / "dock"), "--json")
    item = json.loads(verify.stdout)["items"][0]
    assert item["status"] == "valid" and item["plaintext_checked"], item
    # A flipped byte in a version 1 chunk fails its GCM tag.
    damaged = bytearray(v1)
    damaged[-20] ^= 1
    from firmware_py.evidence.evidence_file import EvidenceFileError, decrypt_chunks, parse
    with pytest.raises(EvidenceFileError, match="fails authentication"):
        for _ in decrypt_chunks(parse(bytes(damaged), "v1"), agency, "v1"):
            pass


@pytest.mark.req("R18.1")
def test_each_chain_head_has_a_time_stamp_token_openssl_verifies(archive, stock_path, tmp_path):
    heads = sorted((archive / "archive" / "BC-0001" / "chain").glob("*.chainhead.json"))
    assert heads
    ca = archive / "dock" / "ca" / "ca.crt"
    for head in heads:
        token = head.with_name(head.name.replace(".json", ".tsr"))
        proc = subprocess.run(["openssl", "ts", "-verify", "-data", str(head), "-in", str(token),
                               "-CAfile", str(ca)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and "Verification: OK" in proc.stdout, proc.stderr
        text = subprocess.run(["openssl", "ts", "-reply", "-in", str(token), "-text"],
                              capture_output=True, text=True, timeout=30).stdout
        assert "Status: Granted." in text and "TSA: DirName:/CN=bodycam dock CA TSA" in text
        # The token is over these bytes: another head does not verify with it.
        other = tmp_path / head.name
        other.write_bytes(head.read_bytes().replace(b'"sequence":', b'"sequence":1'))
        proc = subprocess.run(["openssl", "ts", "-verify", "-data", str(other), "-in",
                               str(token), "-CAfile", str(ca)], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode != 0
    by_hand_run = by_hand(stock_path, archive / "archive" / "BC-0001", archive / "device.pub.pem",
                          "-t", str(ca))
    assert by_hand_run.returncode == 0 and "time-stamp token verifies" in by_hand_run.stdout
    verify = bodycam("verify",
                     str(archive / "archive" / "BC-0001"), "--trust",
                     str(archive / "dock"))
    assert verify.returncode == 0 and "time-stamped" in verify.stdout, verify.stdout[-1500:]
