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
from pathlib import Path
from typing import Any

from sync import protocol as p
from sync.dock import DeviceProgress
from sync.broker import EmbeddedBroker
from sync.device_sync import DeviceSync
from sync.dock import DockService
from sync.enrollment import enroll_device

log = logging.getLogger(__name__)


class SimulatedDock:
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
            # The dock keeps true time: in the simulation that is the scenario's UTC, read
            # from the simulation docked now (after a restart that is a new world).
            self._dock = DockService(sim.dock_dir, self.archive, self._broker.host,
                                     self._broker.port, now=lambda: self._sim.world.wall.true_utc())
            self._dock.start()
        assert self._broker is not None
        battery = int(sim.world.battery.percent)
        session = DeviceSync(sim.out / "device", device.id, self._broker.host, self._broker.port,
                             audit=sim.audit, battery_percent=battery,
                             clock=sim.world.hardware.clock)
        result = session.run(timeout=600)
        facts = {"offered": result.offered, "receipted": len(result.receipted),
                 "deleted": len(result.deleted), "failed": len(result.failed),
                 "bytes": result.bytes_sent, "archive": str(self.archive),
                 "clock_offset_s": None if result.clock_offset_s is None
                 else round(result.clock_offset_s, 3)}
        self.sessions.append(facts)
        return facts

    def close(self) -> None:
        if self._dock is not None:
            self._dock.stop()
        if self._broker is not None:
            self._broker.stop()


class CrashingDock(DockService):
    """A dock service that dies right after archiving its ``after``-th file: the receipt is
    signed and in the index, and never sent. Dying is what a SIGKILL leaves behind: no
    MQTT DISCONNECT (the broker sees the connection drop), no further message handled,
    nothing more made durable; only what was on disk survives. Restart the dock by starting
    a new ``DockService`` on the same archive."""

    def __init__(self, *args: Any, after: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._after = after
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
        if isinstance(out, p.CompleteFile) and progress.receipts >= self._after:
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
