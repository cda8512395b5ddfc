"""docs/evidence-format.md is implementable: sealed evidence checked without bodycam's code.

A short simulated shift produces real sealed evidence. Everything is then checked the way a
third party would, from the document alone: signatures with ``openssl pkeyutl``, stored
bytes with ``sha256sum``, the chain with ``hashlib``, and a ``.bce`` file decrypted by the
optional stdlib + ``cryptography`` reader of the document's section 5 (written out here, not
imported from ``firmware_py``), its plaintext hashed and read by ffprobe. The stock-tools
procedure (openssl, sha256sum and a POSIX shell, no crypto library) is
docs/verify-by-hand.sh, run by tests/test_verify_by_hand.py. Only the simulator that makes
the evidence is bodycam's; no check uses ``firmware_py``'s verification, parsing or keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from simulator.harness import scenario as sc
from bodycam.simulation import simulation

GENESIS = "0" * 64
# DER SubjectPublicKeyInfo of an Ed25519 key is this 12-byte prefix and the 32 raw bytes.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

# make test installs these; a machine without them fails here rather than skipping the
# independent checks.
MISSING_TOOLS = [t for t in ("openssl", "sha256sum", "ffprobe") if shutil.which(t) is None]
assert not MISSING_TOOLS, f"needs {MISSING_TOOLS} (make test installs them)"


# --- the document's reader, written out ----------------------------------------------------

class BadTag(ValueError):
    """A chunk whose HMAC tag does not match: altered, moved, or from another file."""


def decrypt_bce(data: bytes, agency: X25519PrivateKey) -> tuple[bytes, bool]:
    """Plaintext of a version 2 ``.bce`` file and whether it ends with a final chunk (docs:
    reference reader, section 5). Raises ``BadTag`` for any altered, reordered, dropped or
    foreign chunk."""
    if data[:4] != b"BCE2":
        raise ValueError("not a version 2 .bce file")
    (header_len,) = struct.unpack(">H", data[4:6])
    head = data[:6 + header_len]
    header = json.loads(head[6:])
    ephemeral = base64.b64decode(header["ephemeral"])
    agency_raw = agency.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
    shared = agency.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    okm = HKDF(SHA256(), 64, salt=ephemeral + agency_raw,
               info=b"bodycam evidence file keys v2").derive(shared)
    enc_key, mac_key = okm[:32], okm[32:]
    out, pos, index, final = [], 6 + header_len, 0, False
    while pos < len(data):
        if final:
            raise BadTag(f"chunk {index} follows the final chunk")
        length, _written_at, flags = struct.unpack(">IQB", data[pos:pos + 13])
        ciphertext = data[pos + 13:pos + 13 + length]
        tag = data[pos + 13 + length:pos + 13 + length + 32]
        expected = hmac.new(mac_key, head + struct.pack(">Q", index) + data[pos:pos + 13]
                            + ciphertext, hashlib.sha256).digest()
        if len(tag) != 32 or not hmac.compare_digest(tag, expected):
            raise BadTag(f"chunk {index} at byte {pos}")
        counter = struct.pack(">Q", index) + bytes(8)
        decryptor = Cipher(algorithms.AES(enc_key), modes.CTR(counter)).decryptor()
        out.append(decryptor.update(ciphertext) + decryptor.finalize())
        final = bool(flags & 1)
        pos, index = pos + 13 + length + 32, index + 1
    return b"".join(out), final


def chunks_of(data: bytes) -> tuple[int, list[bytes]]:
    """Where the chunks start, and each chunk as stored (head, ciphertext, tag)."""
    (header_len,) = struct.unpack(">H", data[4:6])
    pos, chunks = 6 + header_len, []
    start = pos
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append(data[pos:pos + 13 + length + 32])
        pos += 13 + length + 32
    return start, chunks


# --- the evidence --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s on the simulated recorder: ready for 20 s, then 15 s of recording."""
    out = tmp_path_factory.mktemp("evidence-format")
    scenario = sc.parse({
        "scenario": {"name": "format", "duration": "40s", "start": "2026-11-29T09:00:00+08:00"},
        "config": {"video": {"width": 320, "height": 180, "fps": 15}},
        "event": [{"at": 20, "action": "press", "button": "record"},
                  {"at": 35, "action": "press", "button": "record"}],
    }, "format.toml")
    simulation(scenario, out).run()
    return out


