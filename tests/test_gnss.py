"""GNSS: the NMEA assembler, the serial backend through a real pty, and the simulated receiver."""

from __future__ import annotations

import select
import time
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.gnss import Gnss, GnssFix
from device.hardware import HardwareError
from device.backends.nmea import (MAX_LINE_BYTES, QUIET_GAP_S, SUPPORTED_TALKERS, SUPPORTED_TYPES, NmeaAssembler,
                         SerialGnss)
from simulator.clock import DriftingWallClock, VirtualClock
from simulator.gnss import (Route, SimEpoch, SimGnssReceiver, distance_m, format_latitude,
                            format_longitude, nmea_sentence)

START_UTC = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
# Two legs through central London: north-west, then east.
LONDON = Route([(51.5000, -0.1200), (51.5010, -0.1210), (51.5010, -0.1190)])


class Rig:
    """A simulated receiver on a pty, read by the real serial backend, in virtual time."""

    def __init__(self, route: Route = LONDON, ttff: float = 3.0) -> None:
        self.clock = VirtualClock()
        # The device clock is off by minutes: GNSS time must not follow it.
        self.wall = DriftingWallClock(self.clock, START_UTC, initial_error_s=-95.0, drift_ppm=40)
        self.sim = SimGnssReceiver(self.clock, self.wall.true_utc, route, time_to_first_fix_s=ttff,
                                   baudrate=9600)  # paced as a UART sends
        self.gnss = SerialGnss(self.sim.port_path, monotonic=self.clock)
        self.fixes: list[GnssFix] = []

    def run(self, seconds: float, step: float = 0.1) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.sim.tick(self.clock.now)
            self.fixes += self.gnss.poll()

    def drain(self) -> None:
        """Collect what the kernel still holds; pty delivery is asynchronous."""
        self.sim.finish_sending()  # the rest of the last burst, still on the paced line
        deadline = time.monotonic() + 2.0
        while len(self.fixes) < len(self.sim.recent_epochs) and time.monotonic() < deadline:
            readable, _, _ = select.select([self.gnss.fileno()], [], [], 0.05)
            if not readable:
                # Nothing more on the line: let the virtual quiet gap pass, so the reader
                # delivers the last epoch (the burst has ended).
                self.clock.advance(QUIET_GAP_S)
            self.fixes += self.gnss.poll()

    def close(self) -> None:
        self.gnss.close()
        self.sim.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def _by_time(epochs: list[SimEpoch]) -> dict[datetime, SimEpoch]:
    return {e.time_utc: e for e in epochs}


# ---------------------------------------------------------------------------------------
# End to end through the pseudo-terminal.


def test_fixes_follow_route_through_pty(rig: Rig) -> None:
    assert isinstance(rig.gnss, Gnss)
    rig.run(10.0)
    rig.drain()
    epochs = list(rig.sim.recent_epochs)
    assert 10 <= len(rig.fixes) == len(epochs) <= 11
    assert rig.sim.dropped_bytes == 0
    truth = _by_time(epochs)
    previous: SimEpoch | None = None
    for fix in rig.fixes:
        epoch = truth[fix.time_utc]  # GNSS time is true UTC, not the drifting device clock
        assert fix.time_utc.timestamp() == epoch.utc
        assert fix.received_at >= epoch.virtual_time - 1e-6
        assert fix.valid == (epoch.virtual_time >= 3.0)
        if not fix.valid:
            assert fix.latitude is None and fix.longitude is None and fix.quality == 0
            assert fix.satellites == 0 and not fix.has_position
        else:
            lat, lon, course, speed = LONDON.position_at(epoch.virtual_time)
            assert distance_m((fix.latitude, fix.longitude), (lat, lon)) < 0.1
            assert fix.altitude_m == pytest.approx(LONDON.altitude_m)
            assert fix.speed_mps == pytest.approx(speed, abs=1e-3)
            assert fix.course_deg == pytest.approx(course, abs=0.01)
            assert (fix.satellites, fix.hdop, fix.quality) == (epoch.satellites, epoch.hdop, 1)
            # The simulator sends GSA after GGA, as u-blox does: still the same epoch's.
            assert (fix.pdop, fix.vdop, fix.mode) == (epoch.pdop, epoch.vdop, 3)
        previous = epoch
    assert [f.received_at for f in rig.fixes] == sorted(f.received_at for f in rig.fixes)
    assert rig.gnss.last_fix == rig.fixes[-1]
    s = rig.gnss.stats
    # RMC, VTG, GGA, GSA and the GSV sentences of the satellites in view, each epoch.
    assert (s.fixes, s.sentences) == (len(epochs), sum(len(e.sentences) for e in epochs))
    assert s.malformed == s.bad_checksum == s.unsupported == s.overlong == 0


