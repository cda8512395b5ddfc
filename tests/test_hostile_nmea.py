"""Hostile input on the GNSS serial line (issue 7): garbage never costs a fix, and is counted.

Valid epochs (RMC, GGA, sometimes VTG and GSA) are interleaved with every kind of bad line a
receiver or a damaged cable produces — random bytes, bad checksums, truncated and glued
sentences, non-ASCII bytes, over-long lines, blank lines, well-formed sentences of no use —
and read by the real ``SerialGnss`` (pyserial on a pseudo-terminal, or on a fake port that
hands the bytes over at arbitrary boundaries). Properties: reading never raises; each bad line
lands in exactly the counter of its kind; the fixes are exactly those of the same valid
sentences without the garbage.
"""

from __future__ import annotations

import os
import select
import time
import tty
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate

from hypothesis import given
from hypothesis import strategies as st

from device.gnss import GnssFix, NmeaStats
from device.backends.nmea import (MAX_LINE_BYTES, MAX_SENTENCE_LEN, QUIET_GAP_S, NmeaAssembler,
                                  SerialGnss)
from hostile import examples
from simulator.gnss import format_latitude, format_longitude, nmea_sentence

RECEIVED_AT = 100.0  # one device time for every read: fixes compare exactly
ERROR_COUNTERS = ("malformed", "bad_checksum", "overlong")
TALKERS = ("GP", "GN", "GL", "GA", "BD")
START_CHARACTERS = b"$!"
LINE_ENDS = b"\r\n"


# --- valid sentences ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Epoch:
    """One receiver epoch as it goes on the wire (each sentence with its CR LF)."""

    sentences: tuple[str, ...]