def manifests(shift: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every manifest under the evidence directory, in chain order."""
    found = [(p, json.loads(p.read_bytes()))
             for p in (shift / "device" / "evidence").rglob("*.manifest.json")]
    return sorted(found, key=lambda item: item[1]["sequence"])


def device_pem(shift: Path, tmp_path: Path) -> Path:
    """The device's public key from the dock's registry, as a PEM file for openssl."""
    record = json.loads((shift / "dock" / "devices" / "BC-0001.json").read_text())
    pem = tmp_path / "device.pub.pem"
    pem.write_text(record["public_key"])
    return pem


def openssl_verify(pem: Path, manifest: Path, signature: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem),
                           "-rawin", "-in", str(manifest), "-sigfile", str(signature)],
                          capture_output=True, text=True, timeout=30)


def sha256sum(path: Path) -> str:
    proc = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return proc.stdout.split()[0]


def agency_private(shift: Path) -> X25519PrivateKey:
    key = serialization.load_pem_private_key(
        (shift / "dock" / "keys" / "agency_x25519.pem").read_bytes(), password=None)
    assert isinstance(key, X25519PrivateKey)
    return key


# --- checks ----------------------------------------------------------------------------------

@pytest.mark.req("R18.1")
def test_every_manifest_verifies_with_openssl_and_a_flipped_byte_does_not(shift, tmp_path):
    sealed = manifests(shift)
    assert {m["kind"] for _, m in sealed} >= {"segment"} and len(sealed) >= 2
    pem = device_pem(shift, tmp_path)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert der[:12] == ED25519_SPKI_PREFIX and len(der) == 44
    key_id = hashlib.sha256(der[12:]).hexdigest()[:16]  # key ids: SHA-256 of the raw key
    for path, manifest in sealed:
        signature = path.with_name(path.name.replace(".manifest.json", ".manifest.sig"))
        assert len(signature.read_bytes()) == 64
        assert manifest["signing_key"] == key_id
        proc = openssl_verify(pem, path, signature)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Signature Verified Successfully" in proc.stdout

    path, _ = sealed[0]
    altered = bytearray(path.read_bytes())
    altered[len(altered) // 2] ^= 0x01
    copy = tmp_path / path.name
    copy.write_bytes(bytes(altered))
    proc = openssl_verify(pem, copy, path.with_name(path.name.replace(".manifest.json",
                                                                      ".manifest.sig")))
    assert proc.returncode != 0
    assert "Signature Verified Successfully" not in proc.stdout


def test_manifests_are_canonical_integer_only_json(shift):
    def no_floats(value: Any) -> bool:
        if isinstance(value, dict):
            return all(no_floats(v) for v in value.values())
        if isinstance(value, list):
            return all(no_floats(v) for v in value)
        return not isinstance(value, float)

    for path, manifest in manifests(shift):
        data = path.read_bytes()
        # RFC 8785 for these values: sorted keys, no whitespace, UTF-8, integers only.
        assert json.dumps(manifest, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode() == data, path.name
        assert no_floats(manifest), path.name
        assert manifest["format"] == "bodycam-manifest/1"


@pytest.mark.req("R18.1")
def test_stored_bytes_hash_to_the_manifest_and_the_chain_links(shift):
    sealed = manifests(shift)
    assert [m["sequence"] for _, m in sealed] == list(range(1, len(sealed) + 1))
    assert sealed[0][1]["prev"] == GENESIS
    for (before, _), (_, manifest) in zip(sealed, sealed[1:]):
        assert manifest["prev"] == hashlib.sha256(before.read_bytes()).hexdigest()
    for path, manifest in sealed:
        for record in manifest["files"]:
            stored = path.parent / record["name"]
            assert sha256sum(stored) == record["stored_sha256"], record["name"]
            assert stored.stat().st_size == record["stored_bytes"]
            if not record["encrypted"]:
                assert record["plaintext_sha256"] == record["stored_sha256"]


def test_the_documents_reader_decrypts_to_the_sealed_plaintext(shift, tmp_path):
    agency = agency_private(shift)
    agency_raw = agency.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
    segments = [(p, m) for p, m in manifests(shift) if m["kind"] == "segment"]
    with_audio = 0
    for path, manifest in segments:
        files = {r["role"]: r for r in manifest["files"]}
        plain = {}
        for role in ("media", "metadata"):
            record = files[role]
            data = (path.parent / record["name"]).read_bytes()
            header = json.loads(data[6:6 + struct.unpack(">H", data[4:6])[0]])
            assert header["alg"] == "X25519-HKDF-SHA256/AES-256-CTR+HMAC-SHA256"
            assert header["name"] == record["name"] and header["role"] == role
            assert header["agency_key"] == manifest["agency_key"] \
                == hashlib.sha256(agency_raw).hexdigest()[:16]
            plain[role], final = decrypt_bce(data, agency)
            assert final is record["complete"] is True
            assert hashlib.sha256(plain[role]).hexdigest() == record["plaintext_sha256"]
            assert len(plain[role]) == record["plaintext_bytes"]
            assert len(chunks_of(data)[1]) == record["chunks"]
        meta = json.loads(plain["metadata"].splitlines()[0])
        ts = tmp_path / files["media"]["name"].removesuffix(".bce")
        ts.write_bytes(plain["media"])
        assert sha256sum(ts) == files["media"]["plaintext_sha256"]
        proc = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(ts)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        assert "codec_name=h264" in proc.stdout
        # The pre-event part without sound is a video-only file of its own (README).
        assert ("codec_name=aac" in proc.stdout) is (not meta["video_only"])
        with_audio += not meta["video_only"]
    assert with_audio >= 1


@pytest.mark.req("R18.1")
def test_reordered_dropped_and_truncated_chunks_are_caught(shift):
    agency = agency_private(shift)
    path, manifest = next((p, m) for p, m in manifests(shift) if m["kind"] == "segment")
    data = (path.parent / manifest["files"][0]["name"]).read_bytes()
    start, chunks = chunks_of(data)
    assert len(chunks) >= 3
    head = data[:start]
    swapped = head + chunks[1] + chunks[0] + b"".join(chunks[2:])
    dropped = head + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(BadTag):
        decrypt_bce(swapped, agency)
    with pytest.raises(BadTag):
        decrypt_bce(dropped, agency)
    # Without its final chunk the file still opens, but says it does not end properly.
    plain, final = decrypt_bce(head + b"".join(chunks[:-1]), agency)
    assert final is False and len(plain) <= manifest["files"][0]["plaintext_bytes"]
    # A chunk's written-at time is authenticated too, and so is its final flag.
    retimed = chunks[0][:4] + struct.pack(">Q", struct.unpack(">Q", chunks[0][4:12])[0] + 1) \
        + chunks[0][12:]
    with pytest.raises(BadTag):
        decrypt_bce(head + retimed + b"".join(chunks[1:]), agency)
    flagged = chunks[-2][:12] + b"\x01" + chunks[-2][13:]
    with pytest.raises(BadTag):
        decrypt_bce(head + b"".join(chunks[:-2]) + flagged, agency)
