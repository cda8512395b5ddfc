"""Sealing (Art. 14, 18): every kind of tampering gives its own report, and export refuses.

One simulated shift with three activities (recordings, a photo) is sealed; each test
copies the evidence, tampers with it in one way, and runs ``bodycam verify`` and ``bodycam
export`` on it, as a custodian or a court would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.evidence import audit
from firmware_py.evidence.evidence_file import (EncryptingFile, EvidenceFileError, canonical,
                                       decrypt_chunks, key_id, parse)
from firmware_py.evidence.keys import KeyFileError, device_identity, enroll, load_agency_private, raw
from simulator.harness import scenario as sc
from bodycam.simulation import simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 10, "pre_event_seconds": 4}}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    out = tmp_path_factory.mktemp("sealed")
    events = []
    for start in (6, 30, 54):  # three activities, each with a recording and an end
        events += [{"at": start, "action": "press", "button": "record"},
                   {"at": start + 14, "action": "long_press", "button": "record"}]
    events.append({"at": 36, "action": "press", "button": "photo"})
    data = {"scenario": {"name": "sealed", "duration": "80s"}, "config": FAST, "event": events}
    simulation(sc.parse(data, "sealed.toml"), out).run()
    return out


def bodycam(*args):
    return subprocess.run([sys.executable, "-m", "bodycam", *map(str, args)],
                          capture_output=True, text=True)


def copy(sealed, tmp_path):
    evidence = tmp_path / "evidence"
    shutil.copytree(sealed / "device" / "evidence", evidence)
    for path in evidence.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return evidence


def check(sealed, evidence, key=True):
    args = ["verify", evidence, "--trust", sealed / "dock", "--json"]
    if key:
        args += ["--key", sealed / "dock"]
    proc = bodycam(*args)
    return proc.returncode, json.loads(proc.stdout)


def items(report, status):
    return [i for i in report["items"] if i["status"] == status]


def segments(evidence):
    return sorted(evidence.glob("*/*.ts.bce"))


def manifest_of(path):
    return path.with_name(path.name.split(".")[0] + ".manifest.json")


@pytest.mark.req("R2.1")
def test_untouched_evidence_is_valid_with_and_without_the_key(sealed, tmp_path):
    code, report = check(sealed, sealed / "device" / "evidence", key=False)
    assert code == 0 and report["ok"]
    code, report = check(sealed, sealed / "device" / "evidence")
    assert code == 0 and report["ok"]
    assert all(i["plaintext_checked"] for i in report["items"])
    kinds = [i["kind"] for i in report["items"]]
    assert kinds.count("activity") == 3 and kinds.count("photo") == 1
    assert [i["sequence"] for i in report["items"]] == list(range(1, len(kinds) + 1))
    proc = bodycam("export", sealed / "device" / "evidence", "--trust", sealed / "dock",
                   "--key", sealed / "dock", "--out", tmp_path / "export")
    assert proc.returncode == 0
    assert len(list((tmp_path / "export").glob("*/*.ts"))) == len(segments(sealed / "device" / "evidence"))


def refused(sealed, evidence, tmp_path):
    proc = bodycam("export", evidence, "--trust", sealed / "dock", "--key", sealed / "dock",
                   "--out", tmp_path / "refused")
    assert proc.returncode == 1 and "export refused" in proc.stderr
    assert not (tmp_path / "refused").exists()  # nothing written
    return proc.stderr


@pytest.mark.req("R18.1")
@pytest.mark.parametrize("target", ["segment", "photo", "metadata", "manifest", "signature"])
def test_one_flipped_byte_anywhere_is_altered(sealed, tmp_path, target):
    evidence = copy(sealed, tmp_path)
    victim = {"segment": segments(evidence)[2],
              "photo": next(evidence.glob("*/*.jpg.bce")),
              "metadata": sorted(evidence.glob("*/*.meta.jsonl.bce"))[1],
              "manifest": manifest_of(segments(evidence)[3]),
              "signature": manifest_of(segments(evidence)[3]).with_suffix(".sig")}[target]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    code, report = check(sealed, evidence)
    assert code == 1
    bad = [i for i in report["items"] if i["status"] != "valid"]
    assert len(bad) == 1 and bad[0]["status"] == "altered"
    expected = {"segment": "SHA-256 of the stored bytes", "photo": "SHA-256 of the stored bytes",
                "metadata": "SHA-256 of the stored bytes", "manifest": "manifest",
                "signature": "signature does not match"}[target]
    assert any(expected in p for p in bad[0]["problems"]), bad[0]["problems"]
    assert refused(sealed, evidence, tmp_path)


@pytest.mark.req("R18.1")
def test_removed_segment_shows_as_a_gap(sealed, tmp_path):
    evidence = copy(sealed, tmp_path)
    victim = segments(evidence)[2]
    sequence = json.loads(manifest_of(victim).read_text())["sequence"]
    for path in victim.parent.glob(victim.name.split(".")[0] + "*"):
        path.unlink()
    code, report = check(sealed, evidence)
    assert code == 1 and report["missing"] == {"BC-0001": [sequence]}
    assert not items(report, "altered")
    assert f"[{sequence}] missing" in refused(sealed, evidence, tmp_path)


@pytest.mark.req("R18.1")
def test_removed_activity_from_the_middle_shows_as_a_gap(sealed, tmp_path):
    evidence = copy(sealed, tmp_path)
    middle = sorted(p for p in evidence.iterdir() if p.is_dir())[1]
    numbers = sorted(json.loads(m.read_text())["sequence"] for m in middle.glob("*.manifest.json"))
    shutil.rmtree(middle)
    code, report = check(sealed, evidence)
    assert code == 1 and report["missing"]["BC-0001"] == numbers
    assert numbers == list(range(numbers[0], numbers[-1] + 1))
    proc = bodycam("verify", evidence, "--trust", sealed / "dock")
    assert f"sequence {numbers[0]}-{numbers[-1]} absent" in proc.stdout


@pytest.mark.req("R18.1")
def test_two_segments_swapped_are_out_of_order(sealed, tmp_path):
    evidence = copy(sealed, tmp_path)
    a, b = segments(evidence)[1], segments(evidence)[2]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    code, report = check(sealed, evidence)
    swapped = items(report, "out_of_order")
    assert code == 1 and len(swapped) == 2
    assert all("holds the bytes sealed by" in i["problems"][0] for i in swapped)
    refused(sealed, evidence, tmp_path)


@pytest.mark.req("R18.1")
def test_segment_signed_by_an_unknown_device(sealed, tmp_path):
    evidence = copy(sealed, tmp_path)
    manifest = manifest_of(segments(evidence)[1])
    body = json.loads(manifest.read_text())
    rogue = Ed25519PrivateKey.generate()
    body["signing_key"] = key_id(raw(rogue.public_key()))
    signed = canonical(body)
    manifest.write_bytes(signed)
    manifest.with_suffix(".sig").write_bytes(rogue.sign(signed))
    code, report = check(sealed, evidence)
    assert code == 1
    unknown = items(report, "unknown_device")
    assert len(unknown) == 1 and "no enrolled device" in unknown[0]["problems"][0]
    refused(sealed, evidence, tmp_path)


@pytest.mark.req("R18.1")
def test_truncated_file_is_altered_and_a_dropped_final_chunk_is_caught_by_decryption(sealed, tmp_path):
    evidence = copy(sealed, tmp_path)
    victim = segments(evidence)[0]
    parsed = parse(victim.read_bytes(), victim.name)
    victim.write_bytes(victim.read_bytes()[:parsed.chunks[-1].offset])  # drop the final chunk
    code, report = check(sealed, evidence, key=False)
    bad = items(report, "altered")
    assert code == 1 and any("bytes stored, manifest says" in p for p in bad[0]["problems"])


@pytest.mark.req("R18.1")
def test_chunk_tampering_is_detected_by_the_agency_key(tmp_path):
    agency = load_agency_private_for_test(tmp_path)
    path = tmp_path / "x.ts.bce"
    f = EncryptingFile(path, agency.public_key(), {"name": path.name}, durable=False)
    for i in range(3):
        f.write(bytes([i]) * 1000)
        f.flush()
    f.close()
    data = path.read_bytes()
    parsed = parse(data, path.name)
    assert [len(list(decrypt_chunks(parsed, agency, "x")))] == [4]
    c1, c2 = parsed.chunks[1], parsed.chunks[2]
    end1 = c2.offset
    end2 = parsed.chunks[3].offset
    swapped = data[:c1.offset] + data[c2.offset:end2] + data[c1.offset:end1] + data[end2:]
    with pytest.raises(EvidenceFileError, match="chunk 1 .* fails authentication"):
        list(decrypt_chunks(parse(swapped, "x"), agency, "x"))
    dropped = data[:c1.offset] + data[end1:]
    with pytest.raises(EvidenceFileError, match="fails authentication"):
        list(decrypt_chunks(parse(dropped, "x"), agency, "x"))
    other = load_agency_private_for_test(tmp_path / "other")
    with pytest.raises(EvidenceFileError, match="encrypted to agency key"):
        list(decrypt_chunks(parsed, other, "x"))
    *_, (last, _, final) = decrypt_chunks(parsed, agency, "x")
    assert final and last.index == 3


def load_agency_private_for_test(folder):
    enroll(folder / "device", folder / "dock", "BC-T", "test unit")
    return load_agency_private(folder / "dock")


@pytest.mark.req("R14.1")
def test_no_plaintext_reaches_the_device_storage(sealed, tmp_path):
    # What the plaintext looks like: the agency's export of the same evidence.
    plain = tmp_path / "plain"
    assert bodycam("export", sealed / "device" / "evidence", "--trust", sealed / "dock",
                   "--key", sealed / "dock", "--out", plain).returncode == 0
    samples: list[tuple[bytes, str]] = []
    for path in plain.rglob("*"):
        if path.suffix in (".ts", ".jpg"):  # metadata is covered by the markers below
            data = path.read_bytes()
            samples += [(data[o:o + 24], path.name) for o in range(0, len(data) - 24, max(1, len(data) // 8))]
    markers = {b"\x00\x00\x00\x01\x67": "H.264 SPS", b'"kind":"gnss"': "GNSS track",
               b'"lat":': "a position", b"JFIF": "JPEG header"}
    stored = b""
    scanned = 0
    for path in (sealed / "device" / "evidence").rglob("*"):
        if path.is_dir():
            continue
        data = path.read_bytes()
        scanned += len(data)
        for marker, what in markers.items():
            assert marker not in data, f"{what} in the clear in {path.name}"
        if path.name.endswith(".bce"):
            stored += data
            syncs = sum(data[i] == 0x47 for i in range(0, min(len(data), 188 * 200), 188))
            assert syncs < 20, f"{path.name} looks like an MPEG-TS stream"
    assert len(samples) > 50 and scanned > 1_000_000
    for sample, source in samples:
        assert sample not in stored, f"24 plaintext bytes of {source} found in storage"


def test_keys_are_owner_only_and_missing_keys_are_named(sealed, tmp_path):
    for key in ("device/keys/device_ed25519.pem", "dock/keys/agency_x25519.pem"):
        assert (sealed / key).stat().st_mode & 0o077 == 0
    with pytest.raises(KeyFileError, match="is not enrolled"):
        device_identity(tmp_path / "nowhere")
    proc = bodycam("verify", sealed / "device" / "evidence", "--trust", tmp_path / "empty")
    assert proc.returncode == 2 and "no enrolled devices here" in proc.stderr
    proc = bodycam("verify", sealed / "device" / "evidence", "--trust", sealed / "dock",
                   "--key", tmp_path / "missing.pem")
    assert proc.returncode == 2 and "missing.pem: key file missing" in proc.stderr


def test_audit_log_carries_the_seals(sealed):
    entries = audit.read(sealed / "device" / "audit.jsonl")
    assert any(e["kind"] == "recording_stopped" for e in entries)


@pytest.mark.req("R18.2")
def test_audit_checkpoints_are_signed_by_the_device(sealed, tmp_path):
    log = sealed / "device" / "audit.jsonl"
    proc = bodycam("log", log, "--verify", "--trust", sealed / "dock", "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["checkpoints"] >= 1
    assert result["checkpoints_verified"] == result["checkpoints"]
    # A log rebuilt from scratch by someone without the device key: chain fine, seal not.
    entries = audit.read(log)
    del entries[5]  # drop an awkward entry, then renumber and re-chain everything after it
    forged = tmp_path / "audit.jsonl"
    prev = audit.GENESIS
    with open(forged, "wb") as fh:
        for seq, entry in enumerate(entries):
            entry["prev"], entry["seq"] = prev, seq
            if entry["kind"] == "checkpoint":
                entry["fields"]["head"] = prev
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
            fh.write(line)
            prev = __import__("hashlib").sha256(line).hexdigest()
    assert bodycam("log", forged, "--verify").returncode == 0  # the chain alone cannot tell
    proc = bodycam("log", forged, "--verify", "--trust", sealed / "dock")
    assert proc.returncode == 1 and "signature does not match" in proc.stdout