@st.composite
def epochs(draw: st.DrawFn) -> list[Epoch]:
    """Two to five consecutive epochs, with or without a fix, in u-blox or plain order."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(
        seconds=draw(st.integers(0, 3 * 365 * 86400)))
    talker = draw(st.sampled_from(TALKERS))
    out = []
    for i in range(draw(st.integers(2, 5))):
        stamp = start + timedelta(seconds=i)
        hms, dmy = stamp.strftime("%H%M%S.00"), stamp.strftime("%d%m%y")
        if draw(st.booleans()):
            lat_s, ns = format_latitude(draw(st.floats(-89.9, 89.9)))
            lon_s, ew = format_longitude(draw(st.floats(-179.9, 179.9)))
            knots = draw(st.floats(0, 50))
            rmc = f"{talker}RMC,{hms},A,{lat_s},{ns},{lon_s},{ew},{knots:.3f},12.50,{dmy},,,A"
            gga = f"{talker}GGA,{hms},{lat_s},{ns},{lon_s},{ew},1,08,0.90,31.5,M,47.0,M,,"
            vtg = f"{talker}VTG,12.50,T,,M,{knots:.3f},N,{knots * 1.852:.3f},K,A"
            gsa = f"{talker}GSA,A,3,02,05,07,09,13,15,18,20,,,,,1.60,0.90,1.30"
        else:
            rmc = f"{talker}RMC,{hms},V,,,,,,,{dmy},,,N"
            gga = f"{talker}GGA,{hms},,,,,0,00,99.99,,,,,,"
            vtg = f"{talker}VTG,,,,,,,,,N"
            gsa = f"{talker}GSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"
        bodies = draw(st.sampled_from([(rmc, gga), (rmc, vtg, gga, gsa), (gga, rmc)]))
        out.append(Epoch(tuple(nmea_sentence(body) for body in bodies)))
    return out


# --- bad lines ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bad:
    """Bytes that go on the wire before a valid sentence, and what they must be counted as.

    ``counter`` is the NmeaStats counter (``""`` for blank lines, which count as nothing).
    ``glued`` garbage has no line end: it runs straight into the next valid sentence."""

    data: bytes
    counter: str
    glued: bool = False


samples = st.sampled_from([nmea_sentence(body).rstrip("\r\n") for body in (
    "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
    "GNGGA,143512.00,3436.22200,S,05822.89600,W,1,12,0.71,25.3,M,16.9,M,,",
    "GPVTG,054.7,T,,M,005.5,N,010.2,K,A")])


def _visible(data: bytes) -> bool:
    # The reader strips whitespace (latin-1 decoded) around a line; all-blank is no sentence.
    return bool(data.decode("latin-1").strip())


@st.composite
def junk(draw: st.DrawFn) -> Bad:
    """Random bytes with no sentence start or line end in them (those would make more lines)."""
    data = draw(st.binary(min_size=1, max_size=100).map(
        lambda b: bytes(c for c in b if c not in START_CHARACTERS + LINE_ENDS)).filter(_visible))
    glued = draw(st.booleans())
    return Bad(data + (b"" if glued else b"\r\n"), "malformed", glued)


@st.composite
def bad_checksums(draw: st.DrawFn) -> Bad:
    sentence = draw(samples)
    star = sentence.rindex("*")
    if draw(st.booleans()):  # the checksum itself is wrong
        wrong = draw(st.integers(0, 255).filter(lambda v: v != int(sentence[star + 1:], 16)))
        text = f"{sentence[:star]}*{wrong:02X}"
    else:  # one character of the body changed on the line (its XOR changes with it)
        i = draw(st.integers(1, star - 1))
        new = draw(st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                 exclude_characters="$!*" + sentence[i]))
        text = sentence[:i] + new + sentence[i + 1:]
    return Bad(text.encode() + b"\r\n", "bad_checksum")


@st.composite
def truncated(draw: st.DrawFn) -> Bad:
    sentence = draw(samples)
    cut = draw(st.integers(1, len(sentence) - 1))
    glued = draw(st.booleans())
    # A lone '$' glued to the next sentence is a doubled start ($$GNGSA, issue 15): some
    # receivers send it, and it costs nothing, so it is no garbage.
    counter = "" if glued and cut == 1 else "malformed"
    return Bad(sentence[:cut].encode() + (b"" if glued else b"\r\n"), counter, glued)


@st.composite
def non_ascii(draw: st.DrawFn) -> Bad:
    data = bytearray(draw(samples).encode())
    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0x80, 0xFF))
    return Bad(bytes(data) + b"\r\n", "malformed")


@st.composite
def overlong(draw: st.DrawFn) -> Bad:
    length = draw(st.integers(MAX_SENTENCE_LEN + 1, 3 * MAX_LINE_BYTES))
    if draw(st.booleans()):  # checksummed, otherwise fine: only its length is wrong
        text = nmea_sentence("GPTXT,01,01,02," + "X" * (length - 19))  # length, without CR LF
    else:
        text = "A" * length + "\r\n"
    return Bad(text.encode(), "overlong")


unsupported = st.sampled_from([
    Bad(nmea_sentence("GPGST,172814.0,0.006,0.023,0.020,273.6,0.023,0.020,0.031").encode(),
        "unsupported"),
    Bad(nmea_sentence("GPDTM,W84,,0.0,N,0.0,E,0.0,W84").encode(), "unsupported"),
    Bad(nmea_sentence("GPTXT,01,01,02,ANTSTATUS=OK").encode(), "unsupported"),
    Bad(b"!AIVDM,1,1,,B,177KQJ5000G?tO`K>RA1wUbN0TKH,0*5C\r\n", "unsupported"),
])
blank = st.sampled_from([Bad(b"\r\n", ""), Bad(b"\n\n", ""), Bad(b"\r", ""), Bad(b" \r\n", "")])
bad_lines = st.one_of(junk(), bad_checksums(), truncated(), non_ascii(), overlong(), unsupported,
                      blank)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[str], list[Bad | None]]:
    """Valid sentences, and for each the garbage (or nothing) that goes before it."""
    valid = [s for epoch in draw(epochs()) for s in epoch.sentences]
    garbage = draw(st.lists(st.none() | bad_lines, min_size=len(valid), max_size=len(valid)))
    return valid, garbage


def dirty(valid: list[str], garbage: list[Bad | None]) -> bytes:
    return b"".join((bad.data if bad else b"") + sentence.encode()
                    for sentence, bad in zip(valid, garbage))


def reference_fixes(valid: list[str]) -> list[GnssFix]:
    """What the assembler makes of the valid sentences alone."""
    assembler = NmeaAssembler()
    fixes = [fix for sentence in valid for fix in assembler.feed(sentence, RECEIVED_AT)]
    return fixes + assembler.finish()


def assert_counted(stats: NmeaStats, valid: list[str], garbage: list[Bad | None]) -> None:
    expected = Counter(bad.counter for bad in garbage if bad and bad.counter)
    got = {name: getattr(stats, name) for name in (*ERROR_COUNTERS, "unsupported")}
    assert got == {name: expected[name] for name in got}, (got, expected)
    assert sum(stats.errors_by_kind.values()) == sum(expected[n] for n in ERROR_COUNTERS)
    assert stats.sentences == len(valid) + sum(expected.values())
    if any(expected[n] for n in ERROR_COUNTERS):
        kind = stats.last_error.split(":", 1)[0]
        assert kind in stats.errors_by_kind and "\n" not in stats.last_error


# --- through the serial backend -----------------------------------------------------------------

class ChunkedPort:
    """A serial port on which one piece of a byte stream arrives between two polls."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.arrived = b""

    def read(self, size: int = 1) -> bytes:
        """What has arrived, up to ``size``; once it is taken, the next piece arrives."""
        if not self.arrived:
            self.arrived = self.chunks.pop(0) if self.chunks else b""
            return b""  # nothing more in this poll
        data, self.arrived = self.arrived[:size], self.arrived[size:]
        return data

    def close(self) -> None:
        pass


