"""Receiver outputs for the NMEA corpus (``tests/data/nmea/``), written from each receiver
family's documented sentence set and order (its protocol manual's default output), with
what each epoch says (the expected epochs) kept beside the sentences.

Every receiver here is a function ``burst(second, fix) -> list[body]`` that says one epoch
the way that family does: its talkers, sentence order, decimals, no-fix placeholders and
proprietary extras. ``record(name)`` runs a receiver through a short scripted session
(no fix, then a fix along a short walk) and returns the bytes and the expected epochs;
``python -m tests.nmea_corpus`` writes them to ``tests/data/nmea/`` (``NAME.nmea`` and
``NAME.json``). The expected epochs come from what each burst was made to say, never from
the reader under test.

The simulated world can speak any of these dialects live (``SimGnssReceiver.set_dialect``),
so the agent's track is checked against a multi-constellation RTK receiver too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from simulator.gnss import nmea_sentence

DATA = Path(__file__).parent / "data" / "nmea"


@dataclass(frozen=True)
class Fix:
    """What the receiver means to say about one epoch."""

    lat: float
    lon: float
    alt: float
    quality: int  # GGA fix quality
    sats: dict[str, int]  # satellites used, by talker of its system (GP, GL, GA, GB/BD...)
    speed_kn: float = 0.5
    course: float = 45.0


def angle(value: float, degree_digits: int, decimals: int) -> tuple[str, float]:
    """(ddmm.mmmm text, the degrees that text says)."""
    scale = 10 ** decimals
    units = round(abs(value) * 60 * scale)
    degrees, minute_units = divmod(units, 60 * scale)
    minutes = minute_units / scale
    text = f"{degrees:0{degree_digits}d}{minutes:0{3 + decimals}.{decimals}f}"
    said = degrees + minute_units / scale / 60
    return text, -said if value < 0 else said


def position(fix: Fix, decimals: int) -> tuple[str, float, float]:
    la, lat = angle(fix.lat, 2, decimals)
    lo, lon = angle(fix.lon, 3, decimals)
    text = f"{la},{'S' if fix.lat < 0 else 'N'},{lo},{'W' if fix.lon < 0 else 'E'}"
    return text, lat, lon


def hms(second: int, decimals: int) -> str:
    t = datetime.fromtimestamp(second, timezone.utc)
    frac = "" if decimals == 0 else "." + "0" * decimals
    return t.strftime("%H%M%S") + frac


def dmy(second: int) -> str:
    return datetime.fromtimestamp(second, timezone.utc).strftime("%d%m%y")


def zda(talker: str, second: int, decimals: int = 2) -> str:
    t = datetime.fromtimestamp(second, timezone.utc)
    return f"{talker}ZDA,{hms(second, decimals)},{t:%d},{t:%m},{t:%Y},00,00"


_GSV_PRNS = {"GP": (2, 5, 7, 9, 13, 15, 18, 20, 23, 26, 29, 30), "GL": (65, 66, 67, 74, 75, 76, 81, 82),
             "GA": (3, 5, 8, 13, 15, 21, 26, 27), "GB": (6, 9, 14, 16, 21, 26, 27, 33, 39),
             "BD": (6, 9, 14, 16, 21, 26, 27, 33, 39)}


def gsv(talker: str, n: int, system_id: str | None = None) -> list[str]:
    prns = (_GSV_PRNS[talker] * 2)[:max(n, 1)]
    parts = [prns[i:i + 4] for i in range(0, len(prns), 4)]
    out = []
    for i, part in enumerate(parts, 1):
        sats = ",".join(f"{p:02d},{30 + (p * 7) % 55:02d},{(p * 37) % 360:03d},{25 + p % 20:02d}"
                        for p in part)
        tail = f",{system_id}" if system_id else ""
        out.append(f"{talker}GSV,{len(parts)},{i},{len(prns):02d},{sats}{tail}")
    return out


def gsa_prns(talker: str, n: int) -> str:
    prns = (list(_GSV_PRNS[talker][:n]) + [None] * 12)[:12]
    return ",".join("" if p is None else f"{p:02d}" for p in prns)


# --- the receivers -----------------------------------------------------------------------
# Each returns (sentence bodies or full lines, what the epoch says: dict for the JSON).

Burst = tuple[list[str], dict]


def _said(second: int, fix: Fix | None, lat: float | None = None, lon: float | None = None,
          quality: int = 0, sats: int | None = None, mode: int = 1, alt: float | None = None,
          dated: bool = True) -> dict:
    when = datetime.fromtimestamp(second, timezone.utc).isoformat() if dated else None
    return {"time_utc": when, "valid": fix is not None, "lat": lat, "lon": lon,
            "quality": quality, "satellites": sats, "mode": mode, "altitude_m": alt}


def ublox_m8(second: int, fix: Fix | None) -> Burst:
    """u-blox M8, NMEA 4.10 default: RMC VTG GGA GSA×2 GSV… GLL, GN talker, 5 decimals."""
    t = hms(second, 2)
    if fix is None:
        return ([f"GNRMC,{t},V,,,,,,,{dmy(second)},,,N,V", "GNVTG,,,,,,,,,N",
                 f"GNGGA,{t},,,,,0,00,99.99,,,,,,", "GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1",
                 "GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,2", "GPGSV,1,1,00,0",
                 "GLGSV,1,1,00,1", f"GNGLL,,,,,{t},V,N"], _said(second, None, sats=0))
    pos, lat, lon = position(fix, 5)
    n = sum(fix.sats.values())
    return ([f"GNRMC,{t},A,{pos},{fix.speed_kn:.3f},{fix.course:.2f},{dmy(second)},,,A,V",
             f"GNVTG,{fix.course:.2f},T,,M,{fix.speed_kn:.3f},N,{fix.speed_kn * 1.852:.3f},K,A",
             f"GNGGA,{t},{pos},1,{n:02d},0.92,{fix.alt:.1f},M,47.0,M,,",
             f"GNGSA,A,3,{gsa_prns('GP', fix.sats['GP'])},1.61,0.92,1.32,1",
             f"GNGSA,A,3,{gsa_prns('GL', fix.sats['GL'])},1.61,0.92,1.32,2",
             *gsv("GP", fix.sats["GP"] + 2, "1"), *gsv("GL", fix.sats["GL"] + 1, "1"),
             f"GNGLL,{pos},{t},A,A"],
            _said(second, fix, lat, lon, 1, n, 3, fix.alt))


def mediatek_mt3339(second: int, fix: Fix | None) -> Burst:
    """MediaTek MT3339 (PMTK): GGA GSA GSV RMC VTG, GP talker, 4 decimals, ms times; the
    36000.0000 no-fix placeholder with the firmware's default date; $PMTKCHN channels."""
    t = f"{hms(second, 0)}.000"
    chn = "PMTKCHN," + ",".join(f"{p:02d}{40 + p % 9:02d}{30 + p % 20:02d}3" for p in range(1, 25))
    if fix is None:
        return ([f"GPGGA,{t},36000.0000,N,72000.0000,E,0,0,,,M,,M,,",
                 "GPGSA,A,1,,,,,,,,,,,,,,,", "GPGSV,1,1,00",
                 f"GPRMC,{t},V,36000.0000,N,72000.0000,E,0.00,0.00,{dmy(second)},,,N",
                 "GPVTG,0.00,T,,M,0.00,N,0.00,K,N", chn], _said(second, None, sats=0))
    pos, lat, lon = position(fix, 4)
    n = fix.sats["GP"]
    return ([f"GPGGA,{t},{pos},1,{n},0.98,{fix.alt:.1f},M,47.9,M,,",
             f"GPGSA,A,3,{gsa_prns('GP', n)},1.72,0.98,1.41", *gsv("GP", n + 2),
             f"GPRMC,{t},A,{pos},{fix.speed_kn:.2f},{fix.course:.2f},{dmy(second)},,,A",
             f"GPVTG,{fix.course:.2f},T,,M,{fix.speed_kn:.2f},N,{fix.speed_kn * 1.852:.2f},K,A",
             chn], _said(second, fix, lat, lon, 1, n, 3, fix.alt))


