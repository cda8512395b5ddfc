"""NMEA 0183 GNSS backend: sentences from a serial receiver merged into one ``GnssFix`` per epoch.

Two parts:

* ``NmeaAssembler`` is pure (no I/O, no clock): it takes one line at a time and returns the
  fixes of the epochs that line completes. It uses pynmea2 to split and name the fields, and
  checks every value itself, because pynmea2 hands back the raw text when a conversion fails
  and Python's ``float`` accepts ``nan``, ``inf`` and ``1_0``.
* ``SerialGnss`` is the ``Gnss`` backend for a receiver on a serial line (pyserial). It reads
  without blocking, cuts the byte stream into lines and feeds the assembler.

Epoch rules (a receiver sends, once a second, a burst of sentences describing one epoch):

* An epoch is keyed by the UTC time of day in RMC/GGA. It completes as soon as both its RMC
  and its GGA have arrived, or, failing that, when a timed sentence with another time
  arrives (the old epoch is emitted with what it had), or on ``finish()``.
* GSA and VTG carry no time; they belong to the epoch being collected. One that arrives
  after its epoch was already emitted (u-blox sends RMC, VTG, GGA, GSA — so GSA is always
  late) is *carried into the next epoch*, where anything that epoch reports itself wins.
  Consequence: with such receivers ``pdop``/``vdop``/``mode`` lag one epoch behind;
  ``valid``, ``quality``, position, speed and course never do. A carried GSA whose mode
  contradicts the epoch's own validity (the fix was just gained or lost) is dropped, and
  one older than ``_CARRY_MAX_AGE_S`` too. A carried VTG only matters for epochs without
  RMC, since RMC's speed and course take precedence.
* A timed sentence repeating the time of the epoch just emitted, within half a second, is
  dropped as a late duplicate (later, it starts a new epoch: a receiver with a frozen clock
  must still show up as alive).
* Sentences with an empty time (a receiver that does not know the time yet) form epochs of
  their own with ``time_utc=None``, so "receiver alive, no fix" is visible to the agent.
* The date comes from RMC. Epochs without one use the last known date, moved on a day when
  the time of day wraps past midnight. Two-digit years 80–99 are 1980–1999 (GPS began in
  1980), 00–79 are 2000–2079.

Bad input never raises. Each rejected sentence is counted in exactly one of ``overlong``,
``bad_checksum``, ``malformed`` (which includes a missing checksum, bad characters, a parse
failure or an impossible value) or ``unsupported`` (well-formed but of no use here: not an
error, so it does not touch ``last_error``/``errors_by_kind``). ``errors_by_kind`` keys:
``overlong``, ``non_ascii``, ``no_start``, ``missing_checksum``, ``bad_checksum``,
``parse``, ``bad_value``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from typing import Callable, Protocol

import pynmea2

from device.gnss import GnssFix, NmeaStats
from device.hardware import HardwareError

log = logging.getLogger(__name__)

# NMEA 0183 caps a sentence at 82 characters; receivers with extensions (NMEA 4.1 system
# IDs, extra decimals) exceed that a little, so leave slack before calling it garbage.
MAX_SENTENCE_LEN = 120
# SerialGnss keeps at most this many bytes of a line still waiting for its newline.
MAX_LINE_BYTES = 1024
# GNSS talker IDs: GPS, combined, GLONASS, Galileo, BeiDou (two spellings), QZSS, NavIC.
SUPPORTED_TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "GQ", "GI"})
SUPPORTED_TYPES = frozenset({"RMC", "GGA", "GSA", "VTG"})

_KNOT_MPS = 1852.0 / 3600.0
# A GSA/VTG carried over to the next epoch is stale after this long (device seconds): past
# it the receiver has paused or restarted and the DOPs no longer describe its sky.
_CARRY_MAX_AGE_S = 3.0
# A timed sentence repeating the just-emitted epoch's time within this long is a late
# duplicate; later than that it is a receiver whose clock is frozen, and still an epoch.
_DUPLICATE_WINDOW_S = 0.5
_ERROR_PREFIX_LEN = 40
_MIDNIGHT_SLACK = timedelta(hours=12)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_COORD_RE = re.compile(r"(\d{1,3})(\d\d(?:\.\d*)?)")
_TIME_RE = re.compile(r"(\d\d)(\d\d)(\d\d)(\.\d+)?")
_DATE_RE = re.compile(r"(\d\d)(\d\d)(\d\d)")
_CHECKSUM_RE = re.compile(r"\*([0-9A-Fa-f]{2})$")
_START_RE = re.compile(r"[$!]")


class _BadSentence(Exception):
    """A sentence rejected by the assembler; ``kind`` picks the counter."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------
