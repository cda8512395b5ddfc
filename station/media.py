"""Recordings and photos for the browser, decrypted at the dock in memory only.

A segment is stored as MPEG-TS encrypted to the agency key; browsers do not play
MPEG-TS. ``mp4_stream`` decrypts it into memory (every chunk authenticated on the way),
remuxes it — no re-encoding — into fragmented MP4 with PyAV, and yields the MP4 as the
muxer writes it. AAC in MPEG-TS carries ADTS headers, MP4 wants the bare frames and an
AudioSpecificConfig, which is built from the first ADTS header. No plaintext byte is
written to disk. Photos and segment metadata (the GNSS track) are decrypted the same way.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Iterator

import av
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from firmware_py.evidence.evidence_file import decrypt_chunks, parse
from firmware_py.recording.metadata import parse_lines

log = logging.getLogger(__name__)

FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


class MediaError(ValueError):
    """Evidence that cannot be decrypted or remuxed; the message names the file."""


def decrypt(path: Path, key: X25519PrivateKey) -> bytes:
    """The plaintext of an encrypted evidence file, in memory."""
    data = path.read_bytes()
    try:
        parsed = parse(data, path.name)
        out = bytearray()
        for _, plain, _ in decrypt_chunks(parsed, key, path.name):
            out += plain  # copied: decrypt_chunks reuses its buffer
    except Exception as exc:  # EvidenceFileError and the AEAD's own errors
        raise MediaError(f"{path.name}: {exc}") from None
    return bytes(out)


class _Chunks(io.RawIOBase):
    """Where the muxer writes: collected until the generator hands them on."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _audio_config(adts: bytes) -> tuple[bytes, int]:
    """AudioSpecificConfig from an ADTS header, and the header's length."""
    if len(adts) < 7 or adts[0] != 0xFF or adts[1] & 0xF0 != 0xF0:
        raise MediaError("audio packet without an ADTS header")
    profile = (adts[2] >> 6) + 1
    frequency = (adts[2] >> 2) & 0xF
    channels = ((adts[2] & 1) << 2) | (adts[3] >> 6)
    config = bytes([(profile << 3) | (frequency >> 1), ((frequency & 1) << 7) | (channels << 3)])
    return config, 7 if adts[1] & 1 else 9


def mp4_stream(plaintext: bytes, name: str = "segment") -> Iterator[bytes]:
    """Fragmented MP4 of an MPEG-TS segment, without re-encoding, as it is written."""
    try:
        first_audio = _first_audio(plaintext)
        source = av.open(io.BytesIO(plaintext), format="mpegts")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{name}: not a readable MPEG-TS ({exc})") from None
    sink = _Chunks()
    target = av.open(sink, mode="w", format="mp4", options={"movflags": FRAGMENTED})
    streams: dict[int, Any] = {}
    audio_index = None
    for stream in source.streams:
        if stream.type == "video" or (stream.type == "audio" and first_audio is not None):
            streams[stream.index] = target.add_stream_from_template(stream)
            if stream.type == "audio":
                audio_index = stream.index
                streams[stream.index].codec_context.extradata = first_audio
    try:
        for packet in source.demux():
            index = packet.stream.index
            if packet.dts is None or index not in streams:
                continue
            if index == audio_index:
                raw = bytes(packet)
                _, head = _audio_config(raw)
                bare = av.Packet(raw[head:])
                bare.pts, bare.dts, bare.duration = packet.pts, packet.dts, packet.duration
                bare.time_base = packet.time_base
                packet = bare
            packet.stream = streams[index]
            target.mux(packet)
            if sink.parts:
                yield sink.take()
        target.close()
        yield sink.take()
    finally:
        source.close()


def _first_audio(plaintext: bytes) -> bytes | None:
    """The AudioSpecificConfig of the first audio packet, None when there is no sound
    (the pre-event part before the press is video only)."""
    with av.open(io.BytesIO(plaintext), format="mpegts") as probe:
        audio = [s for s in probe.streams if s.type == "audio"]
        if not audio:
            return None
        for packet in probe.demux(audio[0]):
            if packet.dts is not None and packet.size:
                return _audio_config(bytes(packet))[0]
    return None


def track(meta_plaintexts: list[bytes]) -> list[dict[str, Any]]:
    """GNSS fixes with a position from segment metadata, in time order."""
    fixes = []
    for data in meta_plaintexts:
        try:
            records = parse_lines(data)
        except ValueError:
            continue
        for r in records:
            if (isinstance(r, dict) and r.get("kind") == "gnss" and r.get("valid")
                    and isinstance(r.get("lat"), (int, float)) and isinstance(r.get("lon"), (int, float))):
                fixes.append({"utc": (r.get("time") or {}).get("utc"), "lat": float(r["lat"]),
                              "lon": float(r["lon"])})
    fixes.sort(key=lambda f: f["utc"] or 0)
    return fixes
