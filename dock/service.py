"""The dock service's edge: MQTT in, the protocol's ``Ingest`` per device, the archive out.

One paho client (as the ``dock`` user) subscribes to every device's upward topics. Its
network thread only reads: each message is queued, stamped with its arrival time, for one
archive thread, which hands it to that device's ``Ingest`` and carries out the outputs in
order — publishes go back through the broker, chunks are written into the archive, a
complete file is checked against its seal and receipted. Several devices docked at once
are simply several ``Ingest`` objects; one thread does all the archive's work, so the
archive sees one writer.

Chunks are acknowledged only once durable, but durability is paid per batch, not per
chunk, and not on the archive thread: the archive thread writes the chunks that are
waiting (up to ``BATCH_BYTES``) and hands the batch to a durability thread, which fsyncs
each file once and wakes the archive thread; that one records the offsets in the index and
acknowledges them all. So the network thread reads, the archive thread writes the next
batch and the disk flushes the last one, all at the same time. Whatever reads or changes
what is stored (a completed file, a discarded one, a new docking) first waits until every
batch handed over is durable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dock.archive import Archive, ArchiveError, make_durable
from dock.enrollment import dock_key
from dock.fair import FairQueue
from dock.registry import is_withdrawn
from sync import protocol as p
from sync.mqtt import client as mqtt_client
from sync.mqtt import close as mqtt_close

log = logging.getLogger(__name__)

BATCH_BYTES = 2 << 20  # chunks stored between two fsyncs, at most: an ack is never far off
# Put in the inbox by the durability thread: a batch is durable, its acks can go.
_WAKE: tuple[str, bytes, float] = ("", b"", 0.0)


@dataclass
class DeviceProgress:
    """What one device has brought: counters over the dock's life, and the present
    session's share of them (from its hello) for the progress line."""

    device: str
    files: int = 0  # offered in the present session
    received_bytes: int = 0
    total_bytes: int = 0  # offered in the present session
    receipts: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)
    session_bytes_from: int = 0  # received_bytes at the present session's hello
    session_receipts_from: int = 0

    def new_session(self, files: int, total_bytes: int) -> None:
        self.files, self.total_bytes = files, total_bytes
        self.session_bytes_from, self.session_receipts_from = self.received_bytes, self.receipts
        self.started = time.monotonic()

    @property
    def session_bytes(self) -> int:
        return self.received_bytes - self.session_bytes_from

    @property
    def session_receipts(self) -> int:
        return self.receipts - self.session_receipts_from

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.session_bytes / elapsed
        left = (self.total_bytes - self.session_bytes) / rate if rate > 0 else float("inf")
        eta = "—" if left == float("inf") else f"{max(left, 0):.0f} s"
        return (f"{self.device}: {self.session_receipts}/{self.files} files, "
                f"{self.session_bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB, "
                f"{rate / 1e6:.1f} MB/s, {eta} left")


