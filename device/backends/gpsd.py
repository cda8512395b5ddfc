"""gpsd as the GNSS source: gpsd's JSON reports (TPV, SKY, TOFF) read through ``gpsdclient``.

On a Raspberry Pi the receiver is usually owned by gpsd (often feeding chrony). With
``gnss.source = "gpsd"`` the agent reads gpsd's reports instead of the serial line:

* **TPV** (time-position-velocity): time, mode (1 no fix, 2 2D, 3 3D), position, altitude
  (``altMSL``, else ``alt``), speed, track; ``status`` gives the fix quality (2 DGPS,
  3 RTK fixed, 4 RTK float, 5/6 dead reckoning); gpsd may send several TPVs for one
  receiver cycle as sentences arrive: the last one for a time is the epoch.
* **SKY**: satellites used (``uSat``, else those marked ``used``) and the DOPs.
* **TOFF** (asked for with ``"pps": true``): the system clock when the first sentence of the
  cycle arrived, for the fix time ``real``. That is the start of the receiver's burst, so
  the epoch's ``received_at`` is that instant on the monotonic clock; without a TOFF it is
  when the first TPV for the time arrived (later by the burst's length).

``gpsdclient`` (PyPI; MIT) is a small, maintained client that speaks gpsd's documented JSON
protocol and nothing else; its stream blocks, so it runs on a reader thread and ``poll``
takes what arrived without blocking. A lost connection is retried every second and
reported as a ``HardwareError`` by ``poll`` until it is back.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from device.gnss import GnssFix, NmeaStats
from device.hardware import HardwareError

log = logging.getLogger(__name__)

# gpsd's TPV status → GGA-style fix quality.
_STATUS_QUALITY = {2: 2, 3: 4, 4: 5, 5: 6, 6: 6, 8: 8}
# An epoch is complete this long after its last TPV with nothing newer.
QUIET_GAP_S = 0.3
_RETRY_S = 1.0
_WATCH = b'?WATCH={"enable":true,"json":true,"pps":true}\n'


def _number(report: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = report.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


class GpsdGnss:
    """``Gnss`` backend: fixes from a gpsd daemon at ``host:port``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2947,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.host, self.port = host, int(port)
        self._monotonic = monotonic
        self._wall = wall
        self._stats = NmeaStats()
        self._reports: queue.Queue[tuple[dict[str, Any], float, float]] = queue.Queue()
        self._error: str | None = None
        self._stop = threading.Event()
        self._client: Any = None
        self._last_fix: GnssFix | None = None
        # The epoch being collected: its last TPV, when it began, the TOFF for its time.
        self._tpv: dict[str, Any] | None = None
        self._tpv_time: datetime | None = None
        self._tpv_first_at = 0.0
        self._tpv_last_at = 0.0
        self._toff: dict[str, float] = {}  # fix time (epoch seconds) → monotonic of its burst
        self._sky: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._read, name="gpsd-reader", daemon=True)
        self._thread.start()
        log.info("GNSS from gpsd at %s:%d", self.host, self.port)

    # -- reader thread ---------------------------------------------------------------------

    def _read(self) -> None:
        from gpsdclient import GPSDClient  # imported here so the protocol loads without it

        while not self._stop.is_set():
            client = GPSDClient(self.host, self.port, timeout=5)
            self._client = client
            try:
                for n, line in enumerate(client.json_stream()):
                    if self._stop.is_set():
                        break
                    if n == 0:  # the VERSION banner: ask for TOFF reports too
                        client.sock.sendall(_WATCH)
                        self._error = None
                    self._reports.put((self._decode(line), self._monotonic(), self._wall()))
                else:
                    raise ConnectionError("gpsd closed the connection")
            except Exception as exc:  # socket errors, a daemon that is not gpsd
                if self._stop.is_set():
                    break
                self._error = f"{type(exc).__name__}: {exc}"
                log.debug("gpsd at %s:%d: %s", self.host, self.port, self._error)
            finally:
                client.close()
            self._stop.wait(_RETRY_S)

    def _decode(self, line: str) -> dict[str, Any]:
        try:
            report = json.loads(line)
        except ValueError:
            return {"class": "", "_bad": line[:40]}
        return report if isinstance(report, dict) else {"class": "", "_bad": line[:40]}

    # -- Gnss ------------------------------------------------------------------------------

    def poll(self) -> list[GnssFix]:
        fixes: list[GnssFix] = []
        while True:
            try:
                report, at, wall = self._reports.get_nowait()
            except queue.Empty:
                break
            fixes.extend(self._take(report, at, wall))
        if self._tpv is not None and self._monotonic() - self._tpv_last_at >= QUIET_GAP_S:
            fixes.append(self._emit())
        if fixes:
            self._last_fix = fixes[-1]
        if not fixes and self._error is not None:
            raise HardwareError(f"gpsd at {self.host}:{self.port}: {self._error}")
        return fixes

    def _take(self, report: dict[str, Any], at: float, wall: float) -> list[GnssFix]:
        s = self._stats
        s.sentences += 1
        kind = report.get("class")
        if "_bad" in report:
            s.malformed += 1
            s.errors_by_kind["parse"] = s.errors_by_kind.get("parse", 0) + 1
            s.last_error = f"parse: not JSON in {report['_bad']!r}"
            return []
        if kind == "TOFF":
            real = _number(report, "real_sec")
            clock = _number(report, "clock_sec")
            if real is not None and clock is not None:
                real += (_number(report, "real_nsec") or 0.0) / 1e9
                clock += (_number(report, "clock_nsec") or 0.0) / 1e9
                # The system clock read ``wall`` at monotonic ``at``: map the burst's start.
                self._toff[f"{real:.3f}"] = at - (wall - clock)
                while len(self._toff) > 8:
                    self._toff.pop(next(iter(self._toff)))
            return []
        if kind == "SKY":
            self._sky = report
            return []
        if kind != "TPV":
            s.unsupported += 1
            return []
        stamp = _time(report.get("time"))
        fixes: list[GnssFix] = []
        if self._tpv is not None and stamp != self._tpv_time:
            fixes.append(self._emit())
        if self._tpv is None:
            self._tpv_first_at = at
        self._tpv, self._tpv_time, self._tpv_last_at = report, stamp, at
        return fixes

    def _emit(self) -> GnssFix:
        tpv, stamp = self._tpv or {}, self._tpv_time
        self._tpv = None
        mode = tpv.get("mode") if isinstance(tpv.get("mode"), int) else 0
        lat, lon = _number(tpv, "lat"), _number(tpv, "lon")
        if lat is not None and not -90 <= lat <= 90 or lon is not None and not -180 <= lon <= 180:
            lat = lon = None
        valid = mode >= 2 and lat is not None and lon is not None
        status = tpv.get("status") if isinstance(tpv.get("status"), int) else 1
        received_at = self._tpv_first_at
        if stamp is not None:
            received_at = self._toff.get(f"{stamp.timestamp():.3f}", received_at)
        sky = self._sky
        used = sky.get("uSat")
        if not isinstance(used, int):
            sats = sky.get("satellites")
            used = sum(1 for x in sats if isinstance(x, dict) and x.get("used")) \
                if isinstance(sats, list) else None
        self._stats.fixes += 1
        return GnssFix(
            received_at=received_at,
            time_utc=stamp,
            valid=valid,
            latitude=lat if valid else None,
            longitude=lon if valid else None,
            altitude_m=_number(tpv, "altMSL", "alt") if valid and mode >= 3 else None,
            speed_mps=_number(tpv, "speed") if valid else None,
            course_deg=_number(tpv, "track") if valid else None,
            quality=_STATUS_QUALITY.get(status, 1) if valid else 0,
            satellites=used,
            hdop=_number(sky, "hdop"),
            pdop=_number(sky, "pdop"),
            vdop=_number(sky, "vdop"),
            mode=max(1, min(3, mode)) if valid else 1,
        )

    @property
    def last_fix(self) -> GnssFix | None:
        return self._last_fix

    @property
    def stats(self) -> NmeaStats:
        return self._stats

    def close(self) -> None:
        self._stop.set()
        client = self._client
        if client is not None and client.sock is not None:
            try:
                client.sock.shutdown(2)
            except OSError:
                pass
        self._thread.join(timeout=2.0)


__all__ = ["GpsdGnss", "QUIET_GAP_S"]