# Strict field parsers: empty text means "not reported" (None); anything else must be right.


def _number(text: str, name: str, lo: float, hi: float) -> float | None:
    if text == "":
        return None
    if not _NUMBER_RE.fullmatch(text):
        raise _BadSentence("bad_value", f"{name} {text!r} is not a number")
    value = float(text)
    if not lo <= value <= hi:
        raise _BadSentence("bad_value", f"{name} {text!r} out of range {lo:g}..{hi:g}")
    return value


def _integer(text: str, name: str, lo: int, hi: int) -> int | None:
    if text == "":
        return None
    if not text.isdigit():
        raise _BadSentence("bad_value", f"{name} {text!r} is not an integer")
    value = int(text)
    if not lo <= value <= hi:
        raise _BadSentence("bad_value", f"{name} {text!r} out of range {lo}..{hi}")
    return value


def _time_of_day(text: str) -> dtime | None:
    if text == "":
        return None
    m = _TIME_RE.fullmatch(text)
    if not m:
        raise _BadSentence("bad_value", f"time {text!r} is not hhmmss.ss")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    micro = round(float(m[4]) * 1e6) if m[4] else 0
    # A receiver reports 23:59:60 during a leap second; datetime cannot hold it, and
    # pinning it to the last instant of :59 keeps the epoch instead of calling it garbage.
    if ss == 60:
        ss, micro = 59, 999_999
    if hh > 23 or mm > 59 or ss > 59:
        raise _BadSentence("bad_value", f"time {text!r} is not a time of day")
    return dtime(hh, mm, ss, min(micro, 999_999), tzinfo=timezone.utc)


def _date(text: str) -> date | None:
    if text == "":
        return None
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise _BadSentence("bad_value", f"date {text!r} is not ddmmyy")
    yy = int(m[3])
    year = 1900 + yy if yy >= 80 else 2000 + yy
    try:
        return date(year, int(m[2]), int(m[1]))
    except ValueError:
        raise _BadSentence("bad_value", f"date {text!r} is not a calendar date") from None


def _coordinate(value: str, hemi: str, name: str, max_deg: int, pos: str, neg: str) -> float | None:
    if value == "" and hemi == "":
        return None
    m = _COORD_RE.fullmatch(value)
    if not m or hemi not in (pos, neg):
        raise _BadSentence("bad_value", f"{name} {value!r},{hemi!r} is not ddmm.mmmm,{pos}/{neg}")
    minutes = float(m[2])
    degrees = int(m[1]) + minutes / 60.0
    if minutes >= 60.0 or degrees > max_deg or len(m[1]) > len(str(max_deg)):
        raise _BadSentence("bad_value", f"{name} {value!r} is beyond {max_deg} degrees")
    return -degrees if hemi == neg else degrees


def _position(lat: str, lat_dir: str, lon: str, lon_dir: str) -> tuple[float, float] | None:
    latitude = _coordinate(lat, lat_dir, "latitude", 90, "N", "S")
    longitude = _coordinate(lon, lon_dir, "longitude", 180, "E", "W")
    if (latitude is None) != (longitude is None):
        raise _BadSentence("bad_value", "only one of latitude/longitude present")
    if latitude is None or longitude is None:
        return None
    return latitude, longitude


def _field(msg: pynmea2.NMEASentence, name: str) -> str:
    """The raw text of a named field ('' when the sentence is short)."""
    idx = type(msg).name_to_idx[name]
    return msg.data[idx].strip() if idx < len(msg.data) else ""


# ---------------------------------------------------------------------------------------
# What one sentence says, already checked.