def test_fix_loss_window_reports_invalid_fixes_with_time(rig: Rig) -> None:
    rig.run(5.2)  # past epoch 5, clear of float rounding at the whole second
    rig.sim.lose_fix(until=8.0)
    rig.run(4.8)
    rig.drain()
    by_vt = {round(e.virtual_time): f for f, e in zip(rig.fixes, rig.sim.recent_epochs)}
    assert [by_vt[t].valid for t in range(11)] == [False] * 3 + [True] * 3 + [False] * 2 + [True] * 3
    for t in (6, 7):
        assert by_vt[t].time_utc == datetime.fromtimestamp(START_UTC + t, timezone.utc)
        assert by_vt[t].latitude is None
    # Each epoch's DOPs are its own GSA's: the no-fix placeholder while lost, fresh after.
    truth = {round(e.virtual_time): e for e in rig.sim.recent_epochs}
    assert (by_vt[6].pdop, by_vt[6].mode) == (99.99, 1)
    assert (by_vt[8].pdop, by_vt[8].mode) == (truth[8].pdop, 3)


def test_route_change_and_satellite_variation(rig: Rig) -> None:
    rig.run(4.0)
    stay = Route([(-33.8568, 151.2153)], altitude_m=4.0)  # Sydney Opera House, standing
    rig.sim.set_route(stay)
    rig.run(4.0)
    rig.drain()
    last = rig.fixes[-1]
    assert last.valid and distance_m((last.latitude, last.longitude), (-33.8568, 151.2153)) < 0.05
    assert last.speed_mps == 0.0 and last.course_deg is None and last.altitude_m == 4.0
    sats = {e.satellites for e in rig.sim.recent_epochs if e.valid}
    assert len(sats) > 1 and all(4 <= n <= 12 for n in sats)


BAD_LINES: list[tuple[bytes, str, str]] = [
    # (bytes on the wire, stats counter, errors_by_kind key or "" for unsupported)
    (b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6B\r\n",
     "bad_checksum", "bad_checksum"),
    (b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W\r\n",
     "malformed", "missing_checksum"),
    (nmea_sentence("GPTXT,01,01,02," + "X" * 150).encode(), "overlong", "overlong"),
    ("$GPTXT,01,01,02,café*00\r\n".encode("utf-8"), "malformed", "non_ascii"),
    (b"\x00\xff\x13\x07garbage\r\n", "malformed", "non_ascii"),
    (b"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n",
     "malformed", "no_start"),
    (nmea_sentence("GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,").encode(),
     "malformed", "bad_value"),
    (nmea_sentence("GPRMC,123519,A,4807.038,N,01131.000,E,nan,084.4,230394,,").encode(),
     "malformed", "bad_value"),
    (nmea_sentence("GPRMC").encode(), "malformed", "parse"),
    (b"$GPTXT,01,01,02,ANTSTATUS=OK*3B\r\n", "unsupported", ""),
    (b"$GPGSV,1,1,02,03,03,111,00,04,15,270,00*7A\r\n", "bad_checksum", "bad_checksum"),
    (nmea_sentence("GPGST,172814.0,0.006,0.023,0.020,273.6,0.023,0.020,0.031").encode(),
     "unsupported", ""),
    (b"$PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007,77.52,"
     b"0.007,,0.92,1.19,0.77,9,0,0*5F\r\n", "proprietary", ""),
    (b"!AIVDM,1,1,,B,177KQJ5000G?tO`K>RA1wUbN0TKH,0*5C\r\n", "unsupported", ""),
    (nmea_sentence("IIRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,").encode(),
     "unsupported", ""),
]


