"""The dock a simulated recorder is dropped into: embedded broker, dock service, archive.

Given to a ``Simulation``, it is the dock the recorder's ``DockLink`` finds while the
simulated battery sits in the cradle: the device is enrolled with it, a local broker
(Mosquitto on loopback when installed, else the embedded amqtt) and a real ``DockService`` are started on first use, and each sync session — paho on both
sides, the wire protocol, seal checks, signed receipts, deletion on the device — is the
device's own, started by its docking hook exactly as on a Pi. The simulation holds virtual
time while a session runs, as a cradle holds the device until the transfer is done.

Faults at the dock are injected here: a docking whose scenario event names a ``fault``
(``scenario.DOCK_FAULTS``) goes wrong once ``after_mb`` have reached the dock — the device
is lifted out (its session ends; the rest goes at the next docking), or the dock crashes
after storing a file and before its receipt (``CrashingDock``) and comes back on the same
archive. (A broker that goes away is tested against Mosquitto, which can be stopped under
its clients and started again: tests/test_sync_faults.py.)
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from dock.broker import EmbeddedBroker, LoopbackMosquitto, local_broker
from dock.enrollment import enroll_device
from dock.service import DeviceProgress, DockService
from sync import protocol as p
from sync.device_sync import DeviceSync, SessionResult
from simulator.harness.scenario import ScenarioEvent
from sync.credentials import DockAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arrival:
    """What the simulated dock learns of a recorder dropped into it."""

    device_id: str
    unit: str
    device_root: Path
    dock_dir: Path  # the agency's keys and the enrolled devices
    event: ScenarioEvent | None  # the scenario's dock event: its fault and after_mb
    true_utc: Callable[[], float]  # the simulated world's true time: the dock's clock


class SimulatedDock:
    """The dock of a simulated shift; ``sessions`` has one summary per sync session."""

    def __init__(self, archive: Path) -> None:
        self.archive = Path(archive)
        self._broker: LoopbackMosquitto | EmbeddedBroker | None = None
        self._dock: DockService | None = None
        self._arrival: Arrival | None = None  # the recorder docked last
        self._fault: tuple[str, int] = ("", 0)  # this docking's fault and after how many bytes
        self._happened: dict[str, Any] = {}
        self._injector: threading.Thread | None = None
        self._session_began: float | None = None
        self.sessions: list[dict[str, Any]] = []

    def reach(self, arrival: Arrival) -> DockAddress:
        """A recorder on the cradle asks for its dock: enrol it, start what is not running,
        and arm this docking's fault."""
        self._arrival = arrival
        enroll_device(arrival.device_root, arrival.dock_dir, arrival.device_id, arrival.unit)
        if self._broker is None:
            # Mosquitto on loopback when it is installed, amqtt when not (dock.broker).
            self._broker = local_broker()
            self._broker.start()
        event = arrival.event
        fault = event.fault if event is not None else ""
        after = int((event.amount if event is not None else 0.0) * 1e6)
        if fault == "dock_crash" and self._dock is not None:
            self._dock.stop()
            self._dock = None
        if self._dock is None:
            self._dock = self._start_dock(CrashingDock if fault == "dock_crash" else DockService,
                                          after_bytes=after)
        self._fault = (fault, after)
        self._happened = {}
        return DockAddress(self._broker.host, self._broker.port, None)

    def session_started(self, session: DeviceSync, running: Callable[[], bool]) -> None:
        """A session of the recorder's is about to run: watch it for this docking's fault."""
        self._session_began = time.monotonic()
        fault, after = self._fault
        if not fault:
            return
        assert self._arrival is not None
        device = self._arrival.device_id
        self._injector = threading.Thread(target=self._inject, name=f"dock-fault-{device}",
                                          args=(fault, after, device, session, running),
                                          daemon=True)
        self._injector.start()

    def session_ended(self, result: SessionResult | None) -> dict[str, Any]:
        """The summary of the session that just ended, as the timeline shows it."""
        if self._injector is not None:
            self._injector.join()
            self._injector = None
        facts: dict[str, Any] = {"archive": str(self.archive)}
        if result is None:
            facts["error"] = "the session did not run (see the audit log's sync_failed)"
        else:
            facts = {**result.summary(), "archive": str(self.archive)}
        if self._session_began is not None:  # the docking's wall time, and through what
            facts["wall_s"] = round(time.monotonic() - self._session_began, 2)
            facts["broker"] = ("mosquitto" if isinstance(self._broker, LoopbackMosquitto)
                               else "amqtt")
            self._session_began = None
        facts.update(self._happened)
        self._fault = ("", 0)
        self.sessions.append(facts)
        return facts

    def _start_dock(self, kind: type[DockService], after_bytes: int = 0) -> DockService:
        assert self._broker is not None
        extra = {"after": 1, "after_bytes": after_bytes} if kind is CrashingDock else {}
        # The dock keeps true time: in the simulation that is the scenario's UTC, read from
        # the recorder docked now (after a restart that is a new world).
        assert self._arrival is not None
        dock = kind(self._arrival.dock_dir, self.archive, self._broker.host, self._broker.port,
                    now=lambda: self._arrival.true_utc(), **extra)
        dock.start()
        return dock

    def _inject(self, fault: str, after: int, device: str, session: DeviceSync,
                running: Callable[[], bool]) -> None:
        """Wait until ``after`` bytes of this device have reached the dock, then do it."""
        assert self._dock is not None and self._broker is not None
        dock = self._dock
        if fault == "dock_crash":
            assert isinstance(dock, CrashingDock)
            while running():
                if dock.crashed.wait(0.01):
                    break
            if not dock.crashed.is_set():
                self._happened = {"fault": fault, "happened": False}
                return
            dock.stop()
            self._dock = self._start_dock(DockService)  # back on the same archive
            self._happened = {"fault": fault, "happened": True,
                              "unsent_receipt": dock.unsent_receipt}
            return
        base = _received(dock, device)  # what earlier dockings brought
        while running() and _received(dock, device) - base < after:
            time.sleep(0.005)
        if not running():
            self._happened = {"fault": fault, "happened": False}
            return
        at = _received(dock, device) - base
        session.undock()  # undock_mid_transfer: the officer lifts the device out
        self._happened = {"fault": fault, "happened": True, "at_bytes": at}

    def close(self) -> None:
        if self._dock is not None:
            self._dock.stop()
        if self._broker is not None:
            self._broker.stop()


