"""The recorder's docking hook: when it is on external power and the dock answers, sync.

The agent's core says *docked* when external power comes (R13.1: upload starts without
anyone asking) and *undocked* when it goes; the agent passes that to a ``DockLink``. The
link finds the dock (``find_dock``: the configured broker on a Pi, the simulated dock's in
a simulation), checks that it can be reached, and runs one ``sync.DeviceSync`` session on
a thread of its own, so the agent's loop goes on meanwhile. A dock that cannot be reached
is tried again every ``retry_s`` while the recorder stays on external power (a charger is
not a dock). Undocking ends a session at once; what the dock receipted stays receipted.

The same link runs on real hardware and in the simulator; the simulator only waits for a
session to end before it lets virtual time go on (a cradle holds the device while the
transfer runs).
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from device.clock import Clock
from device.power import Power
from firmware_py.evidence.audit import AuditLog
from sync.credentials import DockAddress
from sync.device_sync import DeviceSync, SessionResult

log = logging.getLogger(__name__)

REACH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SyncPaths:
    """What a session reads and writes on the device."""

    root: Path  # the device root: keys/mqtt, the dock's receipt key, sync state
    evidence: Path
    audit_log: Path


def reachable(address: DockAddress, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the dock's broker opens, else why not."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{address.host}:{address.port}: {exc.strerror or exc}"


class DockLink:
    """The agent's ``Docking``: one sync session per docking, on its own thread."""

    def __init__(self, paths: SyncPaths, device_id: str, audit: AuditLog, clock: Clock,
                 power: Power, find_dock: Callable[[], DockAddress | None], *,
                 correct_above_s: float, retry_s: float = 30.0,
                 session_timeout_s: float = 600.0) -> None:
        self._paths = paths
        self._device = device_id
        self._audit = audit
        self._clock = clock
        self._power = power
        self._find_dock = find_dock
        self._correct_above_s = correct_above_s
        self._retry_s = retry_s
        self._timeout_s = session_timeout_s
        self._lock = threading.Lock()
        self._undocked = threading.Event()
        self._thread: threading.Thread | None = None
        self.session: DeviceSync | None = None  # the session running now, if any
        self.results: list[SessionResult] = []  # one per session, in order
        # Called on the link's thread with each session just before it runs (the simulator
        # watches a session through this to inject its docking faults).
        self.on_session: list[Callable[[DeviceSync], None]] = []
        # Called on the link's thread before each session offers anything (the composition
        # root signs the device's chain head here, so every docking carries one).
        self.before_session: list[Callable[[], None]] = []

    # --- Docking ------------------------------------------------------------------------

    def docked(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._undocked.clear()
            self._thread = threading.Thread(target=self._dock, name=f"dock-link-{self._device}",
                                            daemon=True)
            self._thread.start()

    def undocked(self) -> None:
        self._undocked.set()
        session = self.session
        if session is not None:
            session.undock()

    # --- for the composition root and the simulator --------------------------------------

    @property
    def busy(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the current docking's work is done; True when it is."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def close(self) -> None:
        self.undocked()
        self.wait(self._timeout_s)

    # --- the link's thread ----------------------------------------------------------------

    def _dock(self) -> None:
        told = False
        while not self._undocked.is_set():
            try:
                address = self._find_dock()
            except Exception as exc:  # e.g. the TLS files of enrolment are missing
                address, why = None, str(exc)
            else:
                why = "no dock configured" if address is None else reachable(address)
            if why is None and address is not None:
                self._session(address)
                return
            if not told:  # once per docking, not every retry
                told = True
                self._audit.append("dock_unreachable", {"why": why, "retry_s": self._retry_s})
            if self._undocked.wait(self._retry_s):
                return

    def _session(self, address: DockAddress) -> None:
        try:
            battery = int(self._power.read().capacity_percent)
        except Exception:  # the gauge's trouble is the agent's to report, not the sync's
            battery = None
        for prepare in self.before_session:
            try:
                prepare()
            except Exception:  # the sync goes on; what is missing shows at the dock
                log.exception("%s: preparing the docking failed", self._device)
        try:
            session = DeviceSync(self._paths.root, self._device, address.host, address.port,
                                 tls=address.tls, audit=self._audit, battery_percent=battery,
                                 charging=True,  # this hook runs because it sits on the dock
                                 clock=self._clock, evidence=self._paths.evidence,
                                 audit_log=self._paths.audit_log,
                                 correct_above_s=self._correct_above_s)
        except Exception as exc:
            log.exception("%s: sync session could not start", self._device)
            self._audit.append("sync_failed", {"error": f"{type(exc).__name__}: {exc}"})
            return
        self.session = session
        try:
            for listener in self.on_session:
                listener(session)
            if self._undocked.is_set():
                session.undock()
            result = session.run(timeout=self._timeout_s)
        except Exception as exc:
            log.exception("%s: sync session failed", self._device)
            self._audit.append("sync_failed", {"error": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            self.session = None
        self.results.append(result)
