"""The dock's side, one :class:`Ingest` per device across sessions (after h11's ``_connection``).

Per file at the dock: RECEIVING --fin with every byte stored--> VERIFYING --file_verified-->
ARCHIVED; VERIFYING --file_rejected--> RECEIVING from offset 0.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from .fields import (DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, ProtocolError, check_device,
                     check_file_id, check_int, check_number, detail_text, type_name)
from .messages import (Ack, AckStatus, FileOffer, Fin, Hello, Reason, Receipt, TimeRequest,
                       TimeResponse, Want, decode_message)
from .outputs import (CompleteFile, DeviceHello, DiscardFile, FileProgress, IngestOutput,
                      InvalidMessage, OpenFile, Publish, StoreChunk, publish, topic_text)
from .topics import UP, Kind, Topic, ack_topic, parse_topic


class IngestPhase(StrEnum):
    RECEIVING = "receiving"
    VERIFYING = "verifying"
    ARCHIVED = "archived"


@dataclass
class _Incoming:
    file_id: str
    phase: IngestPhase = IngestPhase.RECEIVING
    init: FileOffer | None = None  # from this Ingest's init; chunks need it
    offer: FileOffer | None = None  # from the latest hello
    confirmed: int = 0  # stored durably: [0, confirmed)
    accepted: int = 0  # handed to the edge to store: [0, accepted)
    pending: deque[tuple[int, int]] = field(default_factory=deque)  # stores not yet confirmed
    resend_from: int | None = None  # a resend was asked from here; gaps stay quiet till then
    fin_waiting: bool = False  # fin came while the last stores were still pending
    receipt: Receipt | None = None


class Ingest:
    """The dock's side for one device, across sessions.

    Built from what the edge has on disk: ``stored`` maps file ids to the bytes stored
    durably (an incoming file's length), ``archived`` holds the receipts of files already in
    the archive. Input from the device never raises: it becomes a reasoned :class:`Ack` or
    an :class:`InvalidMessage`. Calls from the edge that make no sense raise ProtocolError.
    """

    def __init__(self, device: str, *, stored: Mapping[str, int] | None = None,
                 archived: Mapping[str, Receipt] | None = None,
                 chunk_limit: int = DEFAULT_CHUNK_BYTES) -> None:
        self.device = check_device(device)
        self.chunk_limit = check_int(chunk_limit, "chunk_limit", 1, MAX_CHUNK_BYTES)
        self._files: dict[str, _Incoming] = {}
        for file_id, offset in (stored or {}).items():
            check_file_id(file_id, "stored")
            check_int(offset, f"stored[{file_id}]")
            self._files[file_id] = _Incoming(file_id, confirmed=offset, accepted=offset)
        for file_id, receipt in (archived or {}).items():
            if not isinstance(receipt, Receipt) or receipt.file_id != file_id:
                raise ProtocolError("must be the Receipt for that file", f"archived[{file_id}]")
            if receipt.body["device"] != self.device:
                raise ProtocolError(f"is for {receipt.body['device']}", f"archived[{file_id}]")
            self._files[file_id] = _Incoming(file_id, IngestPhase.ARCHIVED,
                                             confirmed=int(receipt.body["size"]),
                                             accepted=int(receipt.body["size"]),
                                             receipt=receipt)

    # --- from the broker ----------------------------------------------------------------------

    def receive(self, topic: str | Topic, payload: bytes, now: float) -> list[IngestOutput]:
        """A message from the device; ``now`` is the dock's clock (UTC seconds) on arrival.
        The topic is its name as received, or a :class:`Topic` the edge parsed already to
        route the message (a Topic is checked when it is made: it is not parsed again)."""
        check_number(now, "now")
        if isinstance(topic, Topic):
            parsed, topic = topic, str(topic)
        else:
            try:
                parsed = parse_topic(topic)
            except ProtocolError as exc:
                return [InvalidMessage(topic_text(topic), str(exc))]
        if parsed.direction != UP or parsed.device != self.device:
            return [InvalidMessage(topic, f"not from {self.device} to the dock")]
        if parsed.kind is Kind.CHUNK:
            return self._on_chunk(topic, parsed, payload)
        try:
            _, message = decode_message(parsed, payload)
        except ProtocolError as exc:
            return [InvalidMessage(topic, str(exc))]
        if isinstance(message, Hello):
            return self._on_hello(message)
        if isinstance(message, FileOffer):
            return self._on_init(message)
        if isinstance(message, Fin):
            return self._on_fin(message)
        assert isinstance(message, TimeRequest)
        return [publish(self.device, TimeResponse(message.t1, now, now))]

    def _on_hello(self, hello: Hello) -> list[IngestOutput]:
        out: list[IngestOutput] = [DeviceHello(hello)]
        wanted: list[tuple[str, int]] = []
        known: list[str] = []
        receipts: list[IngestOutput] = []
        for offer in hello.files:
            entry = self._files.setdefault(offer.file_id, _Incoming(offer.file_id))
            entry.offer = offer
            if entry.phase is IngestPhase.ARCHIVED:
                known.append(offer.file_id)
                assert entry.receipt is not None
                receipts.append(publish(self.device, entry.receipt))
            elif entry.phase is IngestPhase.VERIFYING:
                known.append(offer.file_id)  # its receipt (or a restart) follows
            else:
                entry.resend_from = None  # a new session: nothing is asked for yet
                if entry.confirmed > offer.size:
                    out += self._reset(entry, f"{entry.confirmed} bytes stored, more than "
                                              f"the file's {offer.size}")
                wanted.append((offer.file_id, entry.confirmed))
        want = Want(tuple(wanted), tuple(known), self.chunk_limit, hello.page)
        return out + [publish(self.device, want)] + receipts

    def _on_init(self, init: FileOffer) -> list[IngestOutput]:
        entry = self._files.setdefault(init.file_id, _Incoming(init.file_id))
        if entry.phase is IngestPhase.ARCHIVED:
            assert entry.receipt is not None
            return [publish(self.device, entry.receipt)]
        if entry.phase is IngestPhase.VERIFYING:
            return []
        held = entry.init or entry.offer
        if held is not None and held != init:
            # Same content under another name: two files with equal bytes (see the docs).
            return [self._ack(entry, AckStatus.REJECTED, Reason.INIT_MISMATCH,
                              f"this file is already known as {held.activity}/{held.name}")]
        entry.init = init
        out: list[IngestOutput] = []
        if entry.confirmed > init.size:
            out += self._reset(entry, f"{entry.confirmed} bytes stored, more than {init.size}")
        return out + [OpenFile(init)]

    def _on_chunk(self, topic: str, parsed: Topic, payload: bytes) -> list[IngestOutput]:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            return [InvalidMessage(topic, f"payload is {type_name(payload)}, not bytes")]
        data = bytes(payload)
        file_id, offset = str(parsed.file_id), int(parsed.offset or 0)
        entry = self._files.get(file_id)
        if entry is None or entry.init is None:
            return [self._unknown(file_id, entry, "no init for this file")]
        if entry.phase is not IngestPhase.RECEIVING:
            return [self._ack(entry, AckStatus.OK, Reason.DUPLICATE, "file already complete",
                              next_offset=entry.init.size)]
        if offset < entry.accepted:
            return [self._ack(entry, AckStatus.OK, Reason.DUPLICATE, f"chunk at {offset}")]
        if offset > entry.accepted:
            if entry.resend_from == entry.accepted:
                return []  # asked once already; the chunks still on their way are moot
            return [self._ask_resend(entry, Reason.GAP, f"chunk at {offset}, expected "
                                                        f"{entry.accepted}")]
        size = len(data)
        if size > self.chunk_limit:
            return [self._ask_resend(entry, Reason.OVERSIZE, f"{size} bytes, over the chunk "
                                                             f"limit of {self.chunk_limit}")]
        if offset + size > entry.init.size:
            return [self._ask_resend(entry, Reason.BEYOND_END, f"chunk ends at {offset + size}, "
                                                               f"file is {entry.init.size}")]
        if size == 0:
            return [self._ask_resend(entry, Reason.EMPTY, f"empty chunk at {offset}")]
        if parsed.sha256 is not None and hashlib.sha256(data).hexdigest() != parsed.sha256:
            return [self._ask_resend(entry, Reason.CHECKSUM, f"chunk at {offset} does not "
                                                             "match its sha256")]
        entry.pending.append((offset, size))
        entry.accepted = offset + size
        entry.resend_from = None
        return [StoreChunk(file_id, offset, data)]

    def _on_fin(self, fin: Fin) -> list[IngestOutput]:
        entry = self._files.get(fin.file_id)
        if entry is not None and entry.phase is IngestPhase.ARCHIVED:
            assert entry.receipt is not None
            return [publish(self.device, entry.receipt)]
        if entry is None or entry.init is None:
            return [self._unknown(fin.file_id, entry, "fin without init")]
        if entry.phase is IngestPhase.VERIFYING:
            return []
        if (fin.size, fin.sha256) != (entry.init.size, entry.init.sha256):
            return [self._ack(entry, AckStatus.REJECTED, Reason.FIN_MISMATCH,
                              f"fin says {fin.size} bytes, init said {entry.init.size}")]
        if entry.confirmed == fin.size:
            return self._complete(entry)
        if entry.accepted == fin.size:
            entry.fin_waiting = True  # the last stores are still on their way to disk
            return []
        return [self._ask_resend(entry, Reason.INCOMPLETE, f"{entry.accepted} of {fin.size} "
                                                           "bytes received")]

    # --- from the edge ------------------------------------------------------------------------

    def chunk_stored(self, file_id: str, offset: int, size: int) -> list[IngestOutput]:
        """The edge wrote ``size`` bytes at ``offset`` durably."""
        return self.chunks_stored([(file_id, offset, size)])

    def chunks_stored(self, stores: list[tuple[str, int, int]]) -> list[IngestOutput]:
        """The edge wrote these chunks durably, (file_id, offset, size) in the order written:
        answered with one cumulative ``ok`` ack per file — its ``next_offset`` confirms every
        chunk below it — not one per chunk."""
        out: list[IngestOutput] = []
        acked: dict[str, _Incoming] = {}  # files whose ack goes out, in order
        for file_id, offset, size in stores:
            entry = self._entry(file_id)
            if entry.phase is not IngestPhase.RECEIVING or not entry.pending \
                    or entry.pending[0] != (offset, size):
                continue  # a store from before a resend or restart: no longer counted
            entry.pending.popleft()
            entry.confirmed = offset + size
            if entry.fin_waiting and entry.init is not None \
                    and entry.confirmed == entry.init.size:
                # Every byte durable and the fin here: the receipt (or a restart) answers
                # for the last chunks, no ack needed.
                acked.pop(file_id, None)
                out += self._complete(entry)
            else:
                acked[file_id] = entry
        return [self._ack(entry, AckStatus.OK, Reason.STORED) for entry in acked.values()] + out

    def chunk_failed(self, file_id: str, offset: int, reason: str) -> list[IngestOutput]:
        """The edge could not store the chunk at ``offset``: ask again from what is stored."""
        entry = self._entry(file_id)
        if entry.phase is not IngestPhase.RECEIVING or all(o != offset for o, _ in entry.pending):
            return []
        entry.pending.clear()
        entry.accepted = entry.confirmed
        entry.fin_waiting = False
        return [self._ask_resend(entry, Reason.STORE_FAILED, reason)]

    def file_verified(self, file_id: str, receipt_body: Mapping[str, Any],
                      signature: bytes) -> list[IngestOutput]:
        """The file is in the archive, checked; send the signed receipt."""
        entry = self._entry(file_id)
        if entry.phase is not IngestPhase.VERIFYING or entry.init is None:
            raise ProtocolError(f"file {file_id} is {entry.phase}, not verifying", "file_id")
        receipt = Receipt(receipt_body, signature)
        problem = receipt.mismatch(entry.init, self.device)
        if problem is not None:
            raise ProtocolError(f"receipt does not describe the file received: {problem}",
                                "receipt_body")
        entry.phase = IngestPhase.ARCHIVED
        entry.receipt = receipt
        return [publish(self.device, receipt)]

    def file_rejected(self, file_id: str, reason: str, *, retry: bool = True) -> list[IngestOutput]:
        """The stored file failed its hash or seal: discard it and have it sent again from 0
        (``retry``), or refuse it for this session (a seal that will never verify, a file
        that would replace archived evidence); an init the edge could not open (``OpenFile``
        refused) is refused so too."""
        entry = self._entry(file_id)
        if entry.phase is not IngestPhase.VERIFYING and (retry or entry.phase
                                                         is not IngestPhase.RECEIVING):
            raise ProtocolError(f"file {file_id} is {entry.phase}, not verifying", "file_id")
        if entry.phase is IngestPhase.RECEIVING:
            # Refused at its init (OpenFile): the edge opened nothing, so its chunks are
            # answered as those of an unknown file until an init is taken.
            entry.init = None
        out = self._reset(entry, detail_text(reason))
        status = AckStatus.RESTART if retry else AckStatus.REJECTED
        return out + [self._ack(entry, status, Reason.VERIFY_FAILED, reason)]

    def progress(self) -> tuple[FileProgress, ...]:
        out = []
        for entry in self._files.values():
            meta = entry.init or entry.offer
            if meta is not None:
                out.append(FileProgress(entry.file_id, meta.name, meta.size, entry.confirmed,
                                        str(entry.phase)))
        return tuple(out)

    # --- helpers ------------------------------------------------------------------------------

    def _entry(self, file_id: str) -> _Incoming:
        entry = self._files.get(file_id)
        if entry is None:
            raise ProtocolError(f"{file_id!r} is not a file of {self.device}", "file_id")
        return entry

    def _complete(self, entry: _Incoming) -> list[IngestOutput]:
        assert entry.init is not None
        entry.phase = IngestPhase.VERIFYING
        entry.fin_waiting = False
        return [CompleteFile(entry.file_id, entry.init)]

    def _reset(self, entry: _Incoming, reason: str) -> list[IngestOutput]:
        entry.phase = IngestPhase.RECEIVING
        entry.confirmed = entry.accepted = 0
        entry.pending.clear()
        entry.fin_waiting = False
        entry.resend_from = None
        return [DiscardFile(entry.file_id, reason)]

    def _unknown(self, file_id: str, entry: _Incoming | None, detail: str) -> Publish:
        """A chunk or fin for a file this Ingest has no init for — the init was lost on the
        link (a broker restart), or the dock restarted since: ask for the init and the
        bytes from what is stored. Not a refusal: the device sends the init and goes on."""
        offset = entry.confirmed if entry is not None else 0
        return Publish(ack_topic(self.device, file_id),
                       Ack(file_id, offset, AckStatus.RESEND, Reason.UNKNOWN_FILE,
                           f"{detail}: send init, then from {offset}").encode())

    def _ask_resend(self, entry: _Incoming, reason: Reason, detail: str) -> Publish:
        # Remember the ask, so the chunks already on their way past this point (each a
        # "gap" now) do not each trigger another resend of the same range.
        entry.resend_from = entry.accepted
        return self._ack(entry, AckStatus.RESEND, reason, detail, next_offset=entry.accepted)

    def _ack(self, entry: _Incoming, status: AckStatus, reason: Reason, detail: str = "", *,
             next_offset: int | None = None) -> Publish:
        offset = entry.confirmed if next_offset is None else next_offset
        return publish(self.device, Ack(entry.file_id, offset, status, str(reason),
                                        detail_text(detail)))