class DockService:
    def __init__(self, dock_dir: Path, archive_dir: Path, host: str, port: int, *,
                 tls: tuple[Path, Path, Path] | None = None, dock_id: str = "dock",
                 on_progress: Callable[[DeviceProgress], None] | None = None,
                 now: Callable[[], float] = time.time,
                 chunk_limit: int = p.MAX_CHUNK_BYTES) -> None:
        self.dock_dir = Path(dock_dir)
        self.archive = Archive(archive_dir, dock_dir, dock_key(dock_dir), dock_id)
        self.dock_id = dock_id
        self._now = now  # the dock's clock: the time reference devices are set from
        self._ingests: dict[str, p.Ingest] = {}
        self.chunk_limit = chunk_limit  # the largest chunk the dock takes (told in ``want``)
        self.progress: dict[str, DeviceProgress] = {}
        self._on_progress = on_progress
        self.invalid: list[tuple[str, str]] = []
        self._connected = threading.Event()
        self._withdrawn: dict[str, bool] = {}  # device → withdrawn (read again at each hello)
        # (topic, payload, arrival time), or None to stop: the network thread's only output.
        self._inbox: queue.Queue[tuple[str, bytes, float] | None] = queue.Queue()
        # Chunks written but not yet handed over: (device, ingest, file_id, offset, size).
        self._unsynced: list[tuple[str, p.Ingest, str, int, int]] = []
        # Batches handed to the durability thread, and what it made of them, in order.
        self._to_durable: queue.Queue[tuple[list[Any], list[Any]] | None] = queue.Queue()
        self._made_durable: deque[tuple[list[Any], list[Any], OSError | None]] = deque()
        self._wakes = 0  # _WAKE markers taken from the inbox and not yet answered
        # Files whose every byte arrived, completed together at the end of a round: one
        # wait for durability, one fsync per folder and one commit for all of them.
        self._completing: list[tuple[str, p.Ingest, DeviceProgress, p.CompleteFile]] = []
        self._worker = threading.Thread(target=self._work, name=f"dock-{dock_id}-archive",
                                         daemon=True)
        self._durability = threading.Thread(target=self._make_durable,
                                            name=f"dock-{dock_id}-durability", daemon=True)
        ca, cert, key = tls if tls else (None, None, None)
        self.client = mqtt_client(host, port, f"dock-{dock_id}", ca=ca, cert=cert, key=key)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._durability.start()
        self._worker.start()
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            self._stop_threads()
            raise ConnectionError("dock could not connect to the broker")

    def stop(self) -> None:
        mqtt_close(self.client)
        self._stop_threads()
        self.archive.close()

    def _stop_threads(self) -> None:
        if self._worker.is_alive():
            self._inbox.put(None)
            self._worker.join()
        if self._durability.is_alive():
            self._to_durable.put(None)
            self._durability.join()

    def settle(self) -> None:
        """Wait until every message received so far has been handled and every chunk
        stored acknowledged (for tests and tools that read the archive while the dock runs)."""
        self._inbox.join()
        self._to_durable.join()
        self._inbox.join()  # the durability thread's last wake-up

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
                device, stored=partial, chunk_limit=self.chunk_limit,
                archived={fid: p.Receipt(s.receipt, s.signature) for fid, s in done.items()})
        return self._ingests[device]

    def refuses(self, device: str, fresh: bool = False) -> bool:
        """True for a device withdrawn at this dock (``bodycam dock withdraw``): whatever it
        sends is ignored. Read from the register at a device's first message and at each
        hello (a session's start), so a withdrawal counts from the next session on."""
        if fresh or device not in self._withdrawn:
            self._withdrawn[device] = is_withdrawn(self.dock_dir, device)
        return self._withdrawn[device]

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        arrived = self._now()
        if message.topic.endswith("/time/req"):
            # Answered here, not behind the queue of chunks: t3 must be when the answer
            # leaves, and a clock exchange measures the link, not the dock's backlog.
            self._answer_time(message.topic, message.payload, arrived)
            return
        self._inbox.put((message.topic, message.payload, arrived))

    def _answer_time(self, topic: str, payload: bytes, arrived: float) -> None:
        try:
            parsed, request = p.decode_message(topic, payload)
        except p.ProtocolError as exc:
            self.invalid.append((topic, str(exc)))
            log.warning("ignored %s: %s", topic, exc)
            return
        if parsed.direction != p.UP or not isinstance(request, p.TimeRequest):
            self.invalid.append((topic, "not a time request to the dock"))
            return
        if self.refuses(parsed.device):
            self.invalid.append((topic, f"device {parsed.device} is withdrawn"))
            return
        response = p.TimeResponse(request.t1, arrived, self._now())
        self.client.publish(response.topic(parsed.device), response.encode(), qos=p.QOS)

    # --- the archive thread -------------------------------------------------------------------

    def _work(self) -> None:
        """Take what the network thread queued, per device, and serve the devices in turn
        (``dock.fair``: a fair share of bytes each, deficit round robin) until a batch
        (``BATCH_BYTES``) is written; then hand it to be made durable, acknowledge what is,
        and archive the files completed. A device with a huge backlog, larger chunks or a
        window larger than it should be fills its own queue, not the others' turns: four
        docked devices each get a fair share."""
        waiting: FairQueue[tuple[str, bytes, float]] = FairQueue()
        stopping = False
        while True:
            if not waiting and not stopping:
                stopping = self._take(self._inbox.get(), waiting)  # idle: wait
            while True:  # and everything else that is there now
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                stopping = self._take(item, waiting) or stopping
            handled, batch = 0, 0
            try:
                while waiting and batch < BATCH_BYTES:
                    _, (topic, payload, arrived) = waiting.take()
                    self._handle(topic, payload, arrived)
                    handled += 1
                    batch += len(payload)
                self._flush(wait=stopping and not waiting)
                self._acknowledge()
                self._complete_waiting()
            finally:
                for _ in range(handled + self._wakes):
                    self._inbox.task_done()
                self._wakes = 0
            if stopping and not waiting:
                self._inbox.task_done()  # the stop marker
                return

    def _take(self, item: tuple[str, bytes, float] | None,
              waiting: FairQueue[tuple[str, bytes, float]]) -> bool:
        """Queue one message under its device; True for the stop marker."""
        if item is None:
            return True
        if item is _WAKE:
            self._wakes += 1  # answered by _acknowledge, after this round
            return False
        parts = item[0].split("/", 4)  # bodycam/v1/up/<device>/...: no full parse here
        waiting.put(parts[3] if len(parts) > 3 else "", item, len(item[1]))
        return False

    def _handle(self, topic_text: str, payload: bytes, arrived: float) -> None:
        try:
            topic = p.parse_topic(topic_text)
        except p.ProtocolError as exc:
            self.invalid.append((topic_text, str(exc)))
            log.warning("ignored %s: %s", topic_text, exc)
            return
        if self.refuses(topic.device, fresh=topic.kind is p.Kind.HELLO):
            self.invalid.append((topic_text, f"device {topic.device} is withdrawn"))
            if topic.kind is p.Kind.HELLO:  # once a session, not once a chunk
                log.warning("ignored %s: device %s is withdrawn at this dock", topic_text,
                            topic.device)
            return
        if topic.kind is p.Kind.HELLO and _first_page(topic_text, payload):
            # A new session starts from what is on disk, not from what a session cut short
            # left in memory: the durable offsets and receipts are the truth. The later
            # pages of a long backlog continue the same session (rebuilding from the index
            # for each would read every receipt of the device again).
            self._flush(wait=True)
            self._ingests.pop(topic.device, None)
        ingest = self._ingest(topic.device)
        try:
            outputs = ingest.receive(topic_text, payload, arrived)
            self._carry_out(topic.device, ingest, outputs)
        except Exception:  # one device's trouble must not stop the dock for the others
            log.exception("handling %s failed", topic_text)

    def _flush(self, wait: bool = False) -> None:
        """Hand the chunks written so far to the durability thread; with ``wait``, return
        only once everything handed over is durable and acknowledged."""
        written = self.archive.detach_written()
        if written or self._unsynced:
            stores, self._unsynced = self._unsynced, []
            self._to_durable.put((written, stores))
        if wait:
            self._to_durable.join()
            self._acknowledge()

    def _make_durable(self) -> None:
        """The durability thread: fsync each batch handed over, in order, and wake the
        archive thread to record and acknowledge it."""
        while True:
            item = self._to_durable.get()
            try:
                if item is None:
                    return
                written, stores = item
                try:
                    self._made_durable.append((make_durable(written), stores, None))
                except OSError as exc:
                    self._made_durable.append(([], stores, exc))
                self._inbox.put(_WAKE)
            finally:
                self._to_durable.task_done()

    def _acknowledge(self) -> None:
        """Record the offsets of every batch made durable and acknowledge its chunks: one
        cumulative ack per file, per device."""
        while self._made_durable:
            ends, stores, error = self._made_durable.popleft()
            if error is not None:
                log.error("storing chunks failed: %s", error)
                for device, ingest, file_id, offset, _ in stores:
                    self._carry_out(device, ingest,
                                    ingest.chunk_failed(file_id, offset, str(error)))
                continue
            self.archive.record_offsets(ends)
            grouped: dict[int, tuple[str, p.Ingest, list[tuple[str, int, int]]]] = {}
            for device, ingest, file_id, offset, size in stores:
                self.progress[device].received_bytes += size
                grouped.setdefault(id(ingest), (device, ingest, []))[2].append(
                    (file_id, offset, size))
            for device, ingest, done in grouped.values():
                self._carry_out(device, ingest, ingest.chunks_stored(done))

    def _complete_waiting(self) -> None:
        """Archive and receipt the files completed this round, all at once: their chunks
        made durable, each checked and moved, the moves and the index made durable, and
        only then the receipts sent."""
        answers: list[tuple[str, p.Ingest, list[Any]]] = []
        while self._completing:
            self._flush(wait=True)  # may complete more files (a fin that waited for acks)
            completing, self._completing = self._completing, []
            for device, ingest, progress, out in completing:
                answers.append((device, ingest,
                                self._archive_step(device, ingest, progress, out, defer=True)))
        if not answers:
            return
        self.archive.commit_completed()
        for device, ingest, outputs in answers:
            self._carry_out(device, ingest, outputs)

    def _carry_out(self, device: str, ingest: p.Ingest, outputs: list[Any]) -> None:
        queue_ = list(outputs)
        progress = self.progress.setdefault(device, DeviceProgress(device))
        while queue_:
            out = queue_.pop(0)
            match out:
                case p.Publish(topic, payload, qos):
                    self.client.publish(topic, payload, qos=qos)
                case p.StoreChunk(file_id, offset, data):
                    try:
                        self.archive.write_chunk(device, file_id, offset, data)
                        self._unsynced.append((device, ingest, file_id, offset, len(data)))
                    except OSError as exc:
                        queue_[:0] = ingest.chunk_failed(file_id, offset, str(exc))
                case p.CompleteFile():
                    self._completing.append((device, ingest, progress, out))
                case p.OpenFile():
                    # Opening waits for nothing: ``begin`` only creates a file the archive
                    # has never seen (no chunk of it can be on its way to disk) and
                    # otherwise reads its row, which the protocol does not use.
                    queue_[:0] = self._archive_step(device, ingest, progress, out)
                case _:
                    # Anything else reads or changes what is stored: chunks written before
                    # it must be durable first, and in the index.
                    self._flush(wait=True)
                    queue_[:0] = self._archive_step(device, ingest, progress, out)
        if self._on_progress is not None:
            self._on_progress(progress)

    def _archive_step(self, device: str, ingest: p.Ingest, progress: DeviceProgress,
                      out: Any, defer: bool = False) -> list[Any]:
        """Carry out one output that touches the archive; returns what the protocol says next."""
        match out:
            case p.DeviceHello(hello):
                offered = [(f.file_id, f.name, f.activity) for f in hello.files]
                if hello.page == 0:
                    self.archive.docked(device, time.time(), offered)
                    progress.new_session(len(hello.files) + hello.more_files,
                                         sum(f.size for f in hello.files) + hello.more_bytes)
                else:  # the next page of the same docking
                    self.archive.offered(device, time.time(), offered)
            case p.OpenFile(init):
                try:
                    self.archive.begin(device, init.file_id, init.name, init.activity,
                                       init.size, init.sha256, init.manifest, init.kind)
                except ArchiveError as exc:
                    return ingest.file_rejected(init.file_id, str(exc), retry=False)
            case p.CompleteFile(file_id, init):
                try:
                    stored = self.archive.complete(device, file_id, defer=defer)
                except ArchiveError as exc:
                    progress.rejected += 1
                    log.warning("%s: %s", device, exc)
                    return ingest.file_rejected(file_id, str(exc))
                progress.receipts += 1
                return ingest.file_verified(file_id, stored.receipt, stored.signature)
            case p.DiscardFile(file_id, reason):
                self.archive.discard(device, file_id)
            case p.InvalidMessage(topic, reason):
                self.invalid.append((topic, reason))
                log.warning("%s: %s", topic, reason)
        return []


def _first_page(topic: str, payload: bytes) -> bool:
    """Whether a hello starts a docking (page 0; an unreadable one counts as a start)."""
    try:
        _, hello = p.decode_message(topic, payload)
    except p.ProtocolError:
        return True
    return not isinstance(hello, p.Hello) or hello.page == 0
