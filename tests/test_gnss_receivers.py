"""GNSS as real receivers speak it (issue 15, defects 2–7): each with the sentences shown.

Sentences the issue quotes in part (``…``) are completed with plausible fields; where the
issue gives the checksum, the completed sentence has it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from device.backends.nmea import NmeaAssembler
from device.gnss import GnssFix
from simulator.gnss import nmea_sentence


def feed(lines: list[str], step: float = 0.01) -> tuple[NmeaAssembler, list[GnssFix]]:
    a = NmeaAssembler()
    fixes: list[GnssFix] = []
    for i, line in enumerate(lines):
        fixes += a.feed(line if line.startswith("$") else nmea_sentence(line), i * step)
    return a, fixes + a.finish()


def garbage(a: NmeaAssembler) -> int:
    s = a.stats
    return s.malformed + s.bad_checksum + s.overlong


# --- 2. No RMC, no time ----------------------------------------------------------------


def test_gga_and_zda_receiver_has_time():
    a, [fix] = feed(["GPGGA,193913.00,5230.1234,N,01323.4567,E,1,07,1.2,41.0,M,44.0,M,,",
                     "$GPZDA,193913.00,07,09,2018,00,00*63"])
    assert fix.time_utc == datetime(2018, 9, 7, 19, 39, 13, tzinfo=timezone.utc)
    assert fix.valid and fix.quality == 1 and fix.satellites == 7
    assert garbage(a) == 0


def test_gns_only_receiver_gives_one_epoch_per_second():
    lines = ["$GPZDA,193913.00,07,09,2018,00,00*63"]
    for second in range(13, 33):
        lines.append(f"GNGNS,1939{second:02d}.00,5230.1234,N,01323.4567,E,AAN,14,0.8,41.0,44.0,,")
    a, fixes = feed(lines)
    assert len(fixes) == 20
    assert [f.time_utc.second for f in fixes] == list(range(13, 33))
    assert fixes[0].time_utc.date().isoformat() == "2018-09-07"
    assert all(f.valid and f.quality == 1 and f.satellites == 14 and f.altitude_m == 41.0
               for f in fixes)
    assert garbage(a) == 0


def test_gll_only_receiver_has_time_of_day_and_position():
    a, fixes = feed(["GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E",
                     "GPGLL,4916.45,N,12311.12,W,225447,A,A",
                     "GPGLL,4916.46,N,12311.12,W,225448,A,A",
                     "GPGLL,,,,,225449,V,N"])
    assert [f.time_utc.isoformat() for f in fixes[1:]] == [
        "1994-11-19T22:54:47+00:00", "1994-11-19T22:54:48+00:00", "1994-11-19T22:54:49+00:00"]
    assert fixes[2].valid and fixes[2].latitude == pytest.approx(49 + 16.46 / 60)
    assert not fixes[3].valid and fixes[3].latitude is None
    assert garbage(a) == 0


# --- 3. Per-constellation sentences are merged -------------------------------------------


def test_per_constellation_gga_satellites_are_summed():
    _, [fix] = feed(["GPGGA,101010.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
                     "GLGGA,101010.00,4807.038,N,01131.000,E,1,02,0.9,545.4,M,46.9,M,,"])
    assert fix.satellites == 10


def test_combined_talker_count_is_not_added_twice():
    _, [fix] = feed(["GNGNS,101010.00,4807.038,N,01131.000,E,AAA,17,0.7,545.4,46.9,,",
                     "GPGNS,101010.00,4807.038,N,01131.000,E,A,08,0.9,545.4,46.9,,",
                     "GLGNS,101010.00,4807.038,N,01131.000,E,A,05,1.1,545.4,46.9,,",
                     "GAGNS,101010.00,4807.038,N,01131.000,E,A,04,1.3,545.4,46.9,,"])
    assert fix.satellites == 17 and fix.hdop == 0.7


def test_gsa_per_system_counts_satellites_when_no_gga():
    _, [fix] = feed(["GNRMC,101010.00,A,4807.038,N,01131.000,E,0.0,,010124,,,A",
                     "GNGSA,A,3,02,05,07,09,13,,,,,,,,1.32,0.71,1.11,1",
                     "GNGSA,A,3,66,67,76,,,,,,,,,,1.32,0.71,1.11,2"])
    assert fix.satellites == 8 and fix.mode == 3 and fix.pdop == 1.32


# --- 4. Fix mode and quality from what is present ----------------------------------------


def test_rtk_gga_without_gsa_reports_3d_and_quality_4():
    _, [fix] = feed(["GNRMC,101010.00,A,4807.03812,N,01131.00034,E,0.01,,010124,,,R",
                     "GNGGA,101010.00,4807.03812,N,01131.00034,E,4,23,0.6,545.412,M,46.9,M,1.0,0000"])
    assert fix.valid and fix.quality == 4 and fix.mode == 3 and fix.satellites == 23


def test_rtk_float_from_gns_mode_letters():
    _, [fix] = feed(["GNGNS,101010.00,4807.03812,N,01131.00034,E,FFNN,19,0.6,545.4,46.9,1.0,0000"])
    assert fix.valid and fix.quality == 5 and fix.mode == 3


def test_rmc_only_valid_epoch_is_a_fix_not_quality_0():
    _, [fix] = feed(["GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"])
    assert fix.valid and fix.quality == 1 and fix.mode == 2
    _, [dgps] = feed(["GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,,D"])
    assert dgps.quality == 2


# --- 5. Vendor no-fix placeholders ---------------------------------------------------------


def test_sirf_placeholder_is_a_no_fix_epoch_with_its_time():
    a, [fix] = feed(["$GPRMC,235946.005,V,8960.000000,N,00000.000000,E,0.000,0.00,050180,,,N*47"])
    assert not fix.valid and fix.latitude is None and fix.longitude is None
    assert fix.quality == 0 and fix.mode == 1
    assert fix.time_utc == datetime(1980, 1, 5, 23, 59, 46, 5000, tzinfo=timezone.utc)
    assert garbage(a) == 0


def test_mediatek_placeholder_is_a_no_fix_epoch_with_its_time():
    a, [fix] = feed(["GPRMC,000416.984,V,36000.0000,N,72000.0000,E,0.00,0.00,060180,,,N",
                     "GPGGA,000416.984,36000.0000,N,72000.0000,E,0,0,,,M,,M,,"])
    assert not fix.valid and fix.latitude is None
    assert fix.time_utc == datetime(1980, 1, 6, 0, 4, 16, 984000, tzinfo=timezone.utc)
    assert garbage(a) == 0


def test_bad_date_field_drops_only_the_date():
    a, [fix] = feed(["GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,000000,,,A"])
    assert fix.valid and fix.latitude == pytest.approx(48 + 7.038 / 60)
    assert fix.time_utc is None  # no date known: no time that could mislead


def test_a_fix_with_an_impossible_position_is_still_garbage():
    a, fixes = feed(["GPRMC,123519,A,9107.038,N,01131.000,E,022.4,084.4,230394,,,A"])
    assert fixes == [] and a.stats.errors_by_kind == {"bad_value": 1}


# --- 6. Well-formed vendor output is no garbage --------------------------------------------


def test_proprietary_and_doubled_start_are_not_garbage():
    pmtkchn = nmea_sentence("PMTKCHN," + ",".join(f"{p:02d}{40 + p % 9:02d}{30 + p % 20:02d}3"
                                                  for p in range(1, 25))).strip()
    pglor = nmea_sentence("PGLOR,1,SAT," + ",".join(f"G{p:02d},{30 + p:03d},F" for p in range(1, 12))
                          + ",R25,33").strip()
    assert (len(pmtkchn), len(pglor)) == (203, 132)
    a, fixes = feed([
        pmtkchn, pglor, "$POLYN,TIME,RESTART_OCCURRED",
        "GNRMC,101010.00,A,4807.038,N,01131.000,E,0.0,,010124,,,A",
        "GNGGA,101010.00,4807.038,N,01131.000,E,1,12,0.9,545.4,M,46.9,M,,",
        "$" + nmea_sentence("GNGSA,A,3,02,05,07,09,13,,,,,,,,1.32,0.71,1.11,1").strip(),
        "GPTXT,01,01,02,ANTSTATUS=OK",
    ])
    assert garbage(a) == 0 and a.stats.last_error == ""
    assert a.stats.proprietary == 3 and a.stats.unsupported == 1
    [fix] = fixes
    assert fix.valid and fix.pdop == 1.32  # the doubled-$ GSA was read


# --- 7. Position from the sentence with the fix quality ------------------------------------


def test_gga_position_wins_over_a_disagreeing_rmc():
    # The RMC is about 8 m north of the GGA.
    _, [fix] = feed(["GPRMC,101010.00,A,4807.04232,N,01131.00000,E,0.0,,010124,,,A",
                     "GPGGA,101010.00,4807.03800,N,01131.00000,E,1,09,0.9,545.4,M,46.9,M,,"])
    assert fix.latitude == pytest.approx(48 + 7.038 / 60)


def test_rmc_repeating_the_previous_second_is_dropped():
    a, fixes = feed([
        "GPRMC,101010.00,A,4807.03800,N,01131.00000,E,1.0,0.0,010124,,,A",
        "GPGGA,101010.00,4807.03800,N,01131.00000,E,1,09,0.9,545.4,M,46.9,M,,",
        "GPGGA,101011.00,4807.03850,N,01131.00000,E,1,09,0.9,545.4,M,46.9,M,,",
        "GPRMC,101010.00,A,4807.03800,N,01131.00000,E,1.0,0.0,010124,,,A",  # last second's
        "GPGGA,101012.00,4807.03900,N,01131.00000,E,1,09,0.9,545.4,M,46.9,M,,",
    ])
    assert [f.time_utc.second for f in fixes] == [10, 11, 12]
    assert fixes[1].latitude == pytest.approx(48 + 7.0385 / 60)
    assert garbage(a) == 0


def test_no_fix_rmc_with_coordinates_has_no_position():
    _, [fix] = feed(["GPRMC,101010.00,V,4807.038,N,01131.000,E,0.0,,010124,,,N"])
    assert not fix.valid and fix.latitude is None and fix.longitude is None
    _, [fix] = feed(["GPRMC,101010.00,V,4807.038,N,01131.000,E,0.0,,010124,,,N",
                     "GPGGA,101010.00,4807.038,N,01131.000,E,0,05,9.9,545.4,M,46.9,M,,"])
    assert not fix.valid and fix.latitude is None and fix.has_position is False