def _received(dock: DockService, device: str) -> int:
    progress = dock.progress.get(device)
    return progress.received_bytes if progress is not None else 0
class CrashingDock(DockService):
    """A dock service that dies right after archiving its ``after``-th file: the receipt is
    signed and in the index, and never sent. Dying is what a SIGKILL leaves behind: no
    MQTT DISCONNECT (the broker sees the connection drop), no further message handled,
    nothing more made durable; only what was on disk survives. Restart the dock by starting
    a new ``DockService`` on the same archive."""

    def __init__(self, *args: Any, after: int = 1, after_bytes: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._after = after
        self._after_bytes = after_bytes  # and only once this much of the device's bytes came
        self.crashed = threading.Event()
        self.unsent_receipt: str | None = None  # the file whose receipt died with the dock

    def _handle(self, topic_text: str, payload: bytes, arrived: float) -> None:
        if not self.crashed.is_set():
            super()._handle(topic_text, payload, arrived)

    def _flush(self, wait: bool = False) -> None:
        if not self.crashed.is_set():
            super()._flush(wait)

    def _acknowledge(self) -> None:
        if self.crashed.is_set():
            self._made_durable.clear()  # a dead process records and sends nothing more
            return
        super()._acknowledge()

    def _archive_step(self, device: str, ingest: p.Ingest, progress: DeviceProgress,
                      out: Any, defer: bool = False) -> list[Any]:
        if self.crashed.is_set():
            return []
        outputs = super()._archive_step(device, ingest, progress, out, defer)
        receipted = any(isinstance(o, p.Publish) and "/receipt/" in o.topic for o in outputs)
        if (receipted and progress.receipts >= self._after
                and progress.received_bytes >= self._after_bytes):
            self.unsent_receipt = out.file_id
            self.archive.commit_completed()  # archived and in the index, as said above
            self._die()
            return []
        return outputs

    def _die(self) -> None:
        self.crashed.set()
        self.archive.abandon()
        # Stopping paho's network thread sends nothing; closing its socket after it is the
        # connection a killed process leaves: the broker sees it drop.
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        if not self.crashed.is_set():
            super().stop()
            return
        self.client.loop_stop()
        self._stop_threads()
