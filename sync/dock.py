"""The dock service's edge: MQTT in, the protocol's ``Ingest`` per device, the archive out.

One paho client (as the ``dock`` user) subscribes to every device's upward topics. Each
message goes to that device's ``Ingest``; its outputs are carried out here, in order:
publishes go back through the broker, chunks are written durably into the archive, a
complete file is checked against its seal and receipted. Several devices docked at once
are simply several ``Ingest`` objects; paho delivers messages on one thread, so the
archive sees one writer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sync import protocol as p
from sync.archive import Archive, ArchiveError
from sync.broker import client as mqtt_client
from sync.enrollment import dock_key

log = logging.getLogger(__name__)


@dataclass
class DeviceProgress:
    device: str
    files: int = 0
    received_bytes: int = 0
    total_bytes: int = 0
    receipts: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.received_bytes / elapsed
        left = (self.total_bytes - self.received_bytes) / rate if rate > 0 else float("inf")
        eta = "—" if left == float("inf") else f"{left:.0f} s"
        return (f"{self.device}: {self.receipts}/{self.files} files, "
                f"{self.received_bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB, "
                f"{rate / 1e6:.1f} MB/s, {eta} left")


class DockService:
    def __init__(self, dock_dir: Path, archive_dir: Path, host: str, port: int, *,
                 tls: tuple[Path, Path, Path] | None = None, dock_id: str = "dock",
                 on_progress: Callable[[DeviceProgress], None] | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.dock_dir = Path(dock_dir)
        self.archive = Archive(archive_dir, dock_dir, dock_key(dock_dir), dock_id)
        self.dock_id = dock_id
        self._now = now  # the dock's clock: the time reference devices are set from
        self._ingests: dict[str, p.Ingest] = {}
        self.progress: dict[str, DeviceProgress] = {}
        self._on_progress = on_progress
        self.invalid: list[tuple[str, str]] = []
        self._connected = threading.Event()
        ca, cert, key = tls if tls else (None, None, None)
        self.client = mqtt_client(host, port, f"dock-{dock_id}", ca=ca, cert=cert, key=key)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            raise ConnectionError("dock could not connect to the broker")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.archive.close()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("dock refused by the broker: %s", reason)
            return
        client.subscribe(p.dock_subscription(), qos=p.QOS)
        self._connected.set()

    # --- messages -----------------------------------------------------------------------------

    def _ingest(self, device: str) -> p.Ingest:
        if device not in self._ingests:
            partial, done = self.archive.resume_state(device)
            self._ingests[device] = p.Ingest(
                device, stored=partial,
                archived={fid: p.Receipt(s.receipt, s.signature) for fid, s in done.items()})
        return self._ingests[device]

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            topic = p.parse_topic(message.topic)
        except p.ProtocolError as exc:
            self.invalid.append((message.topic, str(exc)))
            log.warning("ignored %s: %s", message.topic, exc)
            return
        if topic.kind is p.Kind.HELLO:
            # A new session starts from what is on disk, not from what a session cut short
            # left in memory: the durable offsets and receipts are the truth.
            self._ingests.pop(topic.device, None)
        ingest = self._ingest(topic.device)
        try:
            outputs = ingest.receive(message.topic, message.payload, self._now())
            self._carry_out(topic.device, ingest, outputs)
        except Exception:  # one device's trouble must not stop the dock for the others
            log.exception("handling %s failed", message.topic)

    def _carry_out(self, device: str, ingest: p.Ingest, outputs: list[Any]) -> None:
        queue = list(outputs)
        progress = self.progress.setdefault(device, DeviceProgress(device))
        while queue:
            out = queue.pop(0)
            match out:
                case p.Publish(topic, payload, qos):
                    self.client.publish(topic, payload, qos=qos)
                case p.DeviceHello(hello):
                    self.archive.docked(device, time.time(),
                                        [(f.file_id, f.name, f.activity) for f in hello.files])
                    progress.files = len(hello.files)
                    progress.total_bytes = sum(f.size for f in hello.files)
                case p.OpenFile(init):
                    try:
                        self.archive.begin(device, init.file_id, init.name, init.activity,
                                           init.size, init.sha256, init.manifest, init.kind)
                    except ArchiveError as exc:
                        queue[:0] = ingest.file_rejected(init.file_id, str(exc), retry=False)
                case p.StoreChunk(file_id, offset, data):
                    try:
                        self.archive.store_chunk(device, file_id, offset, data)
                        progress.received_bytes += len(data)
                        queue[:0] = ingest.chunk_stored(file_id, offset, len(data))
                    except OSError as exc:
                        queue[:0] = ingest.chunk_failed(file_id, offset, str(exc))
                case p.CompleteFile(file_id, init):
                    try:
                        stored = self.archive.complete(device, file_id)
                        progress.receipts += 1
                        queue[:0] = ingest.file_verified(file_id, stored.receipt, stored.signature)
                    except ArchiveError as exc:
                        progress.rejected += 1
                        log.warning("%s: %s", device, exc)
                        queue[:0] = ingest.file_rejected(file_id, str(exc))
                case p.DiscardFile(file_id, reason):
                    self.archive.discard(device, file_id)
                case p.InvalidMessage(topic, reason):
                    self.invalid.append((topic, reason))
                    log.warning("%s: %s", topic, reason)
        if self._on_progress is not None:
            self._on_progress(progress)
