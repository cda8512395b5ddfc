"""NMEA 0183 GNSS backend: sentences from a serial receiver merged into one ``GnssFix`` per epoch.

Two parts:

* ``NmeaAssembler`` is pure (no I/O, no clock): it takes one line at a time and returns the
  fixes of the epochs that line completes. It uses pynmea2 to split and name the fields, and
  checks every value itself, because pynmea2 hands back the raw text when a conversion fails
  and Python's ``float`` accepts ``nan``, ``inf`` and ``1_0``.
* ``SerialGnss`` is the ``Gnss`` backend for a receiver on a serial line (pyserial). It reads
  without blocking, cuts the byte stream into lines, notes when each line began arriving,
  and ends an epoch when the receiver's burst ends (``QUIET_GAP_S`` without a byte).

What is read: RMC, GGA, GNS, GLL, ZDA (timed), GSA, GSV, VTG (untimed), from any GNSS talker
(GP, GN, GL, GA, GB, BD, GQ, QZ, GI, IR). Proprietary sentences (``$P…``: ``$PUBX``,
``$PMTK``, ``$PGLOR``, ``$POLYN``) and well-formed sentences of other types or talkers are
counted (``proprietary``, ``unsupported``) and otherwise ignored: not errors.

Epoch rules (a receiver sends, once a second, a burst of sentences describing one epoch):

* An epoch is keyed by the UTC time of day of its timed sentences. It ends when a timed
  sentence with a later time arrives, when the burst ends (``flush()``, which ``SerialGnss``
  calls after a quiet gap), or on ``finish()``. Untimed sentences belong to the epoch being
  collected; ones that open a burst (before its first timed sentence) belong to the epoch
  that sentence starts.
* Per-constellation sentences of one epoch are merged: satellites used are summed over the
  talkers' GGA/GNS (a combined ``GN`` sentence, where sent, already counts them all), or
  counted from the GSAs' satellite lists when no GGA/GNS is sent.
* Fix quality comes from GGA/GNS (GNS mode letters per system: the best one), else from
  RMC/GLL status and mode indicator; the position from the sentence with the fix quality
  (GGA/GNS over RMC over GLL; a ``GN`` one over a single system's). No fix, no position.
  Mode is GSA's when sent (and consistent with the fix), else 3 with an altitude, 2 without.
* Vendor no-fix placeholders (status V with 8960.000000,N or 36000.0000,N; default dates)
  are no-fix epochs that still carry their time: positions are not checked without a fix,
  and an impossible date drops only the date.
* A timed sentence with the time of the epoch just emitted, within half a second, is a
  late duplicate and dropped; one with a time a little behind the epoch being collected (a
  receiver repeating last second's RMC) is stale and dropped too.
* Sentences with an empty time (a receiver that does not know the time yet) form epochs of
  their own with ``time_utc=None``, so "receiver alive, no fix" is visible to the agent.
* The date comes from RMC or ZDA. Epochs without one use the last known date, moved on a
  day when the time of day wraps past midnight. Two-digit years 80–99 are 1980–1999 (GPS
  began in 1980), 00–79 are 2000–2079. (Whether a date may set the clock is decided later:
  ``device.timetrust``.)
* ``received_at`` is the device's monotonic time when the epoch's first sentence began to
  arrive — the start of the receiver's burst, close to the top of the second it describes.

Bad input never raises. Each rejected sentence is counted in exactly one of ``overlong``,
``bad_checksum``, ``malformed`` (which includes a missing checksum, bad characters, a parse
failure or an impossible value), ``unsupported`` or ``proprietary`` (well-formed but of no
use here: not errors, so they touch neither ``last_error`` nor ``errors_by_kind``).
``errors_by_kind`` keys: ``overlong``, ``non_ascii``, ``no_start``, ``missing_checksum``,
``bad_checksum``, ``parse``, ``bad_value``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from typing import Callable, Protocol

import pynmea2
from pynmea2 import talker as _talker_types

from device.gnss import GnssFix, NmeaStats
from device.hardware import HardwareError

log = logging.getLogger(__name__)

# NMEA 0183 caps a sentence at 82 characters; receivers with extensions (NMEA 4.1 system
# IDs, extra decimals) exceed that a little, so leave slack before calling it garbage.
# Proprietary sentences ($PMTKCHN: 203 characters) have no such cap.
MAX_SENTENCE_LEN = 120
# SerialGnss keeps at most this many bytes of a line still waiting for its newline.
MAX_LINE_BYTES = 1024
# GNSS talker IDs: GPS, combined, GLONASS, Galileo, BeiDou (two spellings), QZSS (two),
# NavIC/IRNSS (two).
SUPPORTED_TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "GQ", "QZ", "GI", "IR"})
TIMED_TYPES = frozenset({"RMC", "GGA", "GNS", "GLL", "ZDA"})
SUPPORTED_TYPES = TIMED_TYPES | {"GSA", "GSV", "VTG"}
COMBINED_TALKER = "GN"
# SerialGnss ends an epoch after this long without a byte from the receiver.
QUIET_GAP_S = 0.15

_KNOT_MPS = 1852.0 / 3600.0
# A timed sentence repeating the just-emitted epoch's time within this long is a late
# duplicate; later than that it is a receiver whose clock is frozen, and still an epoch.
_DUPLICATE_WINDOW_S = 0.5
# A timed sentence up to this far behind the epoch being collected is stale (dropped).
_STALE_WINDOW_S = 30.0
_ERROR_PREFIX_LEN = 40
_MIDNIGHT_SLACK = timedelta(hours=12)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_COORD_RE = re.compile(r"(\d{1,3})(\d\d(?:\.\d*)?)")
_TIME_RE = re.compile(r"(\d\d)(\d\d)(\d\d)(\.\d+)?")
_DATE_RE = re.compile(r"(\d\d)(\d\d)(\d\d)")
_CHECKSUM_RE = re.compile(r"\*([0-9A-Fa-f]{2})$")
_START_RE = re.compile(r"[$!]")
# FAA / NMEA 2.3+ mode indicator → GGA fix quality, and which is the better fix.
_MODE_QUALITY = {"N": 0, "A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
_QUALITY_RANK = {4: 9, 5: 8, 2: 7, 3: 6, 1: 5, 6: 3, 7: 2, 8: 1, 0: 0}


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


def _year(yy: int) -> int:
    return 1900 + yy if yy >= 80 else 2000 + yy


def _date(text: str) -> date | None:
    if text == "":
        return None
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise _BadSentence("bad_value", f"date {text!r} is not ddmmyy")
    try:
        return date(_year(int(m[3])), int(m[2]), int(m[1]))
    except ValueError:
        raise _BadSentence("bad_value", f"date {text!r} is not a calendar date") from None


def _lenient(parse: Callable[[], object], what: str) -> object:
    """A field that may be a vendor placeholder: a bad value reads as not reported."""
    try:
        return parse()
    except _BadSentence as bad:
        log.debug("ignoring %s: %s", what, bad)
        return None


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


def _msg_position(msg: pynmea2.NMEASentence, has_fix: bool) -> tuple[float, float] | None:
    """The position fields; without a fix they are a placeholder and never an error."""
    def read() -> tuple[float, float] | None:
        return _position(_field(msg, "lat"), _field(msg, "lat_dir"),
                         _field(msg, "lon"), _field(msg, "lon_dir"))
    if has_fix:
        return read()
    _lenient(read, "position of a no-fix sentence")
    return None


def _field(msg: pynmea2.NMEASentence, name: str) -> str:
    """The raw text of a named field ('' when the sentence is short)."""
    idx = type(msg).name_to_idx[name]
    return msg.data[idx].strip() if idx < len(msg.data) else ""


def _mode_quality(letters: str) -> int:
    """GGA-style fix quality from mode letters (one per system in GNS): the best fix."""
    qualities = [_MODE_QUALITY[c] for c in letters.upper() if c in _MODE_QUALITY]
    return max(qualities, key=_QUALITY_RANK.__getitem__, default=0)


# ---------------------------------------------------------------------------------------
# What one sentence says, already checked.


@dataclass(frozen=True, slots=True)
class _Rmc:
    tod: dtime | None
    day: date | None
    quality: int  # from status and mode indicator: 0 no fix
    position: tuple[float, float] | None
    speed_mps: float | None
    course_deg: float | None


@dataclass(frozen=True, slots=True)
class _FixQuality:
    """GGA or GNS: the sentences that carry fix quality, satellites used and altitude."""

    tod: dtime | None
    position: tuple[float, float] | None
    quality: int
    satellites: int | None
    hdop: float | None
    altitude_m: float | None


@dataclass(frozen=True, slots=True)
class _Gll:
    tod: dtime | None
    quality: int
    position: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class _Zda:
    tod: dtime | None
    day: date | None


@dataclass(frozen=True, slots=True)
class _Gsa:
    mode: int
    used: frozenset[str]
    pdop: float | None
    hdop: float | None
    vdop: float | None


@dataclass(frozen=True, slots=True)
class _Gsv:
    in_view: int | None


@dataclass(frozen=True, slots=True)
class _Vtg:
    speed_mps: float | None
    course_deg: float | None


def _read_rmc(msg: pynmea2.NMEASentence) -> _Rmc:
    status = _field(msg, "status")
    if status not in ("A", "V"):
        raise _BadSentence("bad_value", f"RMC status {status!r} is not A/V")
    # NMEA 2.3 mode indicator N ("data not valid") overrides a stale status A.
    mode = _field(msg, "mode_indicator")
    quality = 0 if status != "A" else (_mode_quality(mode) if mode else 1)
    knots = _number(_field(msg, "spd_over_grnd"), "speed", 0.0, 2000.0)
    return _Rmc(
        tod=_time_of_day(_field(msg, "timestamp")),
        day=_lenient(lambda: _date(_field(msg, "datestamp")), "RMC date"),  # type: ignore[arg-type]
        quality=quality,
        position=_msg_position(msg, quality > 0),
        speed_mps=None if knots is None else knots * _KNOT_MPS,
        course_deg=_number(_field(msg, "true_course"), "course", 0.0, 360.0),
    )


def _read_gga(msg: pynmea2.NMEASentence) -> _FixQuality:
    quality = _integer(_field(msg, "gps_qual"), "fix quality", 0, 8) or 0
    return _FixQuality(
        tod=_time_of_day(_field(msg, "timestamp")),
        position=_msg_position(msg, quality > 0),
        quality=quality,
        satellites=_integer(_field(msg, "num_sats"), "satellites", 0, 99),
        hdop=_number(_field(msg, "horizontal_dil"), "HDOP", 0.0, 100.0),
        altitude_m=_number(_field(msg, "altitude"), "altitude", -1000.0, 100_000.0),
    )


def _read_gns(msg: pynmea2.NMEASentence) -> _FixQuality:
    mode = _field(msg, "mode_indicator")
    if not re.fullmatch(r"[A-Z]{0,8}", mode):
        raise _BadSentence("bad_value", f"GNS mode {mode!r} is not mode letters")
    quality = _mode_quality(mode)
    return _FixQuality(
        tod=_time_of_day(_field(msg, "timestamp")),
        position=_msg_position(msg, quality > 0),
        quality=quality,
        satellites=_integer(_field(msg, "num_sats"), "satellites", 0, 99),
        hdop=_number(_field(msg, "hdop"), "HDOP", 0.0, 100.0),
        altitude_m=_number(_field(msg, "altitude"), "altitude", -1000.0, 100_000.0),
    )


def _read_gll(msg: pynmea2.NMEASentence) -> _Gll:
    status = _field(msg, "status")
    if status not in ("A", "V", ""):
        raise _BadSentence("bad_value", f"GLL status {status!r} is not A/V")
    mode = _field(msg, "faa_mode")
    quality = 0 if status != "A" else (_mode_quality(mode) if mode else 1)
    return _Gll(tod=_time_of_day(_field(msg, "timestamp")), quality=quality,
                position=_msg_position(msg, quality > 0))


def _read_zda(msg: pynmea2.NMEASentence) -> _Zda:
    day = _integer(_field(msg, "day"), "ZDA day", 0, 31)
    month = _integer(_field(msg, "month"), "ZDA month", 0, 12)
    year = _integer(_field(msg, "year"), "ZDA year", 0, 9999)
    when: date | None = None
    if day and month and year:
        try:
            when = date(year, month, day)
        except ValueError:
            log.debug("ZDA date %s-%s-%s is not a calendar date", year, month, day)
    return _Zda(tod=_time_of_day(_field(msg, "timestamp")), day=when)


def _read_gsa(msg: pynmea2.NMEASentence) -> _Gsa:
    used = frozenset(v for v in (_field(msg, f"sv_id{i:02d}") for i in range(1, 13)) if v)
    for sv in used:
        if not sv.isdigit():
            raise _BadSentence("bad_value", f"GSA satellite {sv!r} is not a number")
    return _Gsa(
        mode=_integer(_field(msg, "mode_fix_type"), "GSA fix type", 1, 3) or 1,
        used=used,
        pdop=_number(_field(msg, "pdop"), "PDOP", 0.0, 100.0),
        hdop=_number(_field(msg, "hdop"), "HDOP", 0.0, 100.0),
        vdop=_number(_field(msg, "vdop"), "VDOP", 0.0, 100.0),
    )


def _read_gsv(msg: pynmea2.NMEASentence) -> _Gsv:
    return _Gsv(in_view=_integer(_field(msg, "num_sv_in_view"), "satellites in view", 0, 255))


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
    "RMC": _read_rmc, "GGA": _read_gga, "GNS": _read_gns, "GLL": _read_gll, "ZDA": _read_zda,
    "GSA": _read_gsa, "GSV": _read_gsv, "VTG": _read_vtg,
}


@dataclass
class _Epoch:
    tod: dtime | None
    started_at: float  # when its first sentence began to arrive
    last_received_at: float
    timed: bool = False  # a timed sentence has been seen (else only untimed ones so far)
    seen: set[tuple[str, str]] = field(default_factory=set)  # (talker, type) of timed ones
    rmc: dict[str, _Rmc] = field(default_factory=dict)  # by talker
    fixq: dict[tuple[str, str], _FixQuality] = field(default_factory=dict)  # (talker, type)
    gll: dict[str, _Gll] = field(default_factory=dict)
    zda: _Zda | None = None
    gsa: list[_Gsa] = field(default_factory=list)
    vtg: _Vtg | None = None


def _seconds(tod: dtime) -> float:
    return tod.hour * 3600 + tod.minute * 60 + tod.second + tod.microsecond / 1e6


def _by_talker(items: dict, key: Callable[[object], object] = lambda k: k) -> list:
    """Values with the combined (GN) talker's first."""
    return [v for k, v in sorted(items.items(), key=lambda kv: key(kv[0]) != COMBINED_TALKER)]