def sirf_star4(second: int, fix: Fix | None) -> Burst:
    """SiRFstarIV: GGA GSA GSV RMC (4800 baud default), GP talker, 4 decimals, ms times;
    no-fix RMC with the 8960.000000,N placeholder and 1980 date."""
    t = f"{hms(second, 0)}.005"
    when = datetime.fromtimestamp(second + 0.005, timezone.utc).isoformat()
    if fix is None:
        said = _said(second, None, sats=0)
        said["time_utc"] = datetime(1980, 1, 5, 23, 59, 46, 5000, tzinfo=timezone.utc).isoformat() \
            if second == _SIRF_COLD else when
        if second == _SIRF_COLD:  # the cold start placeholder, exactly as the issue shows it
            said["satellites"] = None
            return (["$GPRMC,235946.005,V,8960.000000,N,00000.000000,E,0.000,0.00,050180,,,N*47"],
                    said)
        return ([f"GPGGA,{t},,,,,0,00,,,M,0.0,M,,0000", "GPGSA,A,1,,,,,,,,,,,,,,,",
                 "GPGSV,1,1,00", f"GPRMC,{t},V,,,,,,,{dmy(second)},,,N"], said)
    pos, lat, lon = position(fix, 4)
    n = fix.sats["GP"]
    said = _said(second, fix, lat, lon, 1, n, 3, fix.alt)
    said["time_utc"] = when
    return ([f"GPGGA,{t},{pos},1,{n:02d},1.0,{fix.alt:.1f},M,47.0,M,,0000",
             f"GPGSA,A,3,{gsa_prns('GP', n)},2.0,1.0,1.7", *gsv("GP", n + 1),
             f"GPRMC,{t},A,{pos},{fix.speed_kn:.2f},{fix.course:.2f},{dmy(second)},,,A"], said)