def test_bad_input_through_pty_is_counted_and_good_fixes_survive(rig: Rig) -> None:
    rig.run(1.0)
    for data, _, _ in BAD_LINES:
        rig.sim.send_raw(data)
        rig.run(0.5)
    # A stream with no newline at all: counted once as over-long, memory stays bounded.
    for _ in range(5):
        rig.sim.send_raw(b"A" * 1000)
        rig.run(0.1)
        assert len(rig.gnss._buffer) <= MAX_LINE_BYTES
    rig.sim.send_raw(b"\r\n")
    rig.run(2.0)
    rig.drain()

    assert rig.sim.dropped_bytes == 0
    assert len(rig.fixes) == len(rig.sim.recent_epochs)
    assert all(f.valid for f in rig.fixes[3:])
    s = rig.gnss.stats
    expected = {"malformed": 0, "bad_checksum": 0, "overlong": 1, "unsupported": 0,
                "proprietary": 0}
    kinds: dict[str, int] = {"overlong": 1}
    for _, counter, kind in BAD_LINES:
        expected[counter] += 1
        if kind:
            kinds[kind] = kinds.get(kind, 0) + 1
    assert {k: getattr(s, k) for k in expected} == expected
    assert s.errors_by_kind == kinds
    assert s.fixes == len(rig.fixes)
    assert s.last_error.startswith("overlong") and "'AAAA" in s.last_error


def test_port_vanishing_raises_hardware_error(rig: Rig) -> None:
    rig.run(1.0)
    rig.sim.close()
    with pytest.raises(HardwareError, match=rig.sim.port_path):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            select.select([rig.gnss.fileno()], [], [], 0.05)
            rig.gnss.poll()


def test_nonexistent_port_raises_hardware_error() -> None:
    with pytest.raises(HardwareError, match="/dev/ttyNOPE9") as err:
        SerialGnss("/dev/ttyNOPE9")
    assert "No such file" in str(err.value)


# ---------------------------------------------------------------------------------------
# The assembler on its own: real-world sentences and epoch rules.


def _feed_all(lines: list[str], t0: float = 0.0) -> tuple[NmeaAssembler, list[GnssFix]]:
    a = NmeaAssembler()
    fixes: list[GnssFix] = []
    for i, line in enumerate(lines):
        fixes += a.feed(line, t0 + i * 0.01)
    return a, fixes + a.finish()


def test_classic_nmea_example_northern_eastern() -> None:
    a, fixes = _feed_all([
        "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n",
        "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
        "$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39",
        "$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48",
    ])
    assert len(fixes) == 1
    f = fixes[0]
    assert f.time_utc == datetime(1994, 3, 23, 12, 35, 19, tzinfo=timezone.utc)
    assert f.valid and f.quality == 1 and f.satellites == 8 and f.hdop == 0.9
    assert f.latitude == pytest.approx(48 + 7.038 / 60)
    assert f.longitude == pytest.approx(11 + 31.0 / 60)
    assert f.altitude_m == 545.4
    assert f.speed_mps == pytest.approx(22.4 * 1852 / 3600)
    assert f.course_deg == 84.4
    assert f.received_at == 0.0  # the first sentence of the epoch: the burst's start
    assert (f.pdop, f.vdop, f.mode) == (2.5, 2.1, 3)
    assert a.stats.sentences == 4 and a.stats.fixes == 1


def test_classic_examples_western_and_southern() -> None:
    _, fixes = _feed_all([
        "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68",
        "$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D",
    ])
    west, south = fixes
    assert west.time_utc == datetime(1994, 11, 19, 22, 54, 46, tzinfo=timezone.utc)
    assert west.valid and west.longitude == pytest.approx(-(123 + 11.12 / 60))
    assert west.latitude == pytest.approx(49 + 16.45 / 60)
    # GGA-only epoch: date from the RMC before it, validity from quality.
    assert south.valid and south.quality == 1
    assert south.latitude == pytest.approx(-(19 + 29.045 / 60))
    assert south.longitude == pytest.approx(24 + 10.506 / 60)
    assert south.time_utc == datetime(1994, 11, 19, 18, 43, 53, 70000, tzinfo=timezone.utc)