# ---------------------------------------------------------------------------------------


class NmeaAssembler:
    """Turns NMEA lines into ``GnssFix`` records, one per receiver epoch. Pure; never raises."""

    def __init__(self) -> None:
        self.stats = NmeaStats()
        self._pending: _Epoch | None = None
        self._last_emitted_tod: dtime | None = None
        self._last_emitted_at = 0.0
        self._last_datetime: datetime | None = None

    # -- input ---------------------------------------------------------------------------

    def feed(self, line: str | bytes, received_at: float) -> list[GnssFix]:
        """Take one line (CR/LF optional); return the fixes of epochs it completes.
        ``received_at``: when the line began to arrive (device monotonic seconds)."""
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
            piece = line[a:b].strip()
            if piece in ("$", "!") and b < len(line):
                continue  # a doubled start character ($$GNGSA): not a sentence of its own
            if piece:
                fixes.extend(self._feed_sentence(piece, received_at))
        return fixes

    def flush(self) -> list[GnssFix]:
        """The receiver's burst has ended: emit the epoch being collected, if any."""
        pending = self._pending
        if pending is None:
            return []
        if not pending.timed:
            self._pending = None  # only untimed sentences: nothing to say about an epoch
            return []
        return [self._emit()]

    def finish(self) -> list[GnssFix]:
        """Emit the epoch still being collected, if any (end of stream)."""
        return self.flush()

    # -- one sentence --------------------------------------------------------------------

    def _feed_sentence(self, sentence: str, received_at: float) -> list[GnssFix]:
        self.stats.sentences += 1
        try:
            parsed = self._parse(sentence)
            if parsed is None:
                return []
            talker, msg = parsed
            kind = msg.sentence_type
            record = _READERS[kind](msg)
        except _BadSentence as bad:
            self._reject(bad.kind, str(bad), sentence)
            return []
        except Exception as exc:  # a bug in a third-party parser must not stop the reader
            self._reject("parse", f"unexpected {type(exc).__name__}: {exc}", sentence)
            return []
        return self._merge(talker, kind, record, received_at)

    def _parse(self, sentence: str) -> tuple[str, pynmea2.NMEASentence] | None:
        """Check framing and checksum; None for a well-formed sentence we do not use."""
        proprietary = sentence.startswith("$P")
        if len(sentence) > MAX_SENTENCE_LEN and not proprietary:
            raise _BadSentence("overlong", f"sentence of {len(sentence)} characters "
                                           f"(limit {MAX_SENTENCE_LEN})")
        if not all(" " <= c <= "~" for c in sentence):
            raise _BadSentence("non_ascii", "non-ASCII or control character")
        if sentence[0] not in "$!":
            raise _BadSentence("no_start", "does not start with '$' or '!'")
        m = _CHECKSUM_RE.search(sentence)
        if proprietary:
            # Proprietary ($PUBX, $PMTK, $PGLOR, $POLYN...): any length, checksum optional;
            # a checksum that is there must be right.
            if m and _checksum(sentence[1:m.start()]) != int(m[1], 16):
                raise _BadSentence("bad_checksum", "proprietary sentence with a wrong checksum")
            self.stats.proprietary += 1
            log.debug("proprietary NMEA sentence %r", sentence[:_ERROR_PREFIX_LEN])
            return None
        if not m:
            raise _BadSentence("missing_checksum", "no *hh checksum")
        body = sentence[1:m.start()]
        computed = _checksum(body)
        if computed != int(m[1], 16):
            raise _BadSentence("bad_checksum",
                               f"checksum *{m[1].upper()} but contents give *{computed:02X}")
        head = body.split(",", 1)[0].upper()
        if sentence[0] == "!" or len(head) != 5 or head[:2] not in SUPPORTED_TALKERS \
                or head[2:] not in SUPPORTED_TYPES:
            # AIS (!), TXT, DTM, GST, other talkers: valid but not ours.
            self.stats.unsupported += 1
            log.debug("unsupported NMEA sentence %r", sentence[:_ERROR_PREFIX_LEN])
            return None
        talker, kind = head[:2], head[2:]
        if "," not in body:
            raise _BadSentence("parse", f"{head} without fields")
        cls = getattr(_talker_types, kind)
        try:
            msg = cls(talker, kind, body.split(",")[1:])
        except Exception as exc:
            raise _BadSentence("parse", f"pynmea2: {exc}") from None
        return talker, msg

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

    def _merge(self, talker: str, kind: str, record: object, received_at: float) -> list[GnssFix]:
        fixes: list[GnssFix] = []
        if kind in TIMED_TYPES:
            tod: dtime | None = record.tod  # type: ignore[attr-defined]
            pending = self._pending
            if pending is not None and pending.timed and not self._same_epoch(pending, talker, kind, tod):
                if self._stale(pending, tod):
                    log.debug("dropping stale %s%s for %s while collecting %s",
                              talker, kind, tod, pending.tod)
                    return fixes
                fixes.append(self._emit())
            elif (pending is None and tod is not None and tod == self._last_emitted_tod
                  and received_at - self._last_emitted_at < _DUPLICATE_WINDOW_S):
                log.debug("dropping late %s%s for epoch %s already emitted", talker, kind, tod)
                return fixes
            if self._pending is None:
                self._pending = _Epoch(tod, received_at, received_at)
            epoch = self._pending
            if not epoch.timed:
                epoch.tod, epoch.timed = tod, True
            epoch.seen.add((talker, kind))
        else:
            if self._pending is None:  # an untimed sentence opens the burst
                self._pending = _Epoch(None, received_at, received_at)
            epoch = self._pending
        epoch.last_received_at = received_at
        if isinstance(record, _Rmc):
            epoch.rmc[talker] = record
        elif isinstance(record, _FixQuality):
            epoch.fixq[(talker, kind)] = record
        elif isinstance(record, _Gll):
            epoch.gll[talker] = record
        elif isinstance(record, _Zda):
            epoch.zda = record
        elif isinstance(record, _Gsa):
            epoch.gsa.append(record)
        elif isinstance(record, _Vtg):
            epoch.vtg = record
        return fixes

    @staticmethod
    def _same_epoch(epoch: _Epoch, talker: str, kind: str, tod: dtime | None) -> bool:
        if tod is not None or epoch.tod is not None:
            return tod == epoch.tod
        # Without times the only clue to a new epoch is a sentence coming round again.
        return (talker, kind) not in epoch.seen

    @staticmethod
    def _stale(epoch: _Epoch, tod: dtime | None) -> bool:
        if tod is None or epoch.tod is None:
            return False
        behind = (_seconds(epoch.tod) - _seconds(tod)) % 86400
        return 0 < behind <= _STALE_WINDOW_S

    def _emit(self) -> GnssFix:
        epoch = self._pending
        assert epoch is not None
        self._pending = None
        self._last_emitted_tod = epoch.tod
        self._last_emitted_at = epoch.last_received_at

        rmcs: list[_Rmc] = _by_talker(epoch.rmc)
        fixqs: list[_FixQuality] = _by_talker(epoch.fixq, key=lambda k: k[0])
        glls: list[_Gll] = _by_talker(epoch.gll)

        # Fix quality from the sentences made for it; RMC/GLL only where none was sent.
        position: tuple[float, float] | None = None
        altitude = hdop = None
        if fixqs:
            best = max(fixqs, key=lambda f: (_QUALITY_RANK[f.quality], f.position is not None))
            quality = best.quality
            with_pos = [f for f in fixqs if f.quality == quality and f.position is not None]
            source = with_pos[0] if with_pos else best
            position = source.position if quality > 0 else None
            altitude = source.altitude_m if source.altitude_m is not None else next(
                (f.altitude_m for f in fixqs if f.altitude_m is not None), None)
            hdop = source.hdop if source.hdop is not None else next(
                (f.hdop for f in fixqs if f.hdop is not None), None)
        else:
            quality = max([r.quality for r in rmcs] + [g.quality for g in glls],
                          key=_QUALITY_RANK.__getitem__, default=0)
        if quality > 0 and position is None:
            position = next((r.position for r in rmcs if r.quality > 0 and r.position), None) \
                or next((g.position for g in glls if g.quality > 0 and g.position), None)
        valid = quality > 0 and position is not None
        if not valid:
            position = None

        satellites = self._satellites(epoch, fixqs)
        gsa = epoch.gsa
        gsa_mode = max((g.mode for g in gsa), default=None)
        if gsa_mode is not None and (gsa_mode >= 2) == valid:
            mode = gsa_mode
        else:
            mode = (3 if altitude is not None else 2) if valid else 1
        if hdop is None:
            hdop = next((g.hdop for g in gsa if g.hdop is not None), None)
        rmc = next((r for r in rmcs), None)
        if rmc is not None and (rmc.speed_mps is not None or rmc.course_deg is not None):
            speed, course = rmc.speed_mps, rmc.course_deg
        else:
            speed = epoch.vtg.speed_mps if epoch.vtg else None
            course = epoch.vtg.course_deg if epoch.vtg else None
        day = next((r.day for r in rmcs if r.day is not None), None)
        if day is None and epoch.zda is not None:
            day = epoch.zda.day
        fix = GnssFix(
            received_at=epoch.started_at,
            time_utc=self._datetime(epoch.tod, day),
            valid=valid,
            latitude=position[0] if position else None,
            longitude=position[1] if position else None,
            altitude_m=altitude if valid else None,
            speed_mps=speed if valid else None,
            course_deg=course if valid else None,
            quality=quality if valid else 0,
            satellites=satellites,
            hdop=hdop,
            pdop=next((g.pdop for g in gsa if g.pdop is not None), None),
            vdop=next((g.vdop for g in gsa if g.vdop is not None), None),
            mode=mode,
        )
        self.stats.fixes += 1
        return fix

    @staticmethod
    def _satellites(epoch: _Epoch, fixqs: list[_FixQuality]) -> int | None:
        """Satellites used: the combined talker's count, else the sum over the systems."""
        counted = {(t, k): f.satellites for (t, k), f in epoch.fixq.items()
                   if f.satellites is not None}
        if counted:
            combined = [n for (t, _), n in counted.items() if t == COMBINED_TALKER]
            if combined:
                return max(combined)
            per_talker: dict[str, int] = {}
            for (t, _), n in counted.items():
                per_talker[t] = max(per_talker.get(t, 0), n)
            return sum(per_talker.values())
        used = sum(len(g.used) for g in epoch.gsa)  # one GSA per system (NMEA 4.1)
        return used or None

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