_SIRF_COLD = -1  # set per session: the second the cold-start placeholder stands in for


def quectel_l76(second: int, fix: Fix | None) -> Burst:
    """Quectel L76 (GPS+GLONASS): RMC VTG GGA GSA(GP, GL) GSV GLL, GN talker, 4 decimals;
    $PQTXT-style proprietary status."""
    t = f"{hms(second, 0)}.000"
    if fix is None:
        return ([f"GNRMC,{t},V,,,,,0.00,0.00,{dmy(second)},,,N", "GNVTG,0.00,T,,M,0.00,N,0.00,K,N",
                 f"GNGGA,{t},,,,,0,0,,,M,,M,,", "GPGSA,A,1,,,,,,,,,,,,,,,",
                 "GLGSA,A,1,,,,,,,,,,,,,,,", "GPGSV,1,1,00", f"GNGLL,,,,,{t},V,N",
                 "PQTXT,ANTENNA,OK"], _said(second, None, sats=0))
    pos, lat, lon = position(fix, 4)
    n = fix.sats["GP"] + fix.sats["GL"]
    return ([f"GNRMC,{t},A,{pos},{fix.speed_kn:.2f},{fix.course:.2f},{dmy(second)},,,A",
             f"GNVTG,{fix.course:.2f},T,,M,{fix.speed_kn:.2f},N,{fix.speed_kn * 1.852:.2f},K,A",
             f"GNGGA,{t},{pos},1,{n},0.88,{fix.alt:.1f},M,47.0,M,,",
             f"GPGSA,A,3,{gsa_prns('GP', fix.sats['GP'])},1.55,0.88,1.28",
             f"GLGSA,A,3,{gsa_prns('GL', fix.sats['GL'])},1.55,0.88,1.28",
             *gsv("GP", fix.sats["GP"]), *gsv("GL", fix.sats["GL"]), f"GNGLL,{pos},{t},A,A",
             "PQTXT,ANTENNA,OK"], _said(second, fix, lat, lon, 1, n, 3, fix.alt))


def telit_sl869(second: int, fix: Fix | None) -> Burst:
    """Telit SL869 (ST Teseo): GGA per constellation (GP then GL), GNGSA, GSV, RMC with GP
    talker, $PSTMVER at start; satellites are counted per system in GGA."""
    t = f"{hms(second, 0)}.000"
    if fix is None:
        return ([f"GPGGA,{t},,,,,0,00,99.0,,M,,M,,", f"GLGGA,{t},,,,,0,00,99.0,,M,,M,,",
                 "GNGSA,A,1,,,,,,,,,,,,,99.0,99.0,99.0", f"GPRMC,{t},V,,,,,,,{dmy(second)},,,N"],
                _said(second, None, sats=0))
    pos, lat, lon = position(fix, 5)
    gp, gl = fix.sats["GP"], fix.sats["GL"]
    return ([f"GPGGA,{t},{pos},1,{gp:02d},0.9,{fix.alt:.2f},M,47.00,M,,",
             f"GLGGA,{t},{pos},1,{gl:02d},0.9,{fix.alt:.2f},M,47.00,M,,",
             f"GNGSA,A,3,{gsa_prns('GP', gp)},1.6,0.9,1.3",
             f"GNGSA,A,3,{gsa_prns('GL', gl)},1.6,0.9,1.3", *gsv("GP", gp), *gsv("GL", gl),
             f"GPRMC,{t},A,{pos},{fix.speed_kn:.1f},{fix.course:.1f},{dmy(second)},,,A",
             "PSTMVER,GNSSLIB_8.4.9.5_ARM"], _said(second, fix, lat, lon, 1, gp + gl, 3, fix.alt))