@dataclass(frozen=True, slots=True)
class _Rmc:
    tod: dtime | None
    day: date | None
    status_ok: bool
    position: tuple[float, float] | None
    speed_mps: float | None
    course_deg: float | None


@dataclass(frozen=True, slots=True)
class _Gga:
    tod: dtime | None
    position: tuple[float, float] | None
    quality: int
    satellites: int | None
    hdop: float | None
    altitude_m: float | None


@dataclass(frozen=True, slots=True)
class _Gsa:
    mode: int
    pdop: float | None
    hdop: float | None
    vdop: float | None


@dataclass(frozen=True, slots=True)
class _Vtg:
    speed_mps: float | None
    course_deg: float | None


def _read_rmc(msg: pynmea2.NMEASentence) -> _Rmc:
    status = _field(msg, "status")
    if status not in ("A", "V"):
        raise _BadSentence("bad_value", f"RMC status {status!r} is not A/V")
    knots = _number(_field(msg, "spd_over_grnd"), "speed", 0.0, 2000.0)
    # NMEA 2.3 mode indicator N ("data not valid") overrides a stale status A.
    mode = _field(msg, "mode_indicator")
    return _Rmc(
        tod=_time_of_day(_field(msg, "timestamp")),
        day=_date(_field(msg, "datestamp")),
        status_ok=status == "A" and mode != "N",
        position=_position(_field(msg, "lat"), _field(msg, "lat_dir"),
                           _field(msg, "lon"), _field(msg, "lon_dir")),
        speed_mps=None if knots is None else knots * _KNOT_MPS,
        course_deg=_number(_field(msg, "true_course"), "course", 0.0, 360.0),
    )


def _read_gga(msg: pynmea2.NMEASentence) -> _Gga:
    return _Gga(
        tod=_time_of_day(_field(msg, "timestamp")),
        position=_position(_field(msg, "lat"), _field(msg, "lat_dir"),
                           _field(msg, "lon"), _field(msg, "lon_dir")),
        quality=_integer(_field(msg, "gps_qual"), "fix quality", 0, 8) or 0,
        satellites=_integer(_field(msg, "num_sats"), "satellites", 0, 99),
        hdop=_number(_field(msg, "horizontal_dil"), "HDOP", 0.0, 100.0),
        altitude_m=_number(_field(msg, "altitude"), "altitude", -1000.0, 100_000.0),
    )


def _read_gsa(msg: pynmea2.NMEASentence) -> _Gsa:
    return _Gsa(
        mode=_integer(_field(msg, "mode_fix_type"), "GSA fix type", 1, 3) or 1,
        pdop=_number(_field(msg, "pdop"), "PDOP", 0.0, 100.0),
        hdop=_number(_field(msg, "hdop"), "HDOP", 0.0, 100.0),
        vdop=_number(_field(msg, "vdop"), "VDOP", 0.0, 100.0),
    )


def _read_vtg(msg: pynmea2.NMEASentence) -> _Vtg:
    kmh = _number(_field(msg, "spd_over_grnd_kmph"), "speed", 0.0, 4000.0)
    knots = _number(_field(msg, "spd_over_grnd_kts"), "speed", 0.0, 2000.0)
    if kmh is not None:
        speed = kmh / 3.6
    else:
        speed = None if knots is None else knots * _KNOT_MPS
    return _Vtg(speed_mps=speed,
                course_deg=_number(_field(msg, "true_track"), "course", 0.0, 360.0))


_READERS: dict[str, Callable[[pynmea2.NMEASentence], object]] = {
    "RMC": _read_rmc, "GGA": _read_gga, "GSA": _read_gsa, "VTG": _read_vtg,
}


@dataclass
class _Epoch:
    tod: dtime | None
    last_received_at: float
    rmc: _Rmc | None = None
    gga: _Gga | None = None
    gsa: _Gsa | None = None
    vtg: _Vtg | None = None
    gsa_carried: bool = False  # gsa is the previous epoch's, sent after that one closed


# ---------------------------------------------------------------------------------------


