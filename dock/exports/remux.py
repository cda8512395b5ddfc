"""Lossless MPEG-TS → MP4: one playable file from the segments of one recording.

The segments a recorder writes are MPEG-TS with timestamps that run on across segments
(0.7 s + capture time − the recording's first frame), so joining them needs no re-encode
and no retiming: every H.264 and AAC packet is copied as it is, with its own presentation
and decoding times, into one MP4 (which browsers and players take; MPEG-TS they often do
not). The MP4 muxer changes only the framing — H.264 start codes become length prefixes,
AAC loses its ADTS headers — never a coded byte. Chapters mark places in the timeline
(markers, photos, interruptions). The dock's web station uses the same function to play a
recording.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import av

log = logging.getLogger(__name__)

CHAPTER_TIME_BASE = Fraction(1, 1000)  # chapters in milliseconds


class RemuxError(ValueError):
    """Segments that cannot be joined; the message names the segment and why."""


@dataclass(frozen=True)
class Chapter:
    """A named place in the recording's timeline, in seconds of media time."""

    start_s: float
    title: str


@dataclass(frozen=True)
class RemuxResult:
    path: Path
    video_packets: int
    audio_packets: int
    start_s: float  # media time of the first packet (as in the segments)
    end_s: float  # media time just after the last video frame


def remux_to_mp4(segments: Sequence[Path], out: Path, chapters: Sequence[Chapter] = (),
                 metadata: Mapping[str, str] | None = None) -> RemuxResult:
    """Join ``segments`` (MPEG-TS, in order, of one recording) into the MP4 ``out``
    without re-encoding; ``chapters`` and ``metadata`` (title, comment, …) go in its header.
    Raises ``RemuxError`` when a segment has no video, codecs differ, or time runs back."""
    if not segments:
        raise RemuxError("no segments to join")
    try:
        return _remux(segments, out, chapters, metadata)
    except av.error.FFmpegError as exc:  # a sealed segment the demuxer cannot read
        raise RemuxError(f"{Path(out).name}: cannot join {', '.join(Path(s).name for s in segments)}"
                         f": {exc}") from None


def _remux(segments: Sequence[Path], out: Path, chapters: Sequence[Chapter],
           metadata: Mapping[str, str] | None) -> RemuxResult:
    inputs = []
    try:
        for path in segments:
            inputs.append(av.open(str(path)))
        video_template = audio_template = None
        for path, container in zip(segments, inputs):
            if not container.streams.video:
                raise RemuxError(f"{Path(path).name}: no video stream")
            video = container.streams.video[0]
            if video_template is None:
                video_template = video
            elif video.codec_context.name != video_template.codec_context.name:
                raise RemuxError(f"{Path(path).name}: video codec {video.codec_context.name}, "
                                 f"the recording's is {video_template.codec_context.name}")
            if container.streams.audio and audio_template is None:
                audio_template = container.streams.audio[0]
        output = av.open(str(out), "w", format="mp4")
        try:
            for key, value in (metadata or {}).items():
                output.metadata[key] = value
            out_video = output.add_stream_from_template(video_template)
            out_audio = (output.add_stream_from_template(audio_template)
                         if audio_template is not None else None)
            counts = {"video": 0, "audio": 0}
            last_dts: dict[str, int] = {}
            first, end = None, 0.0
            for path, container in zip(segments, inputs):
                wanted = [container.streams.video[0]]
                if out_audio is not None and container.streams.audio:
                    wanted.append(container.streams.audio[0])
                for packet in container.demux(wanted):
                    if packet.dts is None or packet.size == 0:
                        continue  # the demuxer's end-of-stream marker
                    kind = packet.stream.type
                    seconds = float(packet.pts * packet.time_base) if packet.pts is not None \
                        else float(packet.dts * packet.time_base)
                    if kind in last_dts and packet.dts <= last_dts[kind]:
                        raise RemuxError(f"{Path(path).name}: {kind} time runs back at "
                                         f"{seconds:.3f} s (segments out of order or overlapping)")
                    last_dts[kind] = packet.dts
                    first = seconds if first is None else min(first, seconds)
                    if kind == "video":
                        duration = float((packet.duration or 0) * packet.time_base)
                        end = max(end, seconds + duration)
                    packet.stream = out_video if kind == "video" else out_audio
                    output.mux(packet)
                    counts[kind] += 1
            if chapters:
                output.set_chapters(_chapters(chapters, end))
        finally:
            output.close()
    finally:
        for container in inputs:
            container.close()
    log.info("remuxed %d segments into %s: %d video, %d audio packets", len(segments),
             Path(out).name, counts["video"], counts["audio"])
    return RemuxResult(Path(out), counts["video"], counts["audio"], first or 0.0, end)


def _chapters(chapters: Sequence[Chapter], end_s: float) -> list[dict]:
    """Chapters as libavformat wants them: each runs to the next (the last to the end)."""
    ordered = sorted(chapters, key=lambda c: c.start_s)
    out = []
    for n, chapter in enumerate(ordered):
        stop = ordered[n + 1].start_s if n + 1 < len(ordered) else max(end_s, chapter.start_s)
        out.append({"id": n + 1, "start": round(chapter.start_s * 1000),
                    "end": round(stop * 1000), "time_base": CHAPTER_TIME_BASE,
                    "metadata": {"title": chapter.title}})
    return out
