"""Simulated GNSS receiver: NMEA sentences along a route, written into a pseudo-terminal.

The agent's real serial backend (``device.backends.nmea.SerialGnss``) opens ``port_path``
exactly as it would ``/dev/ttyAMA0``, so the simulation exercises the same byte-level code
path as the recorder. Time of the sentences is true UTC (what satellites say), not the device's
drifting clock, so the agent can check and correct its clock against it.

Output per epoch mimics a u-blox receiver's default set and order: RMC, VTG, GGA, GSA, with
five decimals of arc-minutes (ddmm.mmmmm; about 2 cm) and u-blox's no-fix forms (RMC status
V, GGA quality 0 with HDOP 99.99, GSA mode 1) before the first fix and while the fix is lost.

With ``baudrate`` set, the bytes go out at the line's pace (10 bits a character, 960 a
second at 9600 baud), starting ``output_latency_s`` after the second each epoch describes,
as a UART would send them: a reader sees the burst arrive over a third of a second, not at
once. Without it an epoch's sentences are written at the tick after its second.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tty
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from simulator.clock import VirtualClock

log = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG); the error against WGS-84 is irrelevant here
KNOT_MPS = 1852.0 / 3600.0
GEOID_SEPARATION_M = 47.0  # reported in GGA as a receiver would; any plausible value does
# A tick after a long pause writes at most this many epochs (the newest): a real receiver
# does not queue up the past, and a burst of hundreds would overflow the pty buffer anyway.
MAX_CATCHUP_EPOCHS = 10
RECENT_EPOCHS_KEPT = 600
_PRNS = (2, 5, 7, 9, 13, 15, 18, 20, 23, 26, 29, 30)  # satellite IDs listed in GSA
IN_VIEW_NOT_USED = 2  # satellites a receiver sees but leaves out of its fix (low, weak)


def gsv_bodies(prns: tuple[int, ...]) -> list[str]:
    """GPS satellites in view, four to a GSV sentence, as u-blox receivers send them each
    epoch (gpsd builds its SKY report, with the DOPs and satellites used, only on them).
    Elevation, azimuth and SNR are made up from the PRN, steady from epoch to epoch."""
    views = [f"{p:02d},{15 + p * 7 % 70:02d},{p * 37 % 360:03d},{30 + p % 15:02d}" for p in prns]
    chunks = [views[i:i + 4] for i in range(0, len(views), 4)] or [[]]
    return [",".join([f"GPGSV,{len(chunks)},{n},{len(prns):02d}", *chunk])
            for n, chunk in enumerate(chunks, 1)]


# ---------------------------------------------------------------------------------------
# Geometry.


def _to_vector(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def _from_vector(v: tuple[float, float, float]) -> tuple[float, float]:
    x, y, z = v
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


def _angle(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    # atan2 of |a×b| and a·b stays accurate for the short legs of a foot patrol,
    # where acos(a·b) would lose most of its digits.
    cx, cy, cz = a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]
    return math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), a[0] * b[0] + a[1] * b[1] + a[2] * b[2])


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lon) points in degrees."""
    return EARTH_RADIUS_M * _angle(_to_vector(*a), _to_vector(*b))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial great-circle bearing from a to b, degrees clockwise from true north, [0, 360)."""
    la1, la2 = math.radians(a[0]), math.radians(b[0])
    dlon = math.radians(b[1] - a[1])
    y = math.sin(dlon) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(dlon)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass
class Route:
    """Where the simulated wearer walks: along great circles between waypoints at a steady pace.

    ``position_at(t)`` gives (lat, lon, course_deg, speed_mps) ``t`` seconds after the start;
    course is None while standing still (a receiver has no heading then). At the last
    waypoint the wearer stops, or with ``loop`` walks back to the first and round again.
    """

    waypoints: list[tuple[float, float]]
    speed_mps: float = 1.4
    altitude_m: float = 50.0
    loop: bool = False
    _legs: list[tuple[tuple[float, float], tuple[float, float], float]] = field(
        init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.waypoints:
            raise ValueError("a route needs at least one waypoint")
        for lat, lon in self.waypoints:
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                raise ValueError(f"waypoint ({lat}, {lon}) is not a position")
        if self.speed_mps < 0:
            raise ValueError(f"speed {self.speed_mps} m/s is negative")
        points = list(self.waypoints)
        if self.loop and len(points) > 1:
            points.append(points[0])
        self._legs = [(a, b, distance_m(a, b)) for a, b in zip(points, points[1:])
                      if distance_m(a, b) > 0.0]

    @property
    def length_m(self) -> float:
        """Length of one pass (including the closing leg of a loop)."""
        return sum(length for _, _, length in self._legs)

    def position_at(self, t_seconds: float) -> tuple[float, float, float | None, float]:
        total = self.length_m
        if total == 0.0 or self.speed_mps == 0.0:
            lat, lon = self.waypoints[0]
            return lat, lon, None, 0.0
        along = max(t_seconds, 0.0) * self.speed_mps
        if self.loop:
            along %= total
        elif along >= total:
            lat, lon = self.waypoints[-1]
            return lat, lon, None, 0.0
        for a, b, length in self._legs:
            if along < length:
                break
            along -= length
        va, vb = _to_vector(*a), _to_vector(*b)
        theta = length / EARTH_RADIUS_M
        f = min(along / length, 1.0)  # rounding in the leg walk can overshoot by an ulp
        sa, sb = math.sin((1 - f) * theta), math.sin(f * theta)
        s = math.sin(theta)
        lat, lon = _from_vector(tuple((sa * pa + sb * pb) / s for pa, pb in zip(va, vb)))  # type: ignore[arg-type]
        # Heading at this point of the great circle = initial bearing onward to the leg's
        # end; within a millimetre of it that is ill-conditioned, so use the arrival bearing.
        if length - along > 1e-3:
            course = bearing_deg((lat, lon), b)
        else:
            course = (bearing_deg(b, a) + 180.0) % 360.0
        return lat, lon, course, self.speed_mps


# ---------------------------------------------------------------------------------------
# NMEA formatting.


def nmea_checksum(body: str) -> str:
    """XOR of the characters between '$' and '*', as two upper-case hex digits."""
    value = 0
    for c in body:
        value ^= ord(c)
    return f"{value:02X}"


def nmea_sentence(body: str) -> str:
    """'$' + body + '*' + checksum + CR LF."""
    return f"${body}*{nmea_checksum(body)}\r\n"


def _format_angle(value: float, degree_digits: int, decimals: int) -> str:
    # Round once on the whole in units of the last digit, so 59.999996' carries into the
    # degrees instead of printing "60.00000".
    scale = 10 ** decimals
    units = round(abs(value) * 60 * scale)
    degrees, minute_units = divmod(units, 60 * scale)
    minutes, fraction = divmod(minute_units, scale)
    return f"{degrees:0{degree_digits}d}{minutes:02d}.{fraction:0{decimals}d}"


def format_latitude(lat: float, decimals: int = 5) -> tuple[str, str]:
    """('ddmm.mmmmm', 'N'|'S') for a latitude in degrees."""
    return _format_angle(lat, 2, decimals), "S" if lat < 0 else "N"


def format_longitude(lon: float, decimals: int = 5) -> tuple[str, str]:
    """('dddmm.mmmmm', 'E'|'W') for a longitude in degrees."""
    return _format_angle(lon, 3, decimals), "W" if lon < 0 else "E"


@dataclass(frozen=True, slots=True)
class SimEpoch:
    """What the simulated receiver said about one epoch (the truth a test checks against)."""

    utc: int  # the epoch's whole UTC second (POSIX)
    virtual_time: float  # virtual time at that UTC second
    valid: bool
    latitude: float | None
    longitude: float | None
    altitude_m: float | None
    speed_mps: float | None
    course_deg: float | None
    satellites: int
    hdop: float
    pdop: float
    vdop: float
    mode: int
    sentences: tuple[str, ...]

    @property
    def time_utc(self) -> datetime:
        return datetime.fromtimestamp(self.utc, timezone.utc)


class SimGnssReceiver:
    """A GNSS receiver at the far end of a pseudo-terminal, sending one epoch per UTC second.

    ``recent_epochs`` keeps what was sent (the truth for tests); ``dropped_bytes`` counts
    what did not fit into the pty because nobody read it; ``skipped_epochs`` counts epochs
    left out after a long pause between ticks. ``seed`` fixes the satellite/DOP jitter.
    """

    def __init__(self, clock: VirtualClock, true_utc: Callable[[], float], route: Route,
                 time_to_first_fix_s: float = 5.0, satellites: int = 9, talker: str = "GN",
                 seed: int = 0, route_t0: float | None = None, baudrate: int | None = None,
                 output_latency_s: float = 0.0) -> None:
        if len(talker) != 2:
            raise ValueError(f"talker {talker!r} must be two characters")
        self._clock = clock
        self._true_utc = true_utc
        self._route = route
        # When the wearer set off along the route (now, unless the receiver is switched on
        # again after a power cut: the wearer walked on meanwhile).
        self._route_t0 = clock.now if route_t0 is None else route_t0
        self._first_fix_at = clock.now + time_to_first_fix_s
        self._lost_until = -math.inf
        self._satellites = satellites
        self._talker = talker
        self._rng = random.Random(seed)
        # The first epoch is the first whole UTC second at or after switch-on.
        self._next_epoch = math.ceil(true_utc())
        self.dropped_bytes = 0
        self.skipped_epochs = 0
        self.recent_epochs: deque[SimEpoch] = deque(maxlen=RECENT_EPOCHS_KEPT)
        self._chars_per_s = None if baudrate is None else baudrate / 10.0
        self._latency_s = output_latency_s
        self._outgoing: deque[list] = deque()  # [begins at (virtual), bytes, how many sent]
        self._dialect: Callable[[int, bool], list[str]] | None = None

        self._master, self._slave = os.openpty()
        try:
            # Raw: no echo back into the master, no CR/LF translation, no line buffering --
            # what a UART gives.
            tty.setraw(self._slave)
            # Never let the simulator hang on a full buffer; count what does not fit.
            os.set_blocking(self._master, False)
            self.port_path = os.ttyname(self._slave)
        except Exception:
            os.close(self._master)
            os.close(self._slave)
            raise
        self._closed = False
        log.debug("simulated GNSS receiver on %s", self.port_path)

    # -- faults and scenario control ----------------------------------------------------

    def lose_fix(self, until: float) -> None:
        """No fix for epochs from now until virtual time ``until`` (tunnel, building)."""
        self._lost_until = max(self._lost_until, until)

    def regain_fix(self) -> None:
        """End a loss window now (out of the tunnel)."""
        self._lost_until = self._clock.now

    def set_dialect(self, speak: Callable[[int, bool], list[str]] | None) -> None:
        """Speak another receiver's dialect: ``speak(second, has_fix)`` gives an epoch's
        complete lines (None: the built-in u-blox set). The truth kept in
        ``recent_epochs`` then holds only the time and whether there was a fix."""
        self._dialect = speak

    def set_route(self, route: Route) -> None:
        """Walk ``route`` from its start, beginning now."""
        self._route = route
        self._route_t0 = self._clock.now

    def send_raw(self, data: bytes) -> int:
        """Write bytes as they are (garbage, broken sentences); returns how many went out."""
        return self._write(data)

    # -- running ------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[SimEpoch]:
        """Send the epochs whose UTC second has come since the last tick; returns them."""
        if self._closed:
            return []
        now = self._clock.now if now is None else now
        sent = self._due_epochs(now)
        self._pump(now)
        return sent

    def _due_epochs(self, now: float) -> list[SimEpoch]:
        utc_now = self._true_utc()
        last_due = math.floor(utc_now)
        if last_due < self._next_epoch:
            return []
        first = self._next_epoch
        if last_due - first + 1 > MAX_CATCHUP_EPOCHS:
            skipped = last_due - first + 1 - MAX_CATCHUP_EPOCHS
            self.skipped_epochs += skipped
            log.debug("GNSS simulator skipping %d epochs after a long pause", skipped)
            first = last_due - MAX_CATCHUP_EPOCHS + 1
        offset = utc_now - now  # UTC minus virtual time: constant for a perfect clock
        sent = []
        for second in range(first, last_due + 1):
            epoch = self._epoch(second, round(second - offset, 6))
            self._send("".join(epoch.sentences).encode("ascii"), epoch.virtual_time)
            self.recent_epochs.append(epoch)
            sent.append(epoch)
        self._next_epoch = last_due + 1
        return sent

    def _epoch(self, second: int, vt: float) -> SimEpoch:
        # Draw every epoch whether or not there is a fix, so the sequence of satellite
        # counts does not depend on when faults were injected.
        sats = max(4, min(12, self._satellites + self._rng.choice((-1, 0, 0, 0, 1))))
        hdop = round(0.6 + 3.0 / sats + self._rng.uniform(-0.05, 0.05), 2)
        vdop = round(hdop * 1.4, 2)
        pdop = round(math.hypot(hdop, vdop), 2)

        stamp = datetime.fromtimestamp(second, timezone.utc)
        hms, dmy = stamp.strftime("%H%M%S.00"), stamp.strftime("%d%m%y")
        t = self._talker
        has_fix = vt >= self._first_fix_at and vt >= self._lost_until
        if self._dialect is not None:
            return SimEpoch(second, vt, has_fix, None, None, None, None, None, 0, None, None,
                            None, 3 if has_fix else 1, tuple(self._dialect(second, has_fix)))
        if not has_fix:
            bodies = (f"{t}RMC,{hms},V,,,,,,,{dmy},,,N", f"{t}VTG,,,,,,,,,N",
                      f"{t}GGA,{hms},,,,,0,00,99.99,,,,,,",
                      f"{t}GSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99", *gsv_bodies(()))
            return SimEpoch(second, vt, False, None, None, None, None, None, 0,
                            99.99, 99.99, 99.99, 1, tuple(nmea_sentence(b) for b in bodies))

        lat, lon, course, speed = self._route.position_at(vt - self._route_t0)
        alt = self._route.altitude_m
        lat_s, ns = format_latitude(lat)
        lon_s, ew = format_longitude(lon)
        knots = speed / KNOT_MPS
        crs = "" if course is None else f"{course:.2f}"
        prns = ",".join(f"{p:02d}" for p in _PRNS[:sats]) + "," * (12 - sats)
        bodies = (
            f"{t}RMC,{hms},A,{lat_s},{ns},{lon_s},{ew},{knots:.3f},{crs},{dmy},,,A",
            f"{t}VTG,{crs},T,,M,{knots:.3f},N,{speed * 3.6:.3f},K,A",
            f"{t}GGA,{hms},{lat_s},{ns},{lon_s},{ew},1,{sats:02d},{hdop:.2f},{alt:.1f},M,"
            f"{GEOID_SEPARATION_M:.1f},M,,",
            f"{t}GSA,A,3,{prns},{pdop:.2f},{hdop:.2f},{vdop:.2f}",
            *gsv_bodies(_PRNS[:min(len(_PRNS), sats + IN_VIEW_NOT_USED)]),
        )
        return SimEpoch(second, vt, True, lat, lon, alt, speed, course, sats, hdop, pdop,
                        vdop, 3, tuple(nmea_sentence(b) for b in bodies))

    def _send(self, data: bytes, second_at: float) -> None:
        if self._chars_per_s is None:
            self._write(data)
            return
        begins = second_at + self._latency_s
        if self._outgoing:  # one line: a burst waits for the one before it
            last = self._outgoing[-1]
            begins = max(begins, last[0] + len(last[1]) / self._chars_per_s)
        self._outgoing.append([begins, data, 0])

    def finish_sending(self) -> None:
        """Write what is still queued for the paced line at once (end of a test run)."""
        while self._outgoing:
            _, data, done = self._outgoing.popleft()
            self._write(data[done:])

    def _pump(self, now: float) -> None:
        """Write what the line has carried by ``now`` of the paced bursts."""
        while self._outgoing:
            burst = self._outgoing[0]
            begins, data, done = burst
            due = min(len(data), max(0, math.floor((now - begins) * self._chars_per_s + 1e-9)))
            if due > done:
                self._write(data[done:due])
                burst[2] = due
            if due < len(data):
                break
            self._outgoing.popleft()

    def _write(self, data: bytes) -> int:
        if self._closed:
            self.dropped_bytes += len(data)
            return 0
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        if written < len(data):
            self.dropped_bytes += len(data) - written
            log.debug("GNSS pty full: dropped %d bytes", len(data) - written)
        return written

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                log.debug("closing pty fd %d failed", fd, exc_info=True)

    def __enter__(self) -> SimGnssReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
