"""The dock a simulated device is dropped into: embedded broker, dock service, archive.

``bodycam simulate`` passes a ``SimulatedDock`` to the simulation; at each docking it runs
a real sync session — paho on both sides, the wire protocol, seal checks, signed receipts,
deletion on the device — over the embedded broker, so the demo needs nothing installed.
The session runs in wall time while virtual time waits, as a docking cradle would hold the
device until the transfer is done.

Faults at the dock are injected here too: ``CrashingDock`` is a dock service that dies
between archiving a file and sending its receipt, as a dock process killed at the worst
moment would.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from dock.broker import EmbeddedBroker
from dock.enrollment import enroll_device
from dock.service import DeviceProgress, DockService
from sync import protocol as p
from sync.device_sync import DeviceSync

log = logging.getLogger(__name__)


class SimulatedDock:
    """The dock of a simulated shift. A docking whose scenario event names a ``fault``
    (``simulator.scenario.DOCK_FAULTS``) goes wrong once ``after_mb`` have reached the dock:
    the device is lifted out (the session ends, the rest goes at the next docking), the dock
    crashes after storing a file and before its receipt (and comes back on the same
    archive). (A broker that goes away is tested against Mosquitto, which can be stopped
    under its clients and started again: tests/test_sync_faults.py.)"""

    def __init__(self, archive: Path) -> None:
        self.archive = Path(archive)
        self._broker: EmbeddedBroker | None = None
        self._dock: DockService | None = None
        self._sim: Any = None  # the simulation docked last: its world keeps the true time
        self.sessions: list[dict[str, Any]] = []

    def __call__(self, sim: Any) -> dict[str, Any]:
        self._sim = sim
        device = sim.config.device.device
        enroll_device(sim.out / "device", sim.dock_dir, device.id, device.unit)
        if self._broker is None:
            self._broker = EmbeddedBroker()
            self._broker.start()
        event = getattr(sim, "docking", None)
        fault = event.fault if event is not None else ""
        after = int((event.amount if event is not None else 0.0) * 1e6)
        if fault == "dock_crash" and self._dock is not None:
            self._dock.stop()
            self._dock = None
        if self._dock is None:
            self._dock = self._start_dock(CrashingDock if fault == "dock_crash" else DockService,
                                          after_bytes=after)
        assert self._broker is not None
        battery = int(sim.world.battery.percent)
        session = DeviceSync(sim.out / "device", device.id, self._broker.host, self._broker.port,
                             evidence=sim.world.storage.path, audit_log=sim.audit.path,
                             correct_above_s=sim.config.policy.selfcheck.clock_correct_above_s,
                             audit=sim.audit, battery_percent=battery,
                             clock=sim.world.hardware.clock)
        happened: dict[str, Any] = {}
        runner = threading.Thread(target=session.run, kwargs={"timeout": 600},
                                  name=f"dock-session-{device.id}")
        runner.start()
        if fault:
            happened = self._inject(fault, after, device.id, session, runner)
        runner.join()
        result = session.result
        facts = {"offered": result.offered, "receipted": len(result.receipted),
                 "deleted": len(result.deleted), "failed": len(result.failed),
                 "bytes": result.bytes_sent, "archive": str(self.archive),
                 "clock_offset_s": None if result.clock_offset_s is None
                 else round(result.clock_offset_s, 3), **happened}
        self.sessions.append(facts)
        return facts

    def _start_dock(self, kind: type[DockService], after_bytes: int = 0) -> DockService:
        assert self._broker is not None
        extra = {"after": 1, "after_bytes": after_bytes} if kind is CrashingDock else {}
        # The dock keeps true time: in the simulation that is the scenario's UTC, read from
        # the simulation docked now (after a restart that is a new world).
        dock = kind(self._sim.dock_dir, self.archive, self._broker.host, self._broker.port,
                    now=lambda: self._sim.world.wall.true_utc(), **extra)
        dock.start()
        return dock

    def _inject(self, fault: str, after: int, device: str, session: DeviceSync,
                runner: threading.Thread) -> dict[str, Any]:
        """Wait until ``after`` bytes of this device have reached the dock, then do it."""
        assert self._dock is not None and self._broker is not None
        dock = self._dock
        if fault == "dock_crash":
            assert isinstance(dock, CrashingDock)
            while runner.is_alive():
                if dock.crashed.wait(0.01):
                    break
            if not dock.crashed.is_set():
                return {"fault": fault, "happened": False}
            dock.stop()
            self._dock = self._start_dock(DockService)  # back on the same archive
            return {"fault": fault, "happened": True, "unsent_receipt": dock.unsent_receipt}
        base = _received(dock, device)  # what earlier dockings brought
        while runner.is_alive() and _received(dock, device) - base < after:
            time.sleep(0.005)
        if not runner.is_alive():
            return {"fault": fault, "happened": False}
        at = _received(dock, device) - base
        session.undock()  # undock_mid_transfer
        return {"fault": fault, "happened": True, "at_bytes": at}

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

    def _flush(self) -> None:
        if not self.crashed.is_set():
            super()._flush()

    def _archive_step(self, device: str, ingest: p.Ingest, progress: DeviceProgress,
                      out: Any) -> list[Any]:
        if self.crashed.is_set():
            return []
        outputs = super()._archive_step(device, ingest, progress, out)
        receipted = any(isinstance(o, p.Publish) and "/receipt/" in o.topic for o in outputs)
        if (receipted and progress.receipts >= self._after
                and progress.received_bytes >= self._after_bytes):
            self.unsent_receipt = out.file_id
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
        self._inbox.put(None)
        self._worker.join()