def test_ublox_style_southern_western_epoch_with_gsa_after_gga() -> None:
    _, fixes = _feed_all([
        "$GNRMC,143512.00,A,3436.22200,S,05822.89600,W,0.152,271.35,050624,,,A*74",
        "$GNVTG,271.35,T,,M,0.152,N,0.282,K,A*2F",
        "$GNGGA,143512.00,3436.22200,S,05822.89600,W,1,12,0.71,25.3,M,16.9,M,,*78",
        "$GNGSA,A,3,02,05,07,09,13,,,,,,,,1.32,0.71,1.11*10",
    ])
    f = fixes[0]
    assert (f.latitude, f.longitude) == pytest.approx((-34.6037, -58.3816))
    assert f.time_utc == datetime(2024, 6, 5, 14, 35, 12, tzinfo=timezone.utc)
    assert f.satellites == 12 and f.altitude_m == 25.3
    assert (f.pdop, f.mode) == (1.32, 3)  # its GSA comes last in the burst: still this epoch


def test_cold_start_sentences_without_time_still_make_fixes() -> None:
    _, fixes = _feed_all(["$GPRMC,,V,,,,,,,,,,N*53", "$GPGGA,,,,,,0,00,99.99,,,,,,*48"] * 2)
    assert len(fixes) == 2
    assert all(f.time_utc is None and not f.valid and f.hdop == 99.99 for f in fixes)


def test_gga_only_stream_rolls_date_over_midnight() -> None:
    a, fixes = _feed_all([
        "$GPRMC,235959.00,A,5130.00000,N,00007.20000,W,0.000,,311223,,,A*61",
        "$GPGGA,235959.00,5130.00000,N,00007.20000,W,1,08,1.00,12.0,M,47.0,M,,*74",
        "$GPGGA,000000.00,5130.00000,N,00007.20000,W,1,08,1.00,12.0,M,47.0,M,,*75",
        "$GPGGA,000001.00,5130.00000,N,00007.20000,W,1,08,1.00,12.0,M,47.0,M,,*74",
    ])
    assert [f.time_utc.date() for f in fixes] == [date(2023, 12, 31), date(2024, 1, 1),
                                                  date(2024, 1, 1)]
    assert fixes[0].course_deg is None and fixes[0].speed_mps == 0.0
    assert a.stats.fixes == 3


def test_epoch_closed_by_next_time_and_late_duplicates_dropped() -> None:
    a = NmeaAssembler()
    rmc = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
    gga = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
    assert a.feed(rmc, 1.0) == []
    assert a.feed(rmc, 1.1) == []  # same epoch
    assert a.feed(gga, 1.2) == []  # collected until the burst ends
    [fix] = a.flush()
    assert fix.received_at == 1.0 and fix.valid
    assert a.feed(gga, 1.3) == []  # late duplicate of an emitted epoch
    assert a.finish() == []
    # The same time a second later is a receiver whose clock stopped: still an epoch.
    assert a.feed(rmc, 2.3) == [] and a.feed(gga, 2.3) == [] and len(a.flush()) == 1
    # RMC-only receiver: each epoch closes when the next time arrives.
    later = nmea_sentence("GPRMC,123520,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    assert a.feed(later, 3.0) == []
    [closed] = a.feed(nmea_sentence("GPRMC,123521,V,,,,,,,230394,,"), 4.0)
    assert closed.time_utc.second == 20 and closed.valid and closed.received_at == 3.0
    [last] = a.finish()
    assert not last.valid and last.time_utc.second == 21


def test_glued_sentence_after_lost_bytes_is_recovered() -> None:
    a = NmeaAssembler()
    a.feed("$GPGGA,1235$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A", 0)
    [fix] = a.finish()
    assert fix.valid and a.stats.malformed == 1 and a.stats.errors_by_kind == {"missing_checksum": 1}


# ---------------------------------------------------------------------------------------
# Properties.

_printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$*!,")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_feed_never_raises_on_arbitrary_input(data: str | bytes) -> None:
    a = NmeaAssembler()
    a.feed(data, 0.0)
    a.finish()
    s = a.stats
    assert s.malformed + s.bad_checksum + s.overlong + s.unsupported <= s.sentences


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(SUPPORTED_TALKERS)), st.sampled_from(sorted(SUPPORTED_TYPES)),
       st.lists(st.one_of(st.text(_printable, max_size=12),
                          st.builds("{}.{}".format, st.integers(0, 999_999),
                                    st.integers(0, 99_999)),
                          st.sampled_from(["A", "V", "N", "S", "E", "W", "M", "T", "K"])),
                max_size=20))