def _checksum(body: str) -> int:
    computed = 0
    for c in body:
        computed ^= ord(c)
    return computed


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
                 serial_port: SerialPortLike | None = None,
                 pps: Callable[[float], float | None] | None = None) -> None:
        self.port = port
        self._pps = pps  # latest PPS edge before a burst's start (device.backends.pps)
        self._monotonic = monotonic
        self._assembler = NmeaAssembler()
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line, skipping to its newline
        self._line_started_at: float | None = None  # when the buffered partial line began
        self._last_data_at: float | None = None
        self._last_poll_at: float | None = None
        self._char_s = 10.0 / baudrate if baudrate > 0 else 0.0  # start, 8 data, stop bits
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
        now = self._monotonic()
        fixes: list[GnssFix] = []
        if data:
            self._last_data_at = now
            for line, started_at in self._lines(data, now):
                fixes.extend(self._assembler.feed(line, started_at))
            self._last_poll_at = now
        elif self._last_data_at is not None and now - self._last_data_at >= QUIET_GAP_S:
            # The receiver's burst is over: its epoch is complete.
            fixes.extend(self._assembler.flush())
        self._last_poll_at = now
        if fixes and self._pps is not None:
            fixes = [self._pps_timed(fix) for fix in fixes]
        if fixes:
            self._last_fix = fixes[-1]
        return fixes

    def _pps_timed(self, fix: GnssFix) -> GnssFix:
        """The epoch timed by the PPS edge that began its second, where one was seen."""
        assert self._pps is not None
        edge = self._pps(fix.received_at)
        return fix if edge is None else replace(fix, received_at=edge)

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

    def _arrived_at(self, data: bytes, offset: int, now: float) -> float:
        """When byte ``offset`` of ``data`` (read at ``now``) came off the line: the bytes
        after it took their transmission time at the line's baud rate, and none came
        before the previous poll found the line empty."""
        if self._last_poll_at is None:
            return now  # the first read: no bound on how long the bytes have waited
        estimate = now - (len(data) - offset) * self._char_s
        return min(max(estimate, self._last_poll_at), now)

    def _lines(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Complete lines, each with when it began to arrive (``_arrived_at`` its first
        byte): accurate to a character's time while the receiver sends back to back."""
        base = len(self._buffer)
        if not self._buffer or self._line_started_at is None:
            self._line_started_at = self._arrived_at(data, 0, now)
        # Bare CR ends a line on some receivers; treat CR, LF and CRLF alike.
        self._buffer += data.replace(b"\r", b"\n")
        *complete, rest = self._buffer.split(b"\n")
        lines: list[tuple[bytes, float]] = []
        started_at = self._line_started_at
        position = 0  # of the line in the buffer
        for line in complete:
            if self._discarding:
                self._discarding = False  # this is the tail of the over-long line
            elif line:
                lines.append((bytes(line), started_at))
            position += len(line) + 1
            started_at = self._arrived_at(data, max(0, position - base), now)
        if len(rest) > MAX_LINE_BYTES:
            # Handing the head over gets it counted as over-long (or parsed, if lost line
            # ends merely glued sentences together); the tail is skipped up to its newline.
            if not self._discarding:
                lines.append((bytes(rest[:MAX_LINE_BYTES]), started_at))
            self._discarding = True
            rest = bytearray()
        self._buffer = bytearray(rest)
        self._line_started_at = started_at if rest else None
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


__all__ = ["MAX_LINE_BYTES", "MAX_SENTENCE_LEN", "NmeaAssembler", "QUIET_GAP_S", "SerialGnss",
           "SerialPortLike", "SUPPORTED_TALKERS", "SUPPORTED_TYPES", "TIMED_TYPES"]