class NmeaAssembler:
    """Turns NMEA lines into ``GnssFix`` records, one per receiver epoch. Pure; never raises."""

    def __init__(self) -> None:
        self.stats = NmeaStats()
        self._pending: _Epoch | None = None
        self._last_emitted_tod: dtime | None = None
        self._last_emitted_at = 0.0
        self._carried_gsa: _Gsa | None = None
        self._carried_vtg: _Vtg | None = None
        self._carried_at = 0.0
        self._last_datetime: datetime | None = None

    # -- input ---------------------------------------------------------------------------

    def feed(self, line: str | bytes, received_at: float) -> list[GnssFix]:
        """Take one line (CR/LF optional); return the fixes of epochs it completes."""
        if isinstance(line, (bytes, bytearray, memoryview)):
            # latin-1 maps every byte to one character, so nothing fails here and the
            # non-ASCII check below sees exactly what came off the wire.
            line = bytes(line).decode("latin-1")
        line = line.strip("\r\n")
        if not line.strip():
            return []
        fixes: list[GnssFix] = []
        # Lost bytes can glue a truncated sentence to the next one; cutting before every
        # start character lets the intact one through (the fragment counts as malformed).
        starts = [m.start() for m in _START_RE.finditer(line)]
        cuts = ([0] if not starts or starts[0] != 0 else []) + starts + [len(line)]
        for a, b in zip(cuts, cuts[1:]):
            piece = line[a:b]
            if piece.strip():
                fixes.extend(self._feed_sentence(piece.strip(), received_at))
        return fixes

    def finish(self) -> list[GnssFix]:
        """Emit the epoch still being collected, if any (end of stream)."""
        fixes = [self._emit()] if self._pending is not None else []
        self._carried_gsa = self._carried_vtg = None
        return fixes

    # -- one sentence --------------------------------------------------------------------

    def _feed_sentence(self, sentence: str, received_at: float) -> list[GnssFix]:
        self.stats.sentences += 1
        try:
            msg = self._parse(sentence)
            if msg is None:
                return []
            kind = msg.sentence_type
            record = _READERS[kind](msg)
        except _BadSentence as bad:
            self._reject(bad.kind, str(bad), sentence)
            return []
        except Exception as exc:  # a bug in a third-party parser must not stop the reader
            self._reject("parse", f"unexpected {type(exc).__name__}: {exc}", sentence)
            return []
        return self._merge(kind, record, received_at)

    def _parse(self, sentence: str) -> pynmea2.NMEASentence | None:
        """Check framing and checksum; None for a well-formed sentence we do not use."""
        if len(sentence) > MAX_SENTENCE_LEN:
            raise _BadSentence("overlong", f"sentence of {len(sentence)} characters "
                                           f"(limit {MAX_SENTENCE_LEN})")
        if not all(" " <= c <= "~" for c in sentence):
            raise _BadSentence("non_ascii", "non-ASCII or control character")
        if sentence[0] not in "$!":
            raise _BadSentence("no_start", "does not start with '$' or '!'")
        m = _CHECKSUM_RE.search(sentence)
        if not m:
            raise _BadSentence("missing_checksum", "no *hh checksum")
        body = sentence[1:m.start()]
        computed = 0
        for c in body:
            computed ^= ord(c)
        if computed != int(m[1], 16):
            raise _BadSentence("bad_checksum",
                               f"checksum *{m[1].upper()} but contents give *{computed:02X}")
        head = body.split(",", 1)[0]
        if sentence[0] == "!" or len(head) != 5 or head[:2].upper() not in SUPPORTED_TALKERS \
                or head[2:].upper() not in SUPPORTED_TYPES:
            # AIS (!), proprietary ($PUBX), GSV, TXT, other talkers: valid but not ours.
            self.stats.unsupported += 1
            log.debug("unsupported NMEA sentence %r", sentence[:_ERROR_PREFIX_LEN])
            return None
        try:
            msg = pynmea2.parse(sentence, check=True)
        except pynmea2.ChecksumError as exc:
            raise _BadSentence("bad_checksum", str(exc.args[0][0])) from None
        except pynmea2.ParseError as exc:
            raise _BadSentence("parse", f"pynmea2: {exc.args[0][0]}") from None
        return msg

    def _reject(self, kind: str, message: str, sentence: str) -> None:
        s = self.stats
        if kind == "overlong":
            s.overlong += 1
        elif kind == "bad_checksum":
            s.bad_checksum += 1
        else:
            s.malformed += 1
        s.errors_by_kind[kind] = s.errors_by_kind.get(kind, 0) + 1
        s.last_error = f"{kind}: {message} in {sentence[:_ERROR_PREFIX_LEN]!r}"
        log.debug("rejected NMEA sentence: %s", s.last_error)

    # -- epochs --------------------------------------------------------------------------

    def _merge(self, kind: str, record: object, received_at: float) -> list[GnssFix]:
        fixes: list[GnssFix] = []
        if isinstance(record, (_Rmc, _Gga)):
            tod = record.tod
            pending = self._pending
            if pending is not None and not self._same_epoch(pending, kind, tod):
                fixes.append(self._emit())
            elif (pending is None and tod is not None and tod == self._last_emitted_tod
                  and received_at - self._last_emitted_at < _DUPLICATE_WINDOW_S):
                log.debug("dropping late %s for epoch %s already emitted", kind, tod)
                return fixes
            if self._pending is None:
                self._pending = _Epoch(tod, received_at)
                if received_at - self._carried_at <= _CARRY_MAX_AGE_S:
                    self._pending.gsa, self._pending.vtg = self._carried_gsa, self._carried_vtg
                    self._pending.gsa_carried = self._carried_gsa is not None
                self._carried_gsa = self._carried_vtg = None
            epoch = self._pending
            epoch.last_received_at = received_at
            if isinstance(record, _Rmc):
                if epoch.rmc is not None:  # a second RMC for one time: keep the newer
                    log.debug("repeated RMC for epoch %s", tod)
                epoch.rmc = record
            else:
                epoch.gga = record
            if epoch.rmc is not None and epoch.gga is not None:
                fixes.append(self._emit())
            return fixes
        epoch = self._pending
        if epoch is None:
            self._carried_at = received_at
            if isinstance(record, _Gsa):
                self._carried_gsa = record
            else:
                self._carried_vtg = record  # type: ignore[assignment]
            return fixes
        epoch.last_received_at = received_at
        if isinstance(record, _Gsa):
            epoch.gsa, epoch.gsa_carried = record, False
        else:
            epoch.vtg = record  # type: ignore[assignment]
        return fixes

    @staticmethod
    def _same_epoch(epoch: _Epoch, kind: str, tod: dtime | None) -> bool:
        if tod is not None or epoch.tod is not None:
            return tod == epoch.tod
        # Without times the only clue to a new epoch is a sentence type coming round again.
        return (epoch.rmc if kind == "RMC" else epoch.gga) is None

    def _emit(self) -> GnssFix:
        epoch = self._pending
        assert epoch is not None
        self._pending = None
        self._last_emitted_tod = epoch.tod
        self._last_emitted_at = epoch.last_received_at
        rmc, gga, gsa, vtg = epoch.rmc, epoch.gga, epoch.gsa, epoch.vtg

        position = (rmc.position if rmc else None) or (gga.position if gga else None)
        if rmc is not None:
            valid = rmc.status_ok and position is not None
            speed, course = rmc.speed_mps, rmc.course_deg
        else:
            valid = gga is not None and gga.quality > 0 and position is not None
            speed = vtg.speed_mps if vtg else None
            course = vtg.course_deg if vtg else None
        if gsa is not None and epoch.gsa_carried and (gsa.mode >= 2) != valid:
            # The fix was gained or lost this epoch: last epoch's DOPs describe the other
            # state (99.99 beside a fresh fix), so none is better than a wrong one.
            gsa = None
        hdop = gga.hdop if gga and gga.hdop is not None else (gsa.hdop if gsa else None)
        fix = GnssFix(
            received_at=epoch.last_received_at,
            time_utc=self._datetime(epoch.tod, rmc.day if rmc else None),
            valid=valid,
            latitude=position[0] if position else None,
            longitude=position[1] if position else None,
            altitude_m=gga.altitude_m if gga else None,
            speed_mps=speed,
            course_deg=course,
            quality=gga.quality if gga else 0,
            satellites=gga.satellites if gga else None,
            hdop=hdop,
            pdop=gsa.pdop if gsa else None,
            vdop=gsa.vdop if gsa else None,
            mode=gsa.mode if gsa else 1,
        )
        self.stats.fixes += 1
        return fix

    def _datetime(self, tod: dtime | None, day: date | None) -> datetime | None:
        if tod is None:
            return None
        if day is not None:
            stamp = datetime.combine(day, tod)
        elif self._last_datetime is not None:
            stamp = datetime.combine(self._last_datetime.date(), tod)
            # Time of day far behind the last stamp means we crossed midnight, not that
            # time ran backwards by most of a day.
            if stamp < self._last_datetime - _MIDNIGHT_SLACK:
                stamp += timedelta(days=1)
        else:
            return None  # no date known yet; a bare time of day would mislead
        self._last_datetime = stamp
        return stamp


