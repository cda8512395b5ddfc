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

from dock.archive import Archive, ArchiveConflict, ArchiveError, make_durable
from dock.enrollment import dock_key
from dock.fair import FairQueue
from dock.quota import Quota, refusal
from dock.registry import is_withdrawn
from sync import protocol as p
from sync.protocol.fields import detail_text
from sync.mqtt import client as mqtt_client
from sync.mqtt import close as mqtt_close

log = logging.getLogger(__name__)

BATCH_BYTES = 2 << 20  # chunks stored between two fsyncs, at most: an ack is never far off
EXPIRY_CHECK_S = 60.0  # how often the archive thread looks for abandoned partial files
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


@dataclass
class _Session:
    """A device's present session at the dock: when its hello came, whether it is a
    docking (confirmed by a charging hello or a received file) or only a claim so far."""

    started: float
    confirmed: bool = False


class DockService:
    def __init__(self, dock_dir: Path, archive_dir: Path, host: str, port: int, *,
                 tls: tuple[Path, Path, Path] | None = None, dock_id: str = "dock",
                 on_progress: Callable[[DeviceProgress], None] | None = None,
                 now: Callable[[], float] = time.time,
                 chunk_limit: int = p.MAX_CHUNK_BYTES, quota: Quota | None = None) -> None:
        self.dock_dir = Path(dock_dir)
        self._signing = dock_key(dock_dir)  # receipts and time answers
        self.archive = Archive(archive_dir, dock_dir, self._signing, dock_id)
        self.dock_id = dock_id
        self._now = now  # the dock's clock: the time reference devices are set from
        self._ingests: dict[str, p.Ingest] = {}
        self.chunk_limit = chunk_limit  # the largest chunk the dock takes (told in ``want``)
        self.quota = quota or Quota()
        self._expired_at = float("-inf")  # the dock's clock at the last expiry of partials
        self.progress: dict[str, DeviceProgress] = {}
        self._on_progress = on_progress
        self.invalid: list[tuple[str, str]] = []
        self.expired: list[tuple[str, str]] = []  # (device, file_id) of abandoned partials
        self._sessions: dict[str, _Session] = {}  # device → its present session
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
        self._worker_started = self._network_started = self._stopping = False
        ca, cert, key = tls if tls else (None, None, None)
        self.client = mqtt_client(host, port, f"dock-{dock_id}", ca=ca, cert=cert, key=key)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._durability.start()
        self._worker.start()
        self._worker_started = True
        self.client.loop_start()
        self._network_started = True
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            self._stop_threads()
            raise ConnectionError("dock could not connect to the broker")

    def stop(self) -> None:
        self._stopping = True
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
        # paho's network thread: an exception escaping here ends it (and with it the dock's
        # link to every device), so nothing a device sends may raise out of this method.
        try:
            arrived = self._now()
            if message.topic.endswith("/time/req"):
                # Answered here, not behind the queue of chunks: t3 must be when the answer
                # leaves, and a clock exchange measures the link, not the dock's backlog.
                self._answer_time(message.topic, message.payload, arrived)
                return
            self._inbox.put((message.topic, message.payload, arrived))
        except Exception as exc:
            self._refused_input(getattr(message, "topic", "?"), exc)

    def _refused_input(self, topic: Any, exc: Exception) -> None:
        """Input that made a handler fail: logged and recorded as invalid for its sender,
        and the thread goes on serving the others."""
        topic = detail_text(str(topic), 300)
        self.invalid.append((topic, f"refused: {type(exc).__name__}: {detail_text(str(exc), 300)}"))
        log.error("input on %s refused: the handler failed with %s: %s", topic,
                  type(exc).__name__, exc, exc_info=exc)

    def failure(self) -> str | None:
        """Why this dock no longer serves anyone — its archive thread or paho's network
        thread has ended while it should run — or None while it does. ``bodycam dock
        serve`` checks it and exits non-zero, so that a supervisor restarts the dock: a
        live process that serves no one is the one outcome never allowed."""
        if self._stopping:
            return None
        if self._worker_started and not self._worker.is_alive():
            return f"the archive thread {self._worker.name} has ended"
        if self._worker_started and not self._durability.is_alive():
            return f"the durability thread {self._durability.name} has ended"
        network = getattr(self.client, "_thread", None)  # paho's loop_start thread
        if self._network_started and (network is None or not network.is_alive()):
            return "the MQTT network thread has ended"
        return None

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
        # Signed with the receipt key the device got at enrolment: its clock is set from
        # the dock, never from whoever can publish on the broker.
        signature = self._signing.sign(response.signed_bytes(parsed.device))
        response = p.TimeResponse(response.t1, response.t2, response.t3, signature)
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
            self._guarded(self._expire_abandoned)
            if not waiting and not stopping:
                try:  # idle: wait, and look at the abandoned partials now and then
                    stopping = self._take(self._inbox.get(timeout=EXPIRY_CHECK_S), waiting)
                except queue.Empty:
                    continue
            while True:  # and everything else that is there now
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                stopping = self._take(item, waiting) or stopping
            handled, batch = 0, 0
            try:
                while waiting and batch < BATCH_BYTES:
                    device, (topic, payload, arrived) = waiting.take()
                    try:
                        self._handle(topic, payload, arrived)
                    except Exception as exc:  # never out of the archive thread (see _handle)
                        self._refused_input(topic, exc)
                        self._forget(device)
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
            outputs = ingest.receive(topic, payload, arrived)  # parsed once, here
            self._carry_out(topic.device, ingest, outputs)
        except Exception as exc:  # one device's trouble must not stop the dock for the others
            self._refused_input(topic_text, exc)
            self._forget(topic.device)

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # housekeeping must not end the archive thread either
            log.exception("%s failed", getattr(work, "__name__", work))

    def _for_device(self, device: str, what: str, work: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
        """``work(*args)`` for one device, on the archive thread: a failure is refused to
        that device (its state rebuilt from the disk), never the end of the thread."""
        try:
            return work(*args, **kwargs)
        except Exception as exc:
            self._refused_input(f"{device}: {what}", exc)
            self._forget(device)
            return None

    def _forget(self, device: str) -> None:
        """After a handler failed for ``device``: its protocol state may be half changed, so
        the next message starts it again from what is durable (as a new session does)."""
        self._ingests.pop(device, None)

    def _claims(self, device: str, hello: p.Hello) -> None:
        """A hello's offers are claims until the session is confirmed as a docking — by
        the device's charging signal, or by a file received (``_confirm``): invented
        offers never start R13.4's clock (dock.archive: claims, unconfirmed_claims)."""
        if hello.page == 0 or device not in self._sessions:
            self._sessions[device] = _Session(time.time())
        session = self._sessions[device]
        self.archive.claimed(device, session.started, [(f.file_id, f.name, f.activity)
                                                       for f in hello.files])
        if hello.charging or session.confirmed:  # a later page's claims join the docking
            self._confirm(device, again=True)

    def _confirm(self, device: str, again: bool = False) -> None:
        """The session is a docking: once recorded, its claims made offers (``again``: the
        claims of a later page too)."""
        session = self._sessions.get(device)
        if session is None or (session.confirmed and not again):
            return  # the common case, per receipt: nothing to do
        self.archive.confirm_docking(device, session.started, new=not session.confirmed)
        session.confirmed = True

    def _over_quota(self, device: str, init: p.FileOffer) -> str | None:
        """Why a new file is refused under the quotas (dock.quota); None to take it."""
        if self.archive.is_begun(device, init.file_id):
            return None  # resumed, or answered from the archive: nothing new to hold
        return refusal(self.quota, self.archive.root,
                       self.archive.open_files(device, but=init.file_id), init.size)

    def _expire_abandoned(self) -> None:
        """Now and then (at most every EXPIRY_CHECK_S), drop incoming files that made no
        progress for the quota's ``partial_expiry_s``: their bytes and index rows go, and
        their devices start from the index again."""
        now = self._now()
        if now - self._expired_at < EXPIRY_CHECK_S:
            return
        self._expired_at = now
        self._flush(wait=True)  # no chunk of a file removed now may still be on its way
        for device, file_id, name, stored in self.archive.expire_partial(
                now, self.quota.partial_expiry_s):
            log.warning("%s: incoming %s (%s, %d bytes stored) abandoned for over %.0f s: "
                        "removed", device, name, file_id, stored, self.quota.partial_expiry_s)
            self.expired.append((device, file_id))
            self._forget(device)

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
        """The durability thread: fsync what is handed over, in order, and wake the archive
        thread to record and acknowledge it. Batches that queued up while it was busy are
        made durable together (one fsync per file for all of them, as a group commit), so
        a disk slower than the link means fewer, larger batches, not a growing queue."""
        while True:
            item = self._to_durable.get()
            taken = [item]
            while item is not None:
                try:
                    item = self._to_durable.get_nowait()
                except queue.Empty:
                    break
                taken.append(item)
            try:
                batches = [batch for batch in taken if batch is not None]
                if batches:
                    written = [w for batch, _ in batches for w in batch]
                    stores = [s for _, batch in batches for s in batch]
                    try:
                        self._made_durable.append((make_durable(written), stores, None))
                    except OSError as exc:
                        self._made_durable.append(([], stores, exc))
                    self._inbox.put(_WAKE)
                if len(batches) < len(taken):
                    return  # the stop marker
            finally:
                for _ in taken:
                    self._to_durable.task_done()

    def _acknowledge(self) -> None:
        """Record the offsets of every batch made durable and acknowledge their chunks: one
        cumulative ack per file, per device, for all the batches durable by now."""
        durable: list[tuple[str, p.Ingest, str, int, int]] = []
        while self._made_durable:
            ends, stores, error = self._made_durable.popleft()
            if error is not None:
                log.error("storing chunks failed: %s", error)
                for device, ingest, file_id, offset, _ in stores:
                    self._for_device(device, "a failed store", lambda d, i, f, o: self._carry_out(
                        d, i, i.chunk_failed(f, o, str(error))), device, ingest, file_id, offset)
                continue
            self.archive.record_offsets(ends)
            durable += stores
        grouped: dict[int, tuple[str, p.Ingest, list[tuple[str, int, int]]]] = {}
        for device, ingest, file_id, offset, size in durable:
            self.progress[device].received_bytes += size
            grouped.setdefault(id(ingest), (device, ingest, []))[2].append(
                (file_id, offset, size))
        for device, ingest, done in grouped.values():
            # A fin waiting on these chunks completes here: guarded as any input.
            self._for_device(device, "stored chunks", lambda d, i, stored: self._carry_out(
                d, i, i.chunks_stored(stored)), device, ingest, done)

    def _complete_waiting(self) -> None:
        """Archive and receipt the files completed this round, all at once: their chunks
        made durable, each checked and moved, the moves and the index made durable, and
        only then the receipts sent."""
        answers: list[tuple[str, p.Ingest, list[Any]]] = []
        while self._completing:
            self._flush(wait=True)  # may complete more files (a fin that waited for acks)
            completing, self._completing = self._completing, []
            for device, ingest, progress, out in completing:
                step = self._for_device(device, "completing a file", self._archive_step,
                                        device, ingest, progress, out, defer=True)
                answers.append((device, ingest, step or []))
        if not answers:
            return
        self.archive.commit_completed()
        for device, ingest, outputs in answers:
            self._for_device(device, "receipts", self._carry_out, device, ingest, outputs)

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
                self._claims(device, hello)
                if hello.page == 0:
                    progress.new_session(len(hello.files) + hello.more_files,
                                         sum(f.size for f in hello.files) + hello.more_bytes)
            case p.OpenFile(init):
                problem = self._over_quota(device, init)
                if problem is not None:
                    progress.rejected += 1
                    log.warning("%s: %s refused: %s", device, init.name, problem)
                    return ingest.file_rejected(init.file_id, f"{init.name}: {problem}",
                                                retry=False)
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
                    # A conflict is refused for good: sending it again changes nothing.
                    return ingest.file_rejected(file_id, str(exc),
                                                retry=not isinstance(exc, ArchiveConflict))
                progress.receipts += 1
                self._confirm(device)  # a file received: the session is a docking
                return ingest.file_verified(file_id, stored.receipt, stored.signature)
            case p.DiscardFile(file_id, reason):
                self.archive.discard(device, file_id)
            case p.InvalidMessage(topic, reason):
                self.invalid.append((topic, reason))
                log.warning("%s: %s", topic, reason)
        return []


def serve_until(service: DockService, stop: threading.Event, seconds: float | None = None,
                poll_s: float = 0.5, every_poll: Callable[[], None] | None = None) -> str | None:
    """Run until ``stop`` is set or ``seconds`` pass, watching the service's threads: returns
    why it stopped serving (``DockService.failure``), or None when it was stopped.
    ``every_poll`` runs at each look (the broker's revocation watch, say)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
        if left <= 0 or stop.wait(left):
            return None
        problem = service.failure()
        if problem is not None:
            log.critical("the dock serves no one: %s", problem)
            return problem
        if every_poll is not None:
            try:
                every_poll()
            except Exception:  # a watch's trouble is logged; serving goes on
                log.exception("a periodic check of the dock failed")


def _first_page(topic: str, payload: bytes) -> bool:
    """Whether a hello starts a docking (page 0; an unreadable one counts as a start)."""
    try:
        _, hello = p.decode_message(topic, payload)
    except p.ProtocolError:
        return True
    return not isinstance(hello, p.Hello) or hello.page == 0