def hemisphere_crescent(second: int, fix: Fix | None) -> Burst:
    """Hemisphere Crescent (SBAS DGPS): GGA VTG GSA ZDA GST and $PSAT,HPR; no RMC, so
    the date comes from ZDA; quality 2 (differential)."""
    t = hms(second, 2)
    if fix is None:
        return ([f"GPGGA,{t},,,,,0,00,,,M,,M,,", "GPVTG,,T,,M,,N,,K,N",
                 "GPGSA,A,1,,,,,,,,,,,,,,,", zda("GP", second)], _said(second, None, sats=0))
    pos, lat, lon = position(fix, 6)
    n = fix.sats["GP"]
    return ([f"GPGGA,{t},{pos},2,{n:02d},0.8,{fix.alt:.2f},M,47.02,M,3.0,0138",
             f"GPVTG,{fix.course:.1f},T,,M,{fix.speed_kn:.2f},N,{fix.speed_kn * 1.852:.2f},K,D",
             f"GPGSA,A,3,{gsa_prns('GP', n)},1.5,0.8,1.2", zda("GP", second),
             f"GPGST,{t},1.2,0.6,0.4,45.0,0.5,0.5,0.9",
             f"PSAT,HPR,{t},{fix.course:.2f},-0.52,,N"],
            _said(second, fix, lat, lon, 2, n, 3, fix.alt))


def trimble_bx(second: int, fix: Fix | None) -> Burst:
    """Trimble (GNSS receiver configured for GNS + ZDA): per-system GNS (GN total first,
    then GP, GL), ZDA for the date, $PTNL,GGK proprietary, 7 decimals; no RMC, GGA or GSA."""
    t = hms(second, 2)
    if fix is None:
        return ([f"GNGNS,{t},,,,,NN,00,,,,,", zda("GP", second), f"PTNL,GGK,{t},,,,,,0,00,,,M"],
                _said(second, None, sats=0))
    pos, lat, lon = position(fix, 7)
    gp, gl = fix.sats["GP"], fix.sats["GL"]
    return ([f"GNGNS,{t},{pos},DD,{gp + gl:02d},0.7,{fix.alt:.3f},47.123,3.0,0138",
             f"GPGNS,{t},{pos},D,{gp:02d},0.9,{fix.alt:.3f},47.123,3.0,0138",
             f"GLGNS,{t},{pos},D,{gl:02d},1.1,{fix.alt:.3f},47.123,3.0,0138",
             zda("GP", second), f"PTNL,GGK,{t},{dmy(second)},,,,,3,{gp + gl:02d},0.7,EHT{fix.alt:.3f},M"],
            _said(second, fix, lat, lon, 2, gp + gl, 3, fix.alt))


def beidou_only(second: int, fix: Fix | None) -> Burst:
    """A BeiDou-only module (BD talker, as Chinese BDS modules in BDS mode): RMC GGA GSA
    GSV with BD, $GPTXT antenna status (not ours: another talker's TXT)."""
    t = hms(second, 3)
    if fix is None:
        return ([f"BDRMC,{t},V,,,,,,,{dmy(second)},,,N", f"BDGGA,{t},,,,,0,00,99.99,,,,,,",
                 "BDGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99", "GPTXT,01,01,01,ANTENNA OPEN"],
                _said(second, None, sats=0))
    pos, lat, lon = position(fix, 5)
    n = fix.sats["BD"]
    return ([f"BDRMC,{t},A,{pos},{fix.speed_kn:.3f},{fix.course:.2f},{dmy(second)},,,A",
             f"BDGGA,{t},{pos},1,{n:02d},1.10,{fix.alt:.1f},M,,M,,",
             f"BDGSA,A,3,{gsa_prns('BD', n)},1.90,1.10,1.55", *gsv("BD", n),
             "GPTXT,01,01,01,ANTENNA OK"], _said(second, fix, lat, lon, 1, n, 3, fix.alt))