# ---------------------------------------------------------------------------------------


class SerialPortLike(Protocol):
    """What ``SerialGnss`` needs of a pyserial ``Serial`` (tests may inject a fake)."""

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


_READ_CHUNK = 4096
# Bound one poll's work so a port spewing data cannot keep poll() from returning.
_MAX_READ_PER_POLL = 64 * 1024


class SerialGnss:
    """``Gnss`` backend: an NMEA receiver on a serial port, read without blocking."""

    def __init__(self, port: str, baudrate: int = 9600,
                 monotonic: Callable[[], float] = time.monotonic,
                 serial_port: SerialPortLike | None = None) -> None:
        self.port = port
        self._monotonic = monotonic
        self._assembler = NmeaAssembler()
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line, skipping to its newline
        self._last_fix: GnssFix | None = None
        self._closed = False
        if serial_port is not None:
            self._serial = serial_port
        else:
            import serial  # pyserial; imported here so the protocol loads without it

            try:
                self._serial = serial.Serial(port, baudrate, timeout=0)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise HardwareError(f"GNSS serial port {port!r} could not be opened: {exc}") from exc
        log.info("GNSS receiver on %s at %d baud", port, baudrate)

    def fileno(self) -> int:
        """The port's file descriptor, for callers that wait with select()."""
        return self._serial.fileno()  # type: ignore[attr-defined]

    def poll(self) -> list[GnssFix]:
        if self._closed:
            return []
        data = self._read_available()
        fixes: list[GnssFix] = []
        if data:
            now = self._monotonic()
            for line in self._lines(data):
                fixes.extend(self._assembler.feed(line, now))
        if fixes:
            self._last_fix = fixes[-1]
        return fixes

    def _read_available(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while total < _MAX_READ_PER_POLL:
            try:
                chunk = self._serial.read(_READ_CHUNK)
            except Exception as exc:  # pyserial raises SerialException or OSError
                raise HardwareError(f"GNSS serial port {self.port!r} read failed: {exc}") from exc
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def _lines(self, data: bytes) -> list[bytes]:
        # Bare CR ends a line on some receivers; treat CR, LF and CRLF alike.
        self._buffer += data.replace(b"\r", b"\n")
        *complete, rest = self._buffer.split(b"\n")
        lines: list[bytes] = []
        for line in complete:
            if self._discarding:
                self._discarding = False  # this is the tail of the over-long line
                continue
            if line:
                lines.append(bytes(line))
        if len(rest) > MAX_LINE_BYTES:
            # Handing the head over gets it counted as over-long (or parsed, if lost line
            # ends merely glued sentences together); the tail is skipped up to its newline.
            if not self._discarding:
                lines.append(bytes(rest[:MAX_LINE_BYTES]))
            self._discarding = True
            rest = bytearray()
        self._buffer = bytearray(rest)
        return lines

    @property
    def last_fix(self) -> GnssFix | None:
        return self._last_fix

    @property
    def stats(self) -> NmeaStats:
        return self._assembler.stats

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._serial.close()
        except Exception:  # closing a vanished port must not fail the shutdown
            log.exception("closing GNSS port %s failed", self.port)


__all__ = ["MAX_LINE_BYTES", "MAX_SENTENCE_LEN", "NmeaAssembler", "SerialGnss",
           "SerialPortLike", "SUPPORTED_TALKERS", "SUPPORTED_TYPES"]
