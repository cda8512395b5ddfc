"""``bodycam export … --format mp4``: one playable MP4 per recording, the photos as JPEG,
each with Content Credentials (issue 18).

The copies are checked by tools that are not ours: ffprobe reads one continuous timeline
and the chapters; PyAV's demuxer reads back every packet of the MP4 and of the original
MPEG-TS segments, whose coded bytes must be the same (only the framing differs: H.264 start
codes against length prefixes, AAC with and without its ADTS header); the C2PA SDK's
reader validates the manifest (``Trusted`` with the dock's CA as anchor), and names the
device and chain positions; a copy with one byte changed fails validation.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from docked import bodycam, shared_docked_shift
from dock.exports.credentials import read_credentials

assert shutil.which("ffprobe"), "needs ffprobe (make test installs it)"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = shared_docked_shift(tmp_path_factory)
    for fmt, folder in (("mp4", "mp4"), ("plain", "plain")):
        proc = bodycam("export",
                       str(out / "archive" / "BC-0001"), "--trust", str(out / "dock"),
                       "--key", str(out / "dock"), "--out", str(out / folder),
                       "--format", fmt)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def nal_units_annexb(data: bytes) -> list[bytes]:
    units = re.split(b"\x00\x00\x01", data)[1:]
    return [u[:-1] if u.endswith(b"\x00") else u for u in units]  # a 4-byte start code


def nal_units_avcc(data: bytes) -> list[bytes]:
    units, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        units.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return units


def packets(path: Path) -> dict[str, list[tuple[float, bytes]]]:
    out: dict[str, list[tuple[float, bytes]]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size and packet.stream.type in out:
                out[packet.stream.type].append((float(packet.pts * packet.time_base),
                                                bytes(packet)))
    return out


def the_recording(exported: Path) -> tuple[Path, list[Path]]:
    mp4s = sorted((exported / "mp4").rglob("*.mp4"))
    assert len(mp4s) == 1, mp4s  # one recording
    segments = sorted((exported / "plain").rglob("*.ts"))
    assert len(segments) >= 3
    return mp4s[0], segments


@pytest.mark.req("R8.2")
def test_one_mp4_per_recording_with_the_original_packets_on_one_timeline(exported):
    mp4, segments = the_recording(exported)
    copy = packets(mp4)
    original: dict[str, list[tuple[float, bytes]]] = {"video": [], "audio": []}
    for segment in segments:
        for kind, found in packets(segment).items():
            original[kind].extend(found)
    assert len(copy["video"]) == len(original["video"]) > 250
    assert len(copy["audio"]) == len(original["audio"]) > 100
    for (t0, coded0), (t1, coded1) in zip(original["video"], copy["video"]):
        assert abs(t0 - t1) < 1e-6 and nal_units_annexb(coded0) == nal_units_avcc(coded1)
    for (t0, coded0), (t1, coded1) in zip(original["audio"], copy["audio"]):
        header = 7 if coded0[1] & 1 else 9  # ADTS, without or with CRC
        assert abs(t0 - t1) < 1e-4 and coded0[header:] == coded1
    # One continuous timeline: frame after frame at 15 fps across every segment boundary.
    steps = {round(b[0] - a[0], 6) for a, b in zip(copy["video"], copy["video"][1:])}
    assert steps == {round(1 / 15, 6)}, steps

    probe = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_streams",
                            "-of", "json", str(mp4)], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and not probe.stderr.strip(), probe.stderr
    info = json.loads(probe.stdout)
    codecs = {s["codec_name"] for s in info["streams"]}
    assert {"h264", "aac"} <= codecs
    titles = [c["tags"]["title"] for c in info["chapters"]]
    assert titles[0] == "Start of recording"
    assert any(t.startswith("Record pressed") for t in titles)
    assert any(t.startswith("Marker") for t in titles)
    assert any(t.startswith("Photo") for t in titles)


@pytest.mark.req("R18.1")
def test_content_credentials_name_the_seals_and_an_edit_breaks_them(exported, tmp_path):
    mp4, _ = the_recording(exported)
    ca = exported / "dock" / "ca" / "ca.crt"
    trusted = read_credentials(mp4, trust_anchor=ca)
    assert trusted.state == "Trusted" and trusted.failures == [], trusted
    plain = read_credentials(mp4)  # any validator without our CA: valid, signer unknown
    assert plain.state == "Valid" and plain.failures == ["signingCredential.untrusted"]
    evidence = trusted.evidence
    manifests = {json.loads(p.read_bytes())["sequence"]: p for p in
                 (exported / "archive" / "BC-0001").rglob("*.manifest.json")}
    assert evidence["device"] == "BC-0001" and evidence["edits"] == "none except container change"
    assert isinstance(evidence["place"]["latitude"], float)  # the first GNSS fix
    segments = [s for s in evidence["sealed"] if s["kind"] == "segment"]
    assert evidence["chain_positions"] == ", ".join(str(s["sequence"]) for s in segments)
    for sealed in segments:
        assert sealed["manifest_sha256"] == hashlib.sha256(
            manifests[sealed["sequence"]].read_bytes()).hexdigest()

    photo = next((exported / "mp4").rglob("*.jpg"))
    credentials = read_credentials(photo, trust_anchor=ca)
    assert credentials.state == "Trusted" and credentials.evidence["what"] == "photo"
    assert credentials.evidence["sealed"][0]["kind"] == "photo"

    for copy in (mp4, photo):
        edited = tmp_path / copy.name
        data = bytearray(copy.read_bytes())
        data[len(data) * 2 // 3] ^= 0x01
        edited.write_bytes(bytes(data))
        after = read_credentials(edited, trust_anchor=ca)
        assert after.state == "Invalid", (copy.name, after)
        assert any("mismatch" in code for code in after.failures), after.failures


def test_export_refuses_evidence_that_does_not_verify_and_writes_nothing(exported, tmp_path):
    copy = tmp_path / "BC-0001"
    shutil.copytree(exported / "archive" / "BC-0001", copy)
    media = max(copy.rglob("*.ts.bce"), key=lambda p: p.stat().st_size)
    media.chmod(0o644)
    data = bytearray(media.read_bytes())
    data[-100] ^= 0x01
    media.write_bytes(bytes(data))
    out = tmp_path / "out"
    ran = bodycam("export", str(copy), "--trust", str(exported / "dock"), "--key",
                  str(exported / "dock"), "--out", str(out), "--format", "mp4")
    assert ran.returncode == 1 and "export refused" in ran.stderr
    assert not list(out.rglob("*.mp4")) and not list(out.rglob("*.jpg"))


def test_a_segment_the_demuxer_cannot_read_is_named(tmp_path):
    from dock.exports.remux import RemuxError, remux_to_mp4

    bad = tmp_path / "garbage.ts"
    bad.write_bytes(b"\x00" * 4096)  # verified bytes can still be no MPEG-TS (a forged seal)
    with pytest.raises(RemuxError, match="garbage.ts"):
        remux_to_mp4([bad], tmp_path / "out.mp4")
