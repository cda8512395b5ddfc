"""The device's side of one docking session: :class:`Uploader` (after h11's ``_connection``).

Uploader states (per session)::

    IDLE --start()--> HELLO_SENT --want--> TRANSFERRING --every file receipted or failed--> DONE
                          ^                     |
                          +---- next page ------+  (a backlog too long for one hello)

A backlog is offered in pages that each fit one ``hello`` (``split_offers``), in the order
given (the device's: oldest first). When every file of a page is receipted or has failed,
the hello of the next page goes out, in the same session; ``Done`` comes after the last.

Per file on the device: OFFERED --want--> SENDING --all chunks acked--> FIN_SENT --receipt-->
RECEIPTED; OFFERED --want.known--> KNOWN --receipt--> RECEIPTED; resend/restart return to
SENDING; rejected, too many retries or a receipt that does not match → FAILED (the file
stays on the device for the next session). A valid receipt is taken in any state.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, Sequence

from .fields import (DEFAULT_CHUNK_BYTES, DEFAULT_MAX_RETRIES, DEFAULT_WINDOW, MAX_CHUNK_BYTES,
                     MAX_HELLO_BYTES, ProtocolError, check_device, check_int)
from .messages import (Ack, AckStatus, Chunk, FileOffer, Fin, Hello, Reason, Receipt,
                       TimeRequest, TimeResponse, Want, decode_message, split_offers)
from .outputs import (Done, FileFailed, FileProgress, InvalidMessage, Publish, ReceiptReceived,
                      TimeReceived, UploaderOutput, publish, topic_text)
from .topics import DOWN, hello_topic, parse_topic


class UploaderState(StrEnum):
    IDLE = "idle"
    HELLO_SENT = "hello_sent"
    TRANSFERRING = "transferring"
    DONE = "done"


class UploadPhase(StrEnum):
    OFFERED = "offered"
    SENDING = "sending"
    FIN_SENT = "fin_sent"
    KNOWN = "known"  # the dock holds it already; its receipt is on the way
    RECEIPTED = "receipted"
    FAILED = "failed"


ReadFn = Callable[[FileOffer, int, int], bytes]
"""``read(offer, offset, length)``: exactly ``length`` bytes of the file at ``offset``."""


@dataclass
class _Upload:
    offer: FileOffer
    index: int  # position in the dock's want order: lower goes first
    page: int = 0  # the hello page that offers it
    phase: UploadPhase = UploadPhase.OFFERED
    acked: int = 0  # the dock has stored [0, acked) durably
    sent: int = 0  # next offset to send
    # (offset, length, mark): ``mark`` is Uploader.bytes_published once the chunk went out
    in_flight: deque[tuple[int, int, int]] = field(default_factory=deque)
    init_sent: bool = False
    queued: bool = False
    retry_offset: int = -1
    retries: int = 0
    restarts: int = 0


class Uploader:
    """The device's side of one docking session.

    ``read`` is the only way to the device's files; it is called while producing chunk
    publishes. An OSError from it fails that file for this session. Every other output is
    a :class:`Publish` for the edge to send or an effect for the edge to carry out.
    """

    def __init__(self, device: str, files: Sequence[FileOffer], read: ReadFn, *,
                 chunk_size: int = DEFAULT_CHUNK_BYTES, window: int = DEFAULT_WINDOW,
                 window_bytes: int | None = None,
                 firmware: str = "", battery_percent: int | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, chunk_checksums: bool = False,
                 charging: bool = False) -> None:
        self.device = check_device(device)
        # Chunk checksums are optional (docs/sync-protocol.md 3): the dock checks every file
        # whole against the hash in its offer, over a link TLS already protects, so a
        # checksum per chunk would only hash every byte once more at each end.
        self.chunk_checksums = chunk_checksums
        self.chunk_size = check_int(chunk_size, "chunk_size", 1, MAX_CHUNK_BYTES)
        # The window: at most ``window`` chunks and ``window_bytes`` bytes unacknowledged
        # (at least one chunk goes whatever its size). Without ``window_bytes`` it is
        # ``window`` chunks of the chunk size; the edge may change ``window_bytes`` as it
        # measures the link (bandwidth times round trip), and ``window`` then only caps
        # how many small chunks — small files — may be in flight at once.
        self.window = check_int(window, "window", 1, 1 << 16)
        self.window_bytes = check_int(window_bytes if window_bytes is not None
                                      else window * chunk_size, "window_bytes", 1)
        self.max_retries = check_int(max_retries, "max_retries", 0, 1 << 16)
        self._read = read
        self._firmware, self._battery = firmware, battery_percent
        self._charging = charging  # told in every hello: the dock's evidence of a docking
        self._files: dict[str, _Upload] = {}
        for i, offer in enumerate(files):
            if not isinstance(offer, FileOffer):
                raise ProtocolError(f"must be a FileOffer, not {type(offer).__name__}",
                                    f"files[{i}]")
            if offer.file_id in self._files:
                # Content-addressed ids: two files with the same bytes cannot be told apart.
                raise ProtocolError("offered twice", f"files[{i}].file_id")
            self._files[offer.file_id] = _Upload(offer, i)
        # Pages that each fit one hello, in the order given. A page's hello is encoded when
        # it goes out, without the files settled by then (a receipt that came early).
        self._pages: list[list[FileOffer]] = split_offers(tuple(o.offer for o in self._files.values()))
        for number, page in enumerate(self._pages):
            for offer in page:
                self._files[offer.file_id].page = number
        self._page = -1  # the page being worked on; -1 before start()
        self._current: list[_Upload] = []  # its files
        self._hello_bytes = b""
        self._queue: list[tuple[int, str]] = []  # heap: (index, file_id) with sends due
        self._in_flight = 0  # chunks sent and not yet acknowledged, over all files
        self._in_flight_bytes = 0  # and their bytes
        # For an edge that sizes the window from the link: chunk bytes published (resends
        # included), bytes confirmed, and the ``bytes_published`` mark of the latest chunk
        # confirmed — the edge noted when that mark went out, so it has a round trip.
        self.bytes_published = 0
        self.bytes_confirmed = 0
        self.confirmed_mark = 0
        self._unsettled = 0  # files of the present page neither receipted nor failed
        self._time_requests: deque[float] = deque(maxlen=8)
        self.state = UploaderState.IDLE

    # --- the edge calls these --------------------------------------------------------------

    def start(self) -> list[UploaderOutput]:
        """Begin the session: the hello."""
        if self.state is not UploaderState.IDLE:
            raise ProtocolError(f"start() in state {self.state}", "state")
        out = self._next_page()
        if self.state is UploaderState.IDLE:  # nothing to offer: an empty hello all the same
            self._page = 0
            self._offer_page(0, [])
            out = [Publish(hello_topic(self.device), self._hello_bytes)]
        return out

    @property
    def pages(self) -> int:
        """How many hello pages the backlog takes."""
        return len(self._pages)

    @property
    def page(self) -> int:
        """The page being offered or sent now (0 first); -1 before start()."""
        return self._page

    def _next_page(self) -> list[UploaderOutput]:
        """Offer the next page that still holds a file to send; none left: stay as is."""
        while self._page + 1 < len(self._pages):
            self._page += 1
            files = [o for o in self._pages[self._page]
                     if self._files[o.file_id].phase is UploadPhase.OFFERED]
            if files:
                self._offer_page(self._page, files)
                return [Publish(hello_topic(self.device), self._hello_bytes)]
        return []

    def _offer_page(self, number: int, files: list[FileOffer]) -> None:
        later = [o for page in self._pages[number + 1:] for o in page
                 if self._files[o.file_id].phase is UploadPhase.OFFERED]
        hello = Hello(self.device, self._firmware, self._battery, tuple(files),
                      page=number, more_files=len(later),
                      more_bytes=sum(o.size for o in later), charging=self._charging)
        self._hello_bytes = hello.encode()
        if len(self._hello_bytes) > MAX_HELLO_BYTES:  # split_offers leaves room; never here
            raise ProtocolError(f"a hello of {len(files)} files is {len(self._hello_bytes)} "
                                f"bytes, over {MAX_HELLO_BYTES}", "files")
        self._current = [self._files[o.file_id] for o in files]
        self._unsettled = len(files)
        self.state = UploaderState.HELLO_SENT

    def request_time(self, t1: float) -> list[UploaderOutput]:
        """Ask the dock for its time (after start()); ``t1`` is the device clock now."""
        if self.state is UploaderState.IDLE:
            raise ProtocolError("request_time() before start()", "state")
        request = TimeRequest(t1)
        self._time_requests.append(request.t1)
        return [publish(self.device, request)]

    def receive(self, topic: str, payload: bytes) -> list[UploaderOutput]:
        """A message from the broker. Never raises on what the dock sent."""
        try:
            parsed = parse_topic(topic)
        except ProtocolError as exc:
            return [InvalidMessage(topic_text(topic), str(exc))]
        if parsed.direction != DOWN or parsed.device != self.device:
            return [InvalidMessage(topic, f"not addressed to {self.device} by the dock")]
        if self.state is UploaderState.IDLE:
            return [InvalidMessage(topic, "arrived before start()")]
        try:
            _, message = decode_message(parsed, payload)
        except ProtocolError as exc:
            return [InvalidMessage(topic, str(exc))]
        if isinstance(message, Want):
            out = self._on_want(topic, message)
        elif isinstance(message, Ack):
            out = self._on_ack(topic, message)
        elif isinstance(message, Receipt):
            out = self._on_receipt(topic, message)
        else:
            assert isinstance(message, TimeResponse)
            out = self._on_time(topic, message)
        return out + self._check_done()

    def retry(self) -> list[UploaderOutput]:
        """Nothing heard from the dock for a while: send again what it has not confirmed
        (the init and everything from the last acknowledged offset), every fin still
        unanswered (after its init), an init for each file whose receipt is awaited (the dock answers it
        with the receipt), or the hello. A message the broker dropped silently, or lost in
        a restart, is recovered this way."""
        if self.state is UploaderState.HELLO_SENT:
            return [Publish(hello_topic(self.device), self._hello_bytes)]
        if self.state is not UploaderState.TRANSFERRING:
            return []
        out: list[UploaderOutput] = []
        for upload in self._current:
            if upload.phase is UploadPhase.FIN_SENT and upload.acked < upload.offer.size:
                upload.phase = UploadPhase.SENDING  # its fin went with chunks unconfirmed
            if upload.phase is UploadPhase.SENDING:
                # The init goes again too: the link that lost the chunks may have lost it,
                # and chunks for a file the dock has no init for are refused (unknown_file),
                # which would fail the file for the whole session.
                upload.init_sent = False
                self._rewind(upload, upload.acked)
            elif upload.phase is UploadPhase.FIN_SENT:
                # Init first, for the same reason: a fin without one is refused.
                out += [publish(self.device, upload.offer), self._fin(upload)]
            elif upload.phase is UploadPhase.KNOWN:
                out.append(publish(self.device, upload.offer))
        out += self._pump()
        return out + self._check_done()  # a read that failed may have settled the last file

    def progress(self) -> tuple[FileProgress, ...]:
        return tuple(FileProgress(u.offer.file_id, u.offer.name, u.offer.size,
                                  u.offer.size if u.phase is UploadPhase.RECEIPTED else u.acked,
                                  str(u.phase)) for u in self._files.values())

    # --- handlers -----------------------------------------------------------------------------

    def _on_want(self, topic: str, want: Want) -> list[UploaderOutput]:
        if self.state is not UploaderState.HELLO_SENT or want.page != self._page:
            return []  # one want per page; a repeat, or a late one for an earlier page
        self.state = UploaderState.TRANSFERRING
        self.chunk_size = min(self.chunk_size, want.chunk_limit)
        out: list[UploaderOutput] = []
        for file_id in want.known:
            upload = self._files.get(file_id)
            if upload is None or upload.page != self._page:
                out.append(InvalidMessage(topic, f"known file {file_id} was not offered"))
            elif upload.phase is UploadPhase.OFFERED:
                upload.phase = UploadPhase.KNOWN
        for order, (file_id, offset) in enumerate(want.files):
            upload = self._files.get(file_id)
            if upload is None or upload.page != self._page:
                out.append(InvalidMessage(topic, f"wanted file {file_id} was not offered"))
            elif upload.phase is not UploadPhase.OFFERED:
                continue  # receipted before the want arrived
            elif offset > upload.offer.size:
                out += self._fail(upload, f"dock wants offset {offset}, past the end "
                                          f"({upload.offer.size} bytes)")
            else:
                upload.index = order  # the dock's order; unwanted files come after
                upload.phase = UploadPhase.SENDING
                upload.acked = offset  # stored durably at the dock: never sent again
                self._rewind(upload, offset)
        for upload in self._current:
            if upload.phase is not UploadPhase.SENDING:
                upload.index += len(want.files)
            if upload.phase is UploadPhase.OFFERED:
                out += self._fail(upload, "the dock did not ask for it")
        return out + self._pump()

    def _on_ack(self, topic: str, ack: Ack) -> list[UploaderOutput]:
        upload = self._files.get(ack.file_id)
        if upload is None:
            return [InvalidMessage(topic, f"ack for {ack.file_id}, which was not offered")]
        if self.state is not UploaderState.TRANSFERRING:
            return []  # left over from an earlier session
        if upload.phase in (UploadPhase.RECEIPTED, UploadPhase.FAILED, UploadPhase.OFFERED):
            return []
        size = upload.offer.size
        if ack.next_offset > size:
            return [InvalidMessage(topic, f"next_offset {ack.next_offset} is past the end "
                                          f"of {upload.offer.name} ({size} bytes)")]
        why = f"{ack.reason}: {ack.detail}" if ack.detail else ack.reason
        if ack.status is AckStatus.OK:
            # Cumulative: next_offset confirms every chunk below it, however many.
            if upload.phase not in (UploadPhase.SENDING, UploadPhase.FIN_SENT):
                return []  # a late duplicate ack
            if ack.next_offset > upload.acked:
                upload.acked = ack.next_offset
                upload.retries = 0  # progress: earlier trouble is over
            if upload.phase is UploadPhase.SENDING and upload.acked > upload.sent:
                self._rewind(upload, upload.acked)  # the dock had more than we knew
            while upload.in_flight and sum(upload.in_flight[0][:2]) <= upload.acked:
                _, length, mark = upload.in_flight.popleft()
                self._in_flight -= 1
                self._in_flight_bytes -= length
                self.bytes_confirmed += length
                self.confirmed_mark = max(self.confirmed_mark, mark)
            return self._maybe_fin(upload) + self._pump()
        if ack.status is AckStatus.RESEND:
            if upload.phase is UploadPhase.KNOWN:
                return []  # the dock said it holds the file; a resend is stale
            if upload.retry_offset == ack.next_offset:
                upload.retries += 1
            else:
                upload.retry_offset, upload.retries = ack.next_offset, 1
            if upload.retries > self.max_retries:
                return self._fail(upload, f"asked {upload.retries} times to resend from "
                                          f"{ack.next_offset} ({why})")
            # Trust the dock even below what it confirmed before: it knows its disk.
            upload.phase = UploadPhase.SENDING
            upload.acked = ack.next_offset
            if ack.reason == Reason.UNKNOWN_FILE:
                upload.init_sent = False  # the dock has no init for it (lost, or restarted)
            self._rewind(upload, ack.next_offset)
            return self._pump()
        if ack.status is AckStatus.RESTART:
            upload.restarts += 1
            if upload.restarts > self.max_retries:
                return self._fail(upload, f"restarted {upload.restarts} times ({why})")
            upload.phase = UploadPhase.SENDING
            upload.acked = 0
            upload.init_sent = False
            self._rewind(upload, 0)
            return self._pump()
        return self._fail(upload, f"rejected by the dock ({why})")

    def _on_receipt(self, topic: str, receipt: Receipt) -> list[UploaderOutput]:
        upload = self._files.get(receipt.file_id)
        if upload is None:
            return [InvalidMessage(topic, f"receipt for {receipt.file_id}, not offered")]
        if upload.phase is UploadPhase.RECEIPTED:
            return []  # a duplicate: the edge has it already
        problem = receipt.mismatch(upload.offer, self.device)
        if problem is not None:
            out: list[UploaderOutput] = [InvalidMessage(topic, f"receipt does not match "
                                                                f"{upload.offer.name}: {problem}")]
            if upload.phase is not UploadPhase.FAILED:
                out += self._fail(upload, f"receipt does not match: {problem}")
            return out
        # Any valid receipt settles the file, even one that failed in this session: the
        # dock holds it, and whether to delete is the edge's check of the signature.
        self._drop_in_flight(upload)
        if upload.phase is not UploadPhase.FAILED and upload.page == self._page:
            self._unsettled -= 1
        upload.phase = UploadPhase.RECEIPTED
        upload.acked = upload.offer.size
        return [ReceiptReceived(receipt.file_id, receipt)] + self._pump()

    def _on_time(self, topic: str, response: TimeResponse) -> list[UploaderOutput]:
        if response.t1 not in self._time_requests:
            return [InvalidMessage(topic, "time response to no outstanding request")]
        self._time_requests.remove(response.t1)
        return [TimeReceived(response)]

    # --- sending ------------------------------------------------------------------------------

    def _rewind(self, upload: _Upload, offset: int) -> None:
        """Send again from ``offset``: chunks still in flight are taken as lost."""
        self._drop_in_flight(upload)
        upload.sent = offset
        if not upload.queued:
            upload.queued = True
            heapq.heappush(self._queue, (upload.index, upload.offer.file_id))

    def _drop_in_flight(self, upload: _Upload) -> None:
        self._in_flight -= len(upload.in_flight)
        self._in_flight_bytes -= sum(length for _, length, _ in upload.in_flight)
        upload.in_flight.clear()

    def _pump(self) -> list[UploaderOutput]:
        """Fill the window, the first file in the dock's order first."""
        out: list[UploaderOutput] = []
        while self._queue and self._in_flight < self.window and (
                self._in_flight_bytes < self.window_bytes or not self._in_flight):
            upload = self._files[self._queue[0][1]]
            if upload.phase is UploadPhase.SENDING and not upload.init_sent:
                # Init every time a file is (re)started in a session, even to resume:
                # it is small, and it lets a dock that restarted learn the file again.
                upload.init_sent = True
                out.append(publish(self.device, upload.offer))
            if upload.phase is not UploadPhase.SENDING or upload.sent >= upload.offer.size:
                heapq.heappop(self._queue)
                upload.queued = False
                out += self._maybe_fin(upload)
                continue
            length = min(self.chunk_size, upload.offer.size - upload.sent)
            try:
                data = self._read(upload.offer, upload.sent, length)
            except OSError as exc:
                out += self._fail(upload, f"read failed at {upload.sent}: {exc}")
                continue
            if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != length:
                got = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
                out += self._fail(upload, f"read gave {got!r} bytes at {upload.sent}, "
                                          f"expected {length}; the file changed")
                continue
            chunk = Chunk.of(upload.offer.file_id, upload.sent, bytes(data),
                             checksum=self.chunk_checksums)
            out.append(publish(self.device, chunk))
            self.bytes_published += length
            upload.in_flight.append((upload.sent, length, self.bytes_published))
            upload.sent += length
            self._in_flight += 1
            self._in_flight_bytes += length
            out += self._maybe_fin(upload)  # its last chunk is out: the fin follows at once
        return out

    def _maybe_fin(self, upload: _Upload) -> list[UploaderOutput]:
        """The fin goes as soon as the file's last chunk is out, without waiting for the
        acks: the dock holds it until every byte is durable, and answers with the receipt
        (or asks for what it lacks). A small file costs one round trip, not two."""
        if (upload.phase is UploadPhase.SENDING and upload.init_sent
                and upload.sent == upload.offer.size):
            upload.phase = UploadPhase.FIN_SENT
            return [self._fin(upload)]
        return []

    def _fin(self, upload: _Upload) -> Publish:
        offer = upload.offer
        return publish(self.device, Fin(offer.file_id, offer.size, offer.sha256))

    def _fail(self, upload: _Upload, reason: str) -> list[UploaderOutput]:
        self._drop_in_flight(upload)
        if upload.phase is not UploadPhase.FAILED and upload.page == self._page:
            self._unsettled -= 1
        upload.phase = UploadPhase.FAILED
        return [FileFailed(upload.offer.file_id, reason)]

    def _check_done(self) -> list[UploaderOutput]:
        if self.state is not UploaderState.TRANSFERRING or self._unsettled:
            return []
        out = self._next_page()  # the page is over: on to the next, in this session
        if out:
            return out
        self.state = UploaderState.DONE
        return [Done(tuple(f for f, u in self._files.items() if u.phase is UploadPhase.RECEIPTED),
                     tuple(f for f, u in self._files.items() if u.phase is UploadPhase.FAILED))]