def rtk_multi(second: int, fix: Fix | None) -> Burst:
    """A multi-constellation RTK rover (NMEA 4.11): GGA per constellation (GP, GL, GA, GB)
    with quality 4 (RTK fixed) and each system's satellites, RMC mode R, no GSA; the
    receiver's proprietary $PUBX status after the burst."""
    t = hms(second, 2)
    if fix is None:
        return ([f"GNRMC,{t},V,,,,,,,{dmy(second)},,,N,V",
                 *(f"{tk}GGA,{t},,,,,0,00,99.99,,,,,," for tk in ("GP", "GL", "GA", "GB"))],
                _said(second, None, sats=0))
    pos, lat, lon = position(fix, 8)
    n = sum(fix.sats.values())
    return ([f"GNRMC,{t},A,{pos},{fix.speed_kn:.3f},{fix.course:.2f},{dmy(second)},,,R,V",
             *(f"{tk}GGA,{t},{pos},{fix.quality},{fix.sats[tk]:02d},0.52,{fix.alt:.3f},M,47.000,M,1.0,0000"
               for tk in ("GP", "GL", "GA", "GB")),
             f"GNVTG,{fix.course:.2f},T,,M,{fix.speed_kn:.3f},N,{fix.speed_kn * 1.852:.3f},K,R",
             "PUBX,00," + t + "," + pos + f",{fix.alt:.3f},R2,0.01,0.02,0.010,45.0,0.000,,0.52,0.61,0.40,"
             + f"{n},0,0"],
            _said(second, fix, lat, lon, fix.quality, n, 3, fix.alt))


RECEIVERS: dict[str, tuple[Callable[[int, Fix | None], Burst], dict[str, int], int]] = {
    # name: (receiver, satellites per system, fix quality)
    "ublox_m8": (ublox_m8, {"GP": 8, "GL": 5}, 1),
    "mediatek_mt3339": (mediatek_mt3339, {"GP": 9}, 1),
    "sirf_star4": (sirf_star4, {"GP": 7}, 1),
    "quectel_l76": (quectel_l76, {"GP": 8, "GL": 4}, 1),
    "telit_sl869": (telit_sl869, {"GP": 8, "GL": 2}, 1),
    "hemisphere_crescent": (hemisphere_crescent, {"GP": 10}, 2),
    "trimble_bx": (trimble_bx, {"GP": 9, "GL": 6}, 2),
    "beidou_only": (beidou_only, {"BD": 11}, 1),
    "rtk_multi": (rtk_multi, {"GP": 10, "GL": 6, "GA": 7, "GB": 8}, 4),
}

START = int(datetime(2026, 11, 29, 1, 0, tzinfo=timezone.utc).timestamp())
NO_FIX_EPOCHS = 2
FIX_EPOCHS = 6


def walk(i: int, base: tuple[float, float, float], sats: dict[str, int], quality: int) -> Fix:
    lat, lon, alt = base
    return Fix(lat + i * 1.1e-5, lon + i * 0.7e-5, alt, quality, sats)


def line(body: str) -> str:
    return body if body.startswith("$") else nmea_sentence(body)


def burst_for(name: str, second: int, fix_index: int | None,
              base: tuple[float, float, float] = (31.2304, 121.4737, 12.0)) -> Burst:
    """One burst of receiver ``name``: ``fix_index`` None for no fix."""
    receiver, sats, quality = RECEIVERS[name]
    fix = None if fix_index is None else walk(fix_index, base, sats, quality)
    bodies, said = receiver(second, fix)
    return [line(b) for b in bodies], said


def record(name: str) -> tuple[bytes, list[dict]]:
    """A short session: no fix, then a fix along a walk; bytes and the expected epochs."""
    global _SIRF_COLD
    _SIRF_COLD = START
    lines: list[str] = []
    expected: list[dict] = []
    for i in range(NO_FIX_EPOCHS + FIX_EPOCHS):
        fix_index = None if i < NO_FIX_EPOCHS else i - NO_FIX_EPOCHS
        sentences, said = burst_for(name, START + i, fix_index)
        lines += sentences
        expected.append(said)
    _SIRF_COLD = -1
    return "".join(lines).encode("ascii"), expected


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name in RECEIVERS:
        data, expected = record(name)
        (DATA / f"{name}.nmea").write_bytes(data)
        (DATA / f"{name}.json").write_text(json.dumps(
            {"receiver": RECEIVERS[name][0].__doc__.split("\n")[0] if RECEIVERS[name][0].__doc__ else name,
             "epochs": expected}, indent=1) + "\n")


if __name__ == "__main__":
    main()