def read_in_pieces(stream: bytes, cuts: list[int]) -> tuple[SerialGnss, list[GnssFix]]:
    """``SerialGnss`` reading ``stream`` cut at the offsets ``cuts``, one poll per piece."""
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:])]
    now = [RECEIVED_AT]
    gnss = SerialGnss("fake", monotonic=lambda: now[0], serial_port=ChunkedPort(chunks))
    fixes: list[GnssFix] = []
    for _ in range(len(chunks) + 2):  # and polls more, for the end
        fixes += gnss.poll()
        assert len(gnss._buffer) <= MAX_LINE_BYTES
    now[0] += QUIET_GAP_S  # the line falls quiet: the last epoch is delivered
    fixes += gnss.poll()
    return gnss, fixes


@examples(120)
@given(streams(), st.lists(st.floats(0, 1), max_size=10))
def test_garbage_between_sentences_costs_no_fix_and_is_counted_by_kind(
        stream: tuple[list[str], list[Bad | None]], cuts: list[float]) -> None:
    valid, garbage = stream
    data = dirty(valid, garbage)
    gnss, fixes = read_in_pieces(data, [int(c * len(data)) for c in cuts])
    assert fixes == reference_fixes(valid)
    assert len(fixes) >= 2, "every stream holds at least two complete epochs"
    assert_counted(gnss.stats, valid, garbage)


@examples(60)
@given(st.lists(st.binary(max_size=600), max_size=8))
def test_any_bytes_on_the_line_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    gnss, _ = read_in_pieces(b"".join(chunks), list(accumulate(len(c) for c in chunks)))
    s = gnss.stats
    assert s.malformed + s.bad_checksum + s.overlong + s.unsupported <= s.sentences
    assert s.malformed + s.bad_checksum + s.overlong == sum(s.errors_by_kind.values())


class Pty:
    """A pseudo-terminal: the test writes the receiver's end, ``SerialGnss`` opens the other."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.now = RECEIVED_AT
        self.gnss = SerialGnss(os.ttyname(self.slave), monotonic=lambda: self.now)

    def exchange(self, data: bytes, sentences: int, timeout: float = 5.0) -> list[GnssFix]:
        """Write ``data`` and read until the reader has seen ``sentences`` sentences."""
        fixes: list[GnssFix] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if data:
                try:
                    data = data[os.write(self.master, data):]
                except BlockingIOError:
                    pass  # the pty is full until the reader takes some
            select.select([self.gnss.fileno()], [], [], 0.01)
            fixes += self.gnss.poll()
            if not data and self.gnss.stats.sentences >= sentences:
                break
        self.now += QUIET_GAP_S  # the line falls quiet: the last epoch is delivered
        return fixes + self.gnss.poll()

    def close(self) -> None:
        self.gnss.close()
        os.close(self.master)
        os.close(self.slave)


@examples(25)
@given(streams())
def test_garbage_through_a_real_pty_costs_no_fix(
        stream: tuple[list[str], list[Bad | None]]) -> None:
    valid, garbage = stream
    counted = sum(1 for bad in garbage if bad and bad.counter)
    pty = Pty()
    try:
        fixes = pty.exchange(dirty(valid, garbage), len(valid) + counted)
    finally:
        pty.close()
    assert fixes == reference_fixes(valid)
    assert_counted(pty.gnss.stats, valid, garbage)


def test_over_long_and_longest_accepted_sentences() -> None:
    """The limit is NMEA's 82 characters plus room for vendor extensions; past it, over-long."""
    assembler = NmeaAssembler()
    longest = nmea_sentence("GPTXT,01,01,02," + "X" * (MAX_SENTENCE_LEN - 19)).rstrip()
    assert len(longest) == MAX_SENTENCE_LEN
    assembler.feed(longest, 0.0)
    assert assembler.stats.unsupported == 1 and assembler.stats.overlong == 0
    assembler.feed(nmea_sentence("GPTXT,01,01,02," + "X" * (MAX_SENTENCE_LEN - 18)), 0.0)
    assert assembler.stats.overlong == 1
    assert assembler.stats.last_error.startswith(f"overlong: sentence of {MAX_SENTENCE_LEN + 1}")