def test_feed_never_raises_on_checksummed_nonsense(talker: str, kind: str, fields: list[str]) -> None:
    a = NmeaAssembler()
    for i in range(2):
        for f in a.feed(nmea_sentence(",".join([talker + kind, *fields])), float(i)):
            assert f.latitude is None or -90 <= f.latitude <= 90
            assert f.longitude is None or -180 <= f.longitude <= 180
    a.finish()


@settings(max_examples=200, deadline=None)
@given(st.floats(-90, 90), st.floats(-180, 180), st.sampled_from(sorted(SUPPORTED_TALKERS)))
def test_lat_lon_round_trip(lat: float, lon: float, talker: str) -> None:
    (la, ns), (lo, ew) = format_latitude(lat), format_longitude(lon)
    a = NmeaAssembler()
    a.feed(nmea_sentence(f"{talker}RMC,101010.00,A,{la},{ns},{lo},{ew},0.0,,010124,,,A"), 0.0)
    a.feed(nmea_sentence(f"{talker}GGA,101010.00,{la},{ns},{lo},{ew},1,07,1.1,3.0,M,,,,"), 0.1)
    [fix] = a.finish()
    assert fix.valid
    assert fix.latitude == pytest.approx(lat, abs=2e-7)
    assert fix.longitude == pytest.approx(lon, abs=2e-7)


class _ChunkedPort:
    """A fake serial port handing over a byte stream in given pieces, one per read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def read(self, size: int = 1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2000), max_size=12))
def test_serial_reader_result_independent_of_read_boundaries(cuts: list[int]) -> None:
    clock = VirtualClock()
    stream = b""
    for second in range(3):
        (la, ns), (lo, ew) = format_latitude(48 + second * 1e-5), format_longitude(11.0)
        stream += nmea_sentence(f"GNRMC,10101{second}.00,A,{la},{ns},{lo},{ew},1.0,0.0,010124,,,A").encode()
        stream += b"noise\r" + nmea_sentence(
            f"GNGGA,10101{second}.00,{la},{ns},{lo},{ew},1,07,1.1,3.0,M,,,,").encode()
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:])]
    gnss = SerialGnss("fake", monotonic=clock, serial_port=_ChunkedPort(chunks))
    fixes: list[GnssFix] = []
    for _ in range(len(chunks) + 1):
        fixes += gnss.poll()
    clock.advance(QUIET_GAP_S)  # the receiver falls silent: its last epoch is delivered
    fixes += gnss.poll()
    assert [round(f.latitude, 6) for f in fixes] == [48.0, 48.00001, 48.00002]
    assert gnss.stats.malformed == 3 and gnss.stats.errors_by_kind == {"no_start": 3}


# ---------------------------------------------------------------------------------------
# Route geometry.


def test_route_walks_legs_at_constant_speed_and_stops() -> None:
    route = Route([(0.0, 0.0), (0.0, 0.001), (0.001, 0.001)], speed_mps=2.0)
    leg = distance_m((0.0, 0.0), (0.0, 0.001))
    lat, lon, course, speed = route.position_at(leg / 4)
    assert distance_m((0.0, 0.0), (lat, lon)) == pytest.approx(leg / 2, abs=1e-6)
    assert course == pytest.approx(90.0) and speed == 2.0
    lat, lon, course, _ = route.position_at(leg / 2 + 1.0)
    assert course == pytest.approx(0.0, abs=1e-6) and lon == pytest.approx(0.001)
    assert route.position_at(1e6) == (0.001, 0.001, None, 0.0)


def test_looping_route_returns_to_start_and_stationary_route() -> None:
    loop = Route([(10.0, 10.0), (10.0, 10.001)], speed_mps=1.0, loop=True)
    lat, lon, _, speed = loop.position_at(loop.length_m)
    assert distance_m((lat, lon), (10.0, 10.0)) < 1e-6 and speed == 1.0
    assert Route([(1.0, 2.0)]).position_at(50.0) == (1.0, 2.0, None, 0.0)
    with pytest.raises(ValueError):
        Route([(91.0, 0.0)])
