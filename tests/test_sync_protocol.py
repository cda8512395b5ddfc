"""The dock-sync wire protocol (sync/protocol/), driven without a broker.

An in-memory link wires an Uploader to an Ingest; a dock edge keeps an in-memory disk and
signs real Ed25519 receipts, and a device edge checks them before "deleting". Faults are
injected on the link (cut, corrupt, duplicate, reorder, enlarge) and in the dock (a disk
that corrupts a stored byte, a crash before the receipt goes out).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.protocol import (DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MAX_HELLO_BYTES, PREFIX, Ack,
                           AckStatus, Chunk, CompleteFile, DeviceHello, DiscardFile, Done,
                           FileFailed, FileOffer, Fin, Hello, Ingest, Init, InvalidMessage,
                           Kind, OpenFile, ProtocolError, Publish, Reason, Receipt,
                           ReceiptReceived, StoreChunk, TimeReceived, TimeRequest, TimeResponse,
                           Topic, Uploader, UploaderState, Want, chunk_topic, clock_offset,
                           decode_message, device_subscription, dock_subscription, file_id_of,
                           hello_topic, make_receipt_body, parse_topic, split_offers)

DEVICE = "BC-0001"
ACTIVITY = "20261129T010100Z"
CHUNK = 1024
DOCK_KEY = Ed25519PrivateKey.generate()
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# --- the two edges, in memory ------------------------------------------------------------------

def offer_for(name: str, data: bytes, kind: str = "media") -> FileOffer:
    return FileOffer.of(name=name, activity=ACTIVITY, size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        manifest=f"{name.split('.')[0]}.manifest.json", kind=kind)


class DeviceEdge:
    """The recorder: its files, an uploader per session, deletion only on a checked receipt."""

    def __init__(self, files: dict[str, bytes], **options: Any) -> None:
        self.files = {offer_for(name, data).file_id: (offer_for(name, data), data)
                      for name, data in files.items()}
        self.options = options
        self.chunks_sent: Counter[tuple[str, int]] = Counter()
        self.effects: list[object] = []
        self.deleted: list[str] = []
        self.new_session()

    def new_session(self) -> None:
        offers = [offer for offer, _ in self.files.values()]
        self.uploader = Uploader(DEVICE, offers, self.read, **self.options)

    def read(self, offer: FileOffer, offset: int, length: int) -> bytes:
        return self.files[offer.file_id][1][offset:offset + length]

    def handle(self, outputs: list) -> list[Publish]:
        out = []
        for item in outputs:
            if isinstance(item, Publish):
                topic = parse_topic(item.topic)
                if topic.kind is Kind.CHUNK:
                    self.chunks_sent[(str(topic.file_id), int(topic.offset or 0))] += 1
                out.append(item)
                continue
            self.effects.append(item)
            if isinstance(item, ReceiptReceived):
                offer, data = self.files[item.file_id]
                DOCK_KEY.public_key().verify(item.receipt.signature, item.receipt.signed_bytes())
                assert hashlib.sha256(data).hexdigest() == item.receipt.body["sha256"]
                del self.files[item.file_id]
                self.deleted.append(offer.name)
        return out

    def of_type(self, cls: type) -> list:
        return [e for e in self.effects if isinstance(e, cls)]


@dataclass
class DockEdge:
    """The dock: an incoming area and an archive in dicts, receipts signed for real."""

    incoming: dict[str, bytearray] = field(default_factory=dict)
    archive: dict[str, bytes] = field(default_factory=dict)
    receipts: dict[str, Receipt] = field(default_factory=dict)
    chunk_limit: int = DEFAULT_CHUNK_BYTES
    corrupt_store: set[str] = field(default_factory=set)  # file ids: flip a byte once
    crash_before_receipt: bool = False  # archive and keep the receipt, never publish it
    crash_before_verify: bool = False  # every byte stored, CompleteFile never handled
    stores: Counter[tuple[str, int]] = field(default_factory=Counter)
    archived_count: Counter[str] = field(default_factory=Counter)
    log: list[object] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new process: the Ingest is rebuilt from what is on disk."""
        self.ingest = Ingest(DEVICE, stored={k: len(v) for k, v in self.incoming.items()},
                             archived=dict(self.receipts), chunk_limit=self.chunk_limit)

    def receive(self, publish: Publish, now: float = 1_000.0) -> list[Publish]:
        if publish.topic.endswith("/hello") and Hello.decode(publish.payload).page == 0:
            # As dock/service.py: a docking starts from what is on disk, not from memory.
            self.restart()
        return self.handle(self.ingest.receive(publish.topic, publish.payload, now))

    def handle(self, outputs: list) -> list[Publish]:
        out: list[Publish] = []
        work = deque(outputs)
        while work:
            item = work.popleft()
            self.log.append(item)
            if isinstance(item, Publish):
                out.append(item)
            elif isinstance(item, OpenFile):
                self.incoming.setdefault(item.init.file_id, bytearray())
            elif isinstance(item, StoreChunk):
                part = self.incoming[item.file_id]
                if len(part) < item.offset:
                    work.extend(self.ingest.chunk_failed(item.file_id, item.offset, "hole"))
                    continue
                data = bytearray(item.data)
                if item.file_id in self.corrupt_store:
                    self.corrupt_store.discard(item.file_id)
                    data[0] ^= 0xFF  # the disk, not the link, damaged it
                del part[item.offset:]
                part += data
                self.stores[(item.file_id, item.offset)] += 1
                work.extend(self.ingest.chunk_stored(item.file_id, item.offset, len(item.data)))
            elif isinstance(item, CompleteFile):
                if self.crash_before_verify:
                    continue
                work.extend(self.complete(item))
            elif isinstance(item, DiscardFile):
                self.incoming[item.file_id] = bytearray()
        return out

    def complete(self, item: CompleteFile) -> list:
        data = bytes(self.incoming[item.file_id])
        if hashlib.sha256(data).hexdigest() != item.init.sha256:
            return self.ingest.file_rejected(item.file_id, "whole-file hash does not match")
        self.archive[item.file_id] = data
        del self.incoming[item.file_id]
        self.archived_count[item.file_id] += 1
        body = make_receipt_body(dock="DOCK-1", device=DEVICE, init=item.init,
                                 stored_at=1_764_378_000_000,
                                 archive_path=f"{DEVICE}/{item.init.activity}/{item.init.name}",
                                 activity=item.init.activity)
        signature = DOCK_KEY.sign(Receipt(body, b"-").signed_bytes())
        out = self.ingest.file_verified(item.file_id, body, signature)
        self.receipts[item.file_id] = Receipt(body, signature)
        return [] if self.crash_before_receipt else out

    def acks(self, reason: str | None = None) -> list[Ack]:
        found = []
        for item in self.log:
            if isinstance(item, Publish) and "/ack/" in item.topic:
                ack = Ack.decode(item.payload)
                if reason is None or ack.reason == reason:
                    found.append(ack)
        return found


Tamper = Callable[[Publish], list[Publish]]


def run(device: DeviceEdge, dock: DockEdge, *, tamper: Tamper | None = None,
        cut_after_chunks: int | None = None, first: list | None = None,
        limit: int = 100_000) -> bool:
    """Carry messages both ways, in order, until none are left. Returns False if cut:
    everything still on the link is lost, as on a dropped connection or broker restart.
    The device's first outputs are its hello, unless ``first`` gives others."""
    link: deque[tuple[str, Publish]] = deque()
    if first is None:
        first = device.uploader.start()
    link.extend(("up", p) for p in device.handle(first))
    delivered = 0
    for _ in range(limit):
        if not link:
            return True
        direction, publish = link.popleft()
        if direction == "up":
            for p in (tamper(publish) if tamper else [publish]):
                if cut_after_chunks is not None and "/chunk/" in p.topic:
                    if delivered == cut_after_chunks:
                        return False
                    delivered += 1
                link.extend(("down", q) for q in dock.receive(p))
        else:
            outputs = device.uploader.receive(publish.topic, publish.payload)
            link.extend(("up", q) for q in device.handle(outputs))
    raise AssertionError("the link never went quiet")


def sample_files(seed: int = 7) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "BC-0001_20261129T010100Z_000001_20261129T010100Z.ts.bce": b"",
        "BC-0001_20261129T010100Z_000002_20261129T010130Z.ts.bce": rng.randbytes(4 * CHUNK),
        "BC-0001_20261129T010100Z_000003_20261129T010200Z.ts.bce":
            rng.randbytes(rng.randrange(5 * CHUNK, 9 * CHUNK)),
    }


def assert_all_archived(device: DeviceEdge, dock: DockEdge, files: dict[str, bytes]) -> None:
    assert not device.files, "every file deleted on the device"
    assert sorted(device.deleted) == sorted(files)
    for data in files.values():
        assert dock.archive[file_id_of(hashlib.sha256(data).hexdigest())] == data
    done = device.of_type(Done)
    assert done and not done[-1].failed
    receipted = [r.file_id for r in device.of_type(ReceiptReceived)]
    assert sorted(receipted) == sorted(file_id_of(hashlib.sha256(d).hexdigest())
                                       for d in files.values()), "one receipt per file"


# --- whole transfers ---------------------------------------------------------------------------

@pytest.mark.req("R13.2")
def test_three_files_arrive_with_receipts() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge()
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    assert len(device.of_type(ReceiptReceived)) == 3
    assert device.uploader.state is UploaderState.DONE
    # Every chunk went exactly once, and stayed within the window and the chunk size.
    assert set(device.chunks_sent.values()) == {1}
    assert sum(device.chunks_sent.values()) == 4 + -(-len(list(files.values())[2]) // CHUNK)
    assert not dock.acks(Reason.GAP) and not dock.acks(Reason.CHECKSUM)
    assert isinstance(dock.log[0], DeviceHello)


def test_dock_chunk_limit_caps_the_device_chunk_size() -> None:
    files = {"a.ts.bce": random.Random(1).randbytes(10_000)}
    device = DeviceEdge(files, chunk_size=8192, window=2)
    dock = DockEdge(chunk_limit=3000)
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    assert all(len(s.data) <= 3000 for s in dock.log if isinstance(s, StoreChunk))
    assert sorted(offset for _, offset in device.chunks_sent) == [0, 3000, 6000, 9000]


@pytest.mark.parametrize("dock_restarts", [False, True])
@pytest.mark.parametrize("cut", [0, 2, 5, 8])
def test_resume_after_cut_sends_no_confirmed_chunk_again(cut: int, dock_restarts: bool) -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=3)
    dock = DockEdge()
    assert not run(device, dock, cut_after_chunks=cut), "the link was cut mid-transfer"
    confirmed = {k: len(v) for k, v in dock.incoming.items()}
    archived_before = sum(len(data) for data in dock.archive.values())
    device.chunks_sent.clear()
    if dock_restarts:
        dock.restart()
    device.new_session()
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    for (file_id, offset), count in device.chunks_sent.items():
        assert count == 1
        assert offset >= confirmed.get(file_id, 0), "a confirmed chunk was sent again"
    # The second session sent exactly the bytes the dock did not hold.
    sent = sum(min(CHUNK, len(dock.archive[f]) - o) for f, o in device.chunks_sent)
    total = sum(len(data) for data in files.values())
    assert sent == total - sum(confirmed.values()) - archived_before
    assert all(count == 1 for count in dock.stores.values()), "nothing stored twice"


def test_corrupt_chunk_is_asked_for_again() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4, chunk_checksums=True)
    dock = DockEdge()
    flip, _ = flip_once(third_file_chunk(files, 2))

    assert run(device, dock, tamper=flip)
    assert_all_archived(device, dock, files)
    (ack,) = dock.acks(Reason.CHECKSUM)
    assert ack.status is AckStatus.RESEND and ack.next_offset == 2 * CHUNK
    assert device.chunks_sent[(ack.file_id, 2 * CHUNK)] == 2
    # The chunks already on their way behind the bad one were refused once, quietly.
    assert len(dock.acks(Reason.GAP)) == 0


def test_corrupt_chunk_without_checksum_is_caught_whole() -> None:
    """Chunks go without checksums by default (section 3): a chunk damaged on its way is
    caught by the whole-file hash, the file is discarded and sent again from 0, and only
    the intact file is receipted."""
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge()
    victim = third_file_chunk(files, 2)
    flip, done = flip_once(victim)

    assert run(device, dock, tamper=flip)
    assert done and parse_topic(done[0].topic).sha256 is None, "sent without a checksum"
    assert_all_archived(device, dock, files)
    assert not dock.acks(Reason.CHECKSUM)  # nothing to check a chunk against
    assert device.chunks_sent[(victim[0], 0)] == 2, "the whole file was sent again"


def flip_once(victim: tuple[str, int]) -> tuple[Tamper, list[Publish]]:
    """A link that flips one bit of the chunk ``victim`` the first time it passes; the
    list holds that chunk's publish once it has."""
    done: list[Publish] = []

    def flip(p: Publish) -> list[Publish]:
        if is_chunk(p.topic, victim) and not done:
            done.append(p)
            payload = bytearray(p.payload)
            payload[10] ^= 0x01
            return [Publish(p.topic, bytes(payload))]
        return [p]

    return flip, done


def third_file_chunk(files: dict[str, bytes], index: int) -> tuple[str, int]:
    """The third file's id and the offset of its chunk ``index``."""
    data = list(files.values())[2]
    return file_id_of(hashlib.sha256(data).hexdigest()), index * CHUNK


def is_chunk(topic_name: str, which: tuple[str, int]) -> bool:
    topic = parse_topic(topic_name)
    return topic.kind is Kind.CHUNK and (topic.file_id, topic.offset) == which


def test_duplicate_and_reordered_chunks() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge()
    held: list[Publish] = []
    seen: Counter[str] = Counter()

    def shuffle(p: Publish) -> list[Publish]:
        if "/chunk/" not in p.topic:
            return [p]
        seen["chunks"] += 1
        if seen["chunks"] == 2:
            return [p, p]  # duplicated on the link
        if seen["chunks"] == 6:  # the third file's second chunk...
            held.append(p)  # ...is overtaken by its third
            return []
        if held:
            return [p, held.pop()]
        return [p]

    assert run(device, dock, tamper=shuffle)
    assert_all_archived(device, dock, files)
    assert dock.acks(Reason.DUPLICATE), "the duplicate is acknowledged as such"
    # The overtaking chunk asks for a resend (the late one's successor may ask again: the
    # dock cannot tell the old stream from the resent one; MQTT keeps order, so this is rare).
    assert 1 <= len(dock.acks(Reason.GAP)) <= 2
    assert all(count == 1 for count in dock.stores.values()), "nothing stored twice"


def test_oversize_chunk_is_refused_with_reason_then_resent() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=2)
    dock = DockEdge(chunk_limit=CHUNK)
    victim = third_file_chunk(files, 1)
    done = []

    def enlarge(p: Publish) -> list[Publish]:
        if is_chunk(p.topic, victim) and not done:
            done.append(p)
            return [Publish(p.topic, p.payload + b"x")]
        return [p]

    assert run(device, dock, tamper=enlarge)
    assert_all_archived(device, dock, files)
    (ack,) = dock.acks(Reason.OVERSIZE)
    assert ack.status is AckStatus.RESEND and ack.next_offset == CHUNK
    assert "over the chunk limit" in ack.detail


def test_a_chunk_the_broker_dropped_silently_is_recovered_by_retry() -> None:
    # Mosquitto under MQTT 3.1.1 acknowledges an oversize publish and drops it: nothing
    # tells the device. Only the missing ack does; the edge calls retry() after a while.
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge()
    big = list(files.values())[2]
    last = (len(big) - 1) // CHUNK * CHUNK
    dropped = []

    def drop_last(p: Publish) -> list[Publish]:
        topic = parse_topic(p.topic)
        if topic.kind is Kind.CHUNK and topic.offset == last and not dropped:
            dropped.append(p)
            return []
        return [p]

    assert run(device, dock, tamper=drop_last)
    # The fin follows the last chunk at once; the dock, short of bytes, asks for them
    # (incomplete), so a dropped last chunk costs one round trip, not a retry's wait.
    assert dropped and device.of_type(Done)
    assert dock.acks(Reason.INCOMPLETE)
    assert_all_archived(device, dock, files)


def test_a_chunk_dropped_mid_file_is_recovered_by_retry() -> None:
    # A chunk dropped with later chunks of its file still to come is a gap at the dock
    # (asked for once); if that ask is lost too, only the missing ack tells the device:
    # the edge calls retry() after a while.
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge()
    dropped = []

    def drop_chunk_and_ask(p: Publish) -> list[Publish]:
        topic = parse_topic(p.topic)
        if topic.kind is Kind.CHUNK and topic.offset == CHUNK and not dropped:
            dropped.append(p)
            return []
        return [p]

    link_lost: list[Publish] = []
    original = dock.receive

    def dock_receive(p: Publish, now: float = 1_000.0) -> list[Publish]:
        out = original(p, now)
        kept = [q for q in out if b'"resend"' not in q.payload]  # the asks are lost too
        link_lost.extend(q for q in out if q not in kept)
        return kept

    dock.receive = dock_receive  # type: ignore[method-assign]
    run(device, dock, tamper=drop_chunk_and_ask)
    assert dropped and link_lost and not device.of_type(Done), "stalled, waiting for an ack"
    dock.receive = original  # type: ignore[method-assign]
    assert run(device, dock, first=device.uploader.retry())
    assert_all_archived(device, dock, files)


def test_retry_asks_again_for_an_awaited_receipt() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge(crash_before_receipt=True)
    assert run(device, dock)
    dock.crash_before_receipt = False
    dock.restart()
    device.new_session()
    hello = device.handle(device.uploader.start())
    for p in dock.receive(hello[0]):
        if p.topic.endswith("/want"):  # the receipts after it are lost
            device.handle(device.uploader.receive(p.topic, p.payload))
    assert not device.deleted
    assert run(device, dock, first=device.uploader.retry())
    assert_all_archived(device, dock, files)


def test_whole_file_hash_mismatch_restarts_the_file() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    victim = file_id_of(hashlib.sha256(list(files.values())[1]).hexdigest())
    dock = DockEdge(corrupt_store={victim})
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    (ack,) = dock.acks(Reason.VERIFY_FAILED)
    assert ack.status is AckStatus.RESTART and ack.next_offset == 0
    assert any(isinstance(e, DiscardFile) and e.file_id == victim for e in dock.log)
    assert {o for (f, o), n in device.chunks_sent.items() if f == victim and n == 2} == \
        {0, CHUNK, 2 * CHUNK, 3 * CHUNK}


@pytest.mark.req("R13.2")
def test_dock_crash_after_archiving_before_the_receipt_went_out() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge(crash_before_receipt=True)
    assert run(device, dock)
    assert not device.deleted and len(dock.archive) == 3
    dock.crash_before_receipt = False
    dock.restart()
    device.chunks_sent.clear()
    device.new_session()
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    want = next(Want.decode(p.payload) for p in reversed(dock.log)
                if isinstance(p, Publish) and p.topic.endswith("/want"))
    assert not want.files and len(want.known) == 3
    assert not device.chunks_sent, "nothing sent again"
    assert set(dock.archived_count.values()) == {1}, "nothing stored twice"


@pytest.mark.req("R13.2")
def test_dock_crash_after_storing_before_verifying() -> None:
    files = sample_files()
    device = DeviceEdge(files, chunk_size=CHUNK, window=4)
    dock = DockEdge(crash_before_verify=True)
    assert run(device, dock)
    assert not device.deleted and not dock.archive
    dock.crash_before_verify = False
    dock.restart()
    device.chunks_sent.clear()
    device.new_session()
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    assert not device.chunks_sent, "every byte was already stored: init and fin only"
    assert all(count == 1 for count in dock.stores.values())


@pytest.mark.req("R13.2")
def test_a_file_that_never_verifies_fails_after_retries_and_stays() -> None:
    good = b"good evidence" * 100
    device = DeviceEdge({"a.ts.bce": good, "b.ts.bce": b"other" * 300},
                        chunk_size=CHUNK, window=4, max_retries=2)
    bad_id = file_id_of(hashlib.sha256(good).hexdigest())
    offer = device.files[bad_id][0]
    device.files[bad_id] = (offer, b"rotten evidence" * 100)  # the bytes on disk went bad
    dock = DockEdge()
    assert run(device, dock)
    (done,) = device.of_type(Done)
    assert done.failed == (bad_id,) and len(done.receipted) == 1
    (failed,) = device.of_type(FileFailed)
    assert "restarted 3 times" in failed.reason
    assert bad_id in device.files, "a file without a receipt stays on the device"


def test_clock_exchange() -> None:
    device = DeviceEdge({})
    dock = DockEdge()
    device.handle(device.uploader.start())
    (request,) = device.uploader.request_time(100.0)
    (response,) = dock.receive(request, now=250.0)
    (received,) = device.uploader.receive(response.topic, response.payload)
    assert isinstance(received, TimeReceived)
    r = received.response
    assert (r.t1, r.t2, r.t3) == (100.0, 250.0, 250.0)
    assert clock_offset(r.t1, r.t2, r.t3, 100.5) == (149.75, 0.5)
    # The same answer again matches no request.
    (again,) = device.uploader.receive(response.topic, response.payload)
    assert isinstance(again, InvalidMessage)


# --- the state machines, message by message -----------------------------------------------------

def ingest_with(data: bytes, limit: int = CHUNK) -> tuple[Ingest, Init]:
    ingest = Ingest(DEVICE, chunk_limit=limit)
    init = Init.from_offer(offer_for("a.ts.bce", data))
    assert ingest.receive(init.topic(DEVICE), init.encode(), 0.0) == [OpenFile(init)]
    return ingest, init


def chunk(init: Init, offset: int, data: bytes) -> tuple[str, bytes]:
    c = Chunk.of(init.file_id, offset, data)
    return c.topic(DEVICE), c.encode()


def only_ack(outputs: list) -> Ack:
    (publish,) = outputs
    return Ack.decode(publish.payload)


def test_ingest_chunk_checks() -> None:
    data = bytes(range(256)) * 12  # 3072 bytes
    ingest, init = ingest_with(data)
    # Oversize: refused with its reason, nothing stored.
    ack = only_ack(ingest.receive(*chunk(init, 0, data[:CHUNK + 1]), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.OVERSIZE, 0)
    # The expected chunk is stored, then acknowledged once it is durable.
    (store,) = ingest.receive(*chunk(init, 0, data[:CHUNK]), 0.0)
    assert store == StoreChunk(init.file_id, 0, data[:CHUNK])
    ack = only_ack(ingest.chunk_stored(init.file_id, 0, CHUNK))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.OK, Reason.STORED, CHUNK)
    # A duplicate is acknowledged where the dock stands.
    ack = only_ack(ingest.receive(*chunk(init, 0, data[:CHUNK]), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.OK, Reason.DUPLICATE, CHUNK)
    # A gap asks for a resend once; the chunks behind it stay quiet.
    ack = only_ack(ingest.receive(*chunk(init, 2 * CHUNK, data[2 * CHUNK:]), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.GAP, CHUNK)
    assert ingest.receive(*chunk(init, 2 * CHUNK, data[2 * CHUNK:]), 0.0) == []
    # A chunk whose bytes do not match the topic's hash.
    topic, _ = chunk(init, CHUNK, data[CHUNK:2 * CHUNK])
    ack = only_ack(ingest.receive(topic, b"\0" * CHUNK, 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.CHECKSUM, CHUNK)


def test_ingest_beyond_end_and_empty() -> None:
    data = b"x" * 100
    ingest, init = ingest_with(data)
    ack = only_ack(ingest.receive(*chunk(init, 0, data + b"y"), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.BEYOND_END, 0)
    ack = only_ack(ingest.receive(*chunk(init, 0, b""), 0.0))
    assert (ack.status, ack.reason) == (AckStatus.RESEND, Reason.EMPTY)


def test_ingest_unknown_file_and_fin_checks() -> None:
    data = b"abc" * 10
    ingest = Ingest(DEVICE)
    init = Init.from_offer(offer_for("a.ts.bce", data))
    # No init (lost on the link, or the dock restarted): asked for, with the bytes from
    # what is stored — not refused, so the file goes on in the same session.
    ack = only_ack(ingest.receive(*chunk(init, 0, data), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.UNKNOWN_FILE, 0)
    fin = Fin(init.file_id, init.size, init.sha256)
    ack = only_ack(ingest.receive(fin.topic(DEVICE), fin.encode(), 0.0))
    assert (ack.status, ack.reason) == (AckStatus.RESEND, Reason.UNKNOWN_FILE)
    resumed = Ingest(DEVICE, stored={init.file_id: 3})
    ack = only_ack(resumed.receive(*chunk(init, 3, data[3:]), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.UNKNOWN_FILE, 3)
    ingest.receive(init.topic(DEVICE), init.encode(), 0.0)
    fin = Fin(init.file_id, init.size, init.sha256)
    ack = only_ack(ingest.receive(fin.topic(DEVICE), fin.encode(), 0.0))
    assert (ack.status, ack.reason, ack.next_offset) == (AckStatus.RESEND, Reason.INCOMPLETE, 0)
    (store,) = ingest.receive(*chunk(init, 0, data), 0.0)
    # fin while the last store is still on its way: completion waits for the disk.
    assert ingest.receive(fin.topic(DEVICE), fin.encode(), 0.0) == []
    outputs = ingest.chunk_stored(init.file_id, 0, len(data))
    assert isinstance(outputs[-1], CompleteFile) and outputs[-1].init == init
    assert ingest.receive(fin.topic(DEVICE), fin.encode(), 0.0) == [], "verifying already"
    with pytest.raises(ProtocolError, match="receipt_body"):
        ingest.file_verified(init.file_id, make_receipt_body(
            dock="D", device="OTHER", init=init, stored_at=0, archive_path="x"), b"s")
    body = make_receipt_body(dock="D", device=DEVICE, init=init, stored_at=0, archive_path="x")
    (publish,) = ingest.file_verified(init.file_id, body, b"sig")
    assert Receipt.decode(publish.payload) == Receipt(body, b"sig")
    # Anything about the file now brings the same receipt back.
    assert ingest.receive(fin.topic(DEVICE), fin.encode(), 0.0) == [publish]
    assert ingest.receive(init.topic(DEVICE), init.encode(), 0.0) == [publish]


def test_ingest_store_failure_asks_again_from_what_is_stored() -> None:
    data = b"z" * (3 * CHUNK)
    ingest, init = ingest_with(data)
    ingest.receive(*chunk(init, 0, data[:CHUNK]), 0.0)
    ingest.receive(*chunk(init, CHUNK, data[CHUNK:2 * CHUNK]), 0.0)
    ingest.chunk_stored(init.file_id, 0, CHUNK)
    ack = only_ack(ingest.chunk_failed(init.file_id, CHUNK, "disk full\n(ENOSPC)"))
    assert (ack.status, ack.reason, ack.next_offset) == \
        (AckStatus.RESEND, Reason.STORE_FAILED, CHUNK)
    assert ack.detail == "disk full (ENOSPC)"
    assert ingest.chunk_stored(init.file_id, CHUNK, CHUNK) == [], "a late store no longer counts"


def test_ingest_never_raises_on_peer_input_and_names_the_problem() -> None:
    ingest = Ingest(DEVICE)
    (bad,) = ingest.receive(f"{PREFIX}/up/{DEVICE}/hello", b'{"device": 1}', 0.0)
    assert isinstance(bad, InvalidMessage) and "hello" in bad.reason
    (other,) = ingest.receive(hello_topic("BC-0002"), b"{}", 0.0)
    assert isinstance(other, InvalidMessage)
    hello = Hello("BC-0002", "1.0", 50, ())
    (spoof,) = ingest.receive(hello_topic(DEVICE), hello.encode(), 0.0)
    assert isinstance(spoof, InvalidMessage) and "hello.device" in spoof.reason
    with pytest.raises(ProtocolError):
        ingest.chunk_stored("0" * 32, 0, 1)  # the edge's mistake, not the device's


def test_ingest_hello_after_restart_wants_the_right_offsets() -> None:
    a, b, c = b"a" * 3000, b"b" * 500, b"c" * 10
    offers = [offer_for(n, d) for n, d in (("a.ts.bce", a), ("b.ts.bce", b), ("c.ts.bce", c))]
    body = make_receipt_body(dock="D", device=DEVICE, init=offers[2], stored_at=5,
                             archive_path="p")
    ingest = Ingest(DEVICE, stored={offers[0].file_id: 2048, offers[1].file_id: 900},
                    archived={offers[2].file_id: Receipt(body, b"sig")})
    hello = Hello(DEVICE, "fw", 80, tuple(offers))
    outputs = ingest.receive(hello.topic(DEVICE), hello.encode(), 0.0)
    assert isinstance(outputs[0], DeviceHello)
    # 900 bytes stored of a 500-byte file cannot be right: discarded, wanted from 0.
    assert DiscardFile(offers[1].file_id, "900 bytes stored, more than the file's 500") in outputs
    want = Want.decode(next(p for p in outputs if isinstance(p, Publish)
                            and p.topic.endswith("/want")).payload)
    assert want.files == ((offers[0].file_id, 2048), (offers[1].file_id, 0))
    assert want.known == (offers[2].file_id,)
    assert Receipt.decode(outputs[-1].payload).body == body


def uploader_with(data: bytes, **options: Any) -> tuple[Uploader, FileOffer, list]:
    offer = offer_for("a.ts.bce", data)
    up = Uploader(DEVICE, [offer], lambda o, off, n: data[off:off + n], **options)
    up.start()
    want = Want(((offer.file_id, 0),), ())
    out = up.receive(want.topic(DEVICE), want.encode())
    return up, offer, out


def deliver(up: Uploader, message: Ack | Receipt) -> list:
    return up.receive(message.topic(DEVICE), message.encode())


def test_uploader_window_acks_and_fin() -> None:
    data = bytes(5 * 100)
    up, offer, out = uploader_with(data, chunk_size=100, window=2)
    assert [parse_topic(p.topic).kind for p in out] == [Kind.INIT, Kind.CHUNK, Kind.CHUNK]
    out = deliver(up, Ack(offer.file_id, 100, AckStatus.OK, "stored"))
    assert [parse_topic(p.topic).offset for p in out] == [200]
    assert deliver(up, Ack(offer.file_id, 100, AckStatus.OK, "stored")) == [], "duplicate ack"
    # Cumulative: one ack at 300 confirms the chunks at 100 and 200.
    out = deliver(up, Ack(offer.file_id, 300, AckStatus.OK, "stored"))
    # The last chunk out, the fin goes at once, before the acks (the dock holds it).
    assert [parse_topic(p.topic).kind for p in out] == [Kind.CHUNK, Kind.CHUNK, Kind.FIN]
    assert [parse_topic(p.topic).offset for p in out[:2]] == [300, 400]
    assert Fin.decode(out[2].payload) == Fin(offer.file_id, 500, offer.sha256)
    assert deliver(up, Ack(offer.file_id, 500, AckStatus.OK, "stored")) == []
    body = make_receipt_body(dock="D", device=DEVICE, init=offer, stored_at=1, archive_path="p")
    receipt = Receipt(body, b"sig")
    out = deliver(up, receipt)
    assert out == [ReceiptReceived(offer.file_id, receipt), Done((offer.file_id,), ())]
    assert deliver(up, receipt) == [], "duplicate receipt"
    assert deliver(up, Ack(offer.file_id, 0, AckStatus.RESEND, "gap")) == [], "stale ack"


def test_uploader_resend_and_restart() -> None:
    data = bytes(range(250))
    up, offer, out = uploader_with(data, chunk_size=100, window=3)
    assert len(out) == 5  # init, three chunks, and the fin after the last
    out = deliver(up, Ack(offer.file_id, 100, AckStatus.RESEND, "checksum"))
    assert [parse_topic(p.topic).offset for p in out[:2]] == [100, 200]
    assert parse_topic(out[2].topic).kind is Kind.FIN
    out = deliver(up, Ack(offer.file_id, 0, AckStatus.RESTART, "verify_failed"))
    assert [parse_topic(p.topic).kind for p in out] == [Kind.INIT, Kind.CHUNK, Kind.CHUNK,
                                                        Kind.CHUNK, Kind.FIN]
    out = deliver(up, Ack(offer.file_id, 0, AckStatus.REJECTED, "unknown_file", "no init"))
    assert out[0] == FileFailed(offer.file_id, "rejected by the dock (unknown_file: no init)")
    assert isinstance(out[1], Done) and out[1].failed == (offer.file_id,)


@pytest.mark.req("R13.2")
def test_uploader_refuses_a_receipt_for_other_bytes() -> None:
    up, offer, _ = uploader_with(b"abc")
    body = make_receipt_body(dock="D", device=DEVICE, init=offer, stored_at=1, archive_path="p")
    body["name"] = "other.ts.bce"
    out = deliver(up, Receipt(body, b"sig"))
    assert isinstance(out[0], InvalidMessage) and "body.name" in out[0].reason
    assert isinstance(out[1], FileFailed)
    assert not any(isinstance(o, ReceiptReceived) for o in out)


def test_uploader_retry_goes_back_to_the_last_ack() -> None:
    up, offer, out = uploader_with(bytes(300), chunk_size=100, window=2)
    deliver(up, Ack(offer.file_id, 100, AckStatus.OK, "stored"))
    out = up.retry()
    # The init again (the link that lost the chunks may have lost it), then the chunks.
    assert [parse_topic(p.topic).kind for p in out] == [Kind.INIT, Kind.CHUNK, Kind.CHUNK,
                                                        Kind.FIN]
    assert [parse_topic(p.topic).offset for p in out[1:3]] == [100, 200]


def test_uploader_input_checks() -> None:
    offer = offer_for("a.ts.bce", b"x")
    with pytest.raises(ProtocolError, match="files"):
        Uploader(DEVICE, [offer, offer], lambda o, a, b: b"")
    with pytest.raises(ProtocolError, match="device"):
        Uploader("bad/id", [offer], lambda o, a, b: b"")
    with pytest.raises(ProtocolError, match="chunk_size"):
        Uploader(DEVICE, [offer], lambda o, a, b: b"", chunk_size=MAX_CHUNK_BYTES + 1)
    many = [offer_for(f"f{i:05d}.ts.bce", str(i).encode()) for i in range(1500)]
    assert Uploader(DEVICE, many, lambda o, a, b: b"").pages > 1  # offered in pages
    batches = split_offers(many)
    assert [o for b in batches for o in b] == many and len(batches) > 1
    for batch in batches:
        assert len(Hello(DEVICE, "x" * 64, 100, tuple(batch)).encode()) <= MAX_HELLO_BYTES
    up = Uploader(DEVICE, [offer], lambda o, a, b: b"")
    (early,) = up.receive(f"{PREFIX}/down/{DEVICE}/want", b"{}")
    assert isinstance(early, InvalidMessage) and "before start" in early.reason
    up.start()
    with pytest.raises(ProtocolError):
        up.start()


def backlog(n: int) -> dict[str, bytes]:
    """``n`` small files with long, realistic names: far more than one hello holds."""
    return {f"BC-0001_20261129T010100Z_{i:06d}_20261129T010130Z.ts.bce": i.to_bytes(4, "big") * 3
            for i in range(n)}


def test_a_backlog_too_long_for_one_hello_goes_page_after_page_in_one_session() -> None:
    files = backlog(2500)
    device = DeviceEdge(files, chunk_size=CHUNK, window=8)
    assert device.uploader.pages >= 3
    order = [offer.name for offer, _ in device.files.values()]
    dock = DockEdge()
    assert run(device, dock)
    assert_all_archived(device, dock, files)
    hellos = [e.hello for e in dock.log if isinstance(e, DeviceHello)]
    assert [h.page for h in hellos] == list(range(device.uploader.pages))
    assert [o.name for h in hellos for o in h.files] == order, "oldest first, each once"
    assert hellos[0].more_files == len(files) - len(hellos[0].files)
    assert hellos[0].more_bytes == sum(map(len, files.values())) - sum(o.size for o in hellos[0].files)
    assert hellos[-1].more_files == hellos[-1].more_bytes == 0
    for hello in hellos:
        assert len(hello.encode()) <= MAX_HELLO_BYTES
    (done,) = device.of_type(Done)  # one Done, after the last page
    assert len(done.receipted) == len(files) and not done.failed
    assert set(dock.archived_count.values()) == {1}


def test_paged_backlog_resumes_mid_page_after_a_cut() -> None:
    files = backlog(2000)
    device = DeviceEdge(files, chunk_size=CHUNK, window=8)
    dock = DockEdge()
    assert not run(device, dock, cut_after_chunks=1200)  # the link drops in the second page
    assert 0 < len(device.files) < len(files)
    dock.restart()
    device.new_session()  # the next docking offers only what is left
    assert run(device, dock)
    assert not device.files and set(dock.archived_count.values()) == {1}
    assert max(device.chunks_sent.values()) <= 2  # at most the chunk in flight at the cut


def test_a_late_want_for_an_earlier_page_is_not_taken_for_the_present_one() -> None:
    files = backlog(1500)
    device = DeviceEdge(files, chunk_size=CHUNK, window=8)
    dock = DockEdge()
    wants: list[Publish] = []
    replayed: list[list] = []

    def replay_the_first_want(publish: Publish) -> list[Publish]:
        # When page 1's hello goes out, the dock's answer to page 0 arrives once more
        # (the device had sent page 0's hello twice): it must change nothing.
        if publish.topic.endswith("/hello") and Hello.decode(publish.payload).page == 1:
            replayed.append(device.uploader.receive(wants[0].topic, wants[0].payload))
            assert device.uploader.state is UploaderState.HELLO_SENT
        return [publish]

    hello = device.uploader.start()
    answer = dock.receive(hello[0])
    wants += [p for p in answer if p.topic.endswith("/want")]
    assert Want.decode(wants[0].payload).page == 0
    first = device.uploader.receive(wants[0].topic, wants[0].payload)
    assert run(device, dock, first=first, tamper=replay_the_first_want)
    assert replayed == [[]]
    assert not device.files and not device.of_type(FileFailed)


def test_empty_session_is_done_at_once() -> None:
    up = Uploader(DEVICE, [], lambda o, a, b: b"")
    up.start()
    want = Want((), ())
    assert up.receive(want.topic(DEVICE), want.encode()) == [Done((), ())]


# --- topics -------------------------------------------------------------------------------------

FID = "0123456789abcdef" * 2
SHA = "0123456789abcdef" * 4


def test_topics_round_trip() -> None:
    topics = [
        (f"{PREFIX}/up/{DEVICE}/hello", Topic(Kind.HELLO, DEVICE)),
        (f"{PREFIX}/up/{DEVICE}/init/{FID}", Topic(Kind.INIT, DEVICE, FID)),
        (f"{PREFIX}/up/{DEVICE}/chunk/{FID}/262144/{SHA}",
         Topic(Kind.CHUNK, DEVICE, FID, 262144, SHA)),
        (f"{PREFIX}/up/{DEVICE}/chunk/{FID}/262144",  # the checksum is optional
         Topic(Kind.CHUNK, DEVICE, FID, 262144)),
        (f"{PREFIX}/up/{DEVICE}/fin/{FID}", Topic(Kind.FIN, DEVICE, FID)),
        (f"{PREFIX}/up/{DEVICE}/time/req", Topic(Kind.TIME_REQUEST, DEVICE)),
        (f"{PREFIX}/down/{DEVICE}/want", Topic(Kind.WANT, DEVICE)),
        (f"{PREFIX}/down/{DEVICE}/ack/{FID}", Topic(Kind.ACK, DEVICE, FID)),
        (f"{PREFIX}/down/{DEVICE}/receipt/{FID}", Topic(Kind.RECEIPT, DEVICE, FID)),
        (f"{PREFIX}/down/{DEVICE}/time/resp", Topic(Kind.TIME_RESPONSE, DEVICE)),
    ]
    for text, topic in topics:
        assert parse_topic(text) == topic and str(topic) == text
    assert chunk_topic(DEVICE, FID, 0, SHA).endswith(f"/chunk/{FID}/0/{SHA}")
    assert dock_subscription() == "bodycam/v1/up/+/#"
    assert device_subscription(DEVICE) == f"bodycam/v1/down/{DEVICE}/#"


@pytest.mark.parametrize("topic, field, words", [
    ("bodycam/v2/up/BC-0001/hello", "topic.version", "v2"),
    ("other/v1/up/BC-0001/hello", "topic", "not under bodycam/v1/"),
    ("bodycam/v1/sideways/BC-0001/hello", "topic.direction", "neither"),
    ("bodycam/v1/up/BC 0001/hello", "topic.device", "not a device id"),
    ("bodycam/v1/up/-BC/hello", "topic.device", "not a device id"),
    ("bodycam/v1/up/" + "A" * 33 + "/hello", "topic.device", "not a device id"),
    ("bodycam/v1/up/+/hello", "topic.device", "not a device id"),
    (f"bodycam/v1/up/BC-0001/init/{FID[:-1]}g", "topic.file_id", "hex"),
    (f"bodycam/v1/up/BC-0001/init/{FID.upper()}", "topic.file_id", "hex"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}/12a/{SHA}", "topic.offset", "decimal"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}/-1/{SHA}", "topic.offset", "decimal"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}/007/{SHA}", "topic.offset", "leading zeros"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}/99999999999999999/{SHA}", "topic.offset", "decimal"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}/0/{SHA[:-1]}", "topic.sha256", "SHA-256"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}/0/{SHA}/x", "topic", "too many levels"),
    (f"bodycam/v1/up/BC-0001/chunk/{FID}", "topic", "needs"),
    ("bodycam/v1/up/BC-0001/hello/again", "topic", "too many levels"),
    ("bodycam/v1/up/BC-0001/want", "topic.kind", "not a 'up' message"),
    ("bodycam/v1/down/BC-0001/time/req", "topic.kind", "not a 'down' message"),
    ("bodycam/v1/up/BC-0001", "topic", "too short"),
])
def test_malformed_topics_are_named(topic: str, field: str, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_topic(topic)
    assert caught.value.field == field
    assert words in str(caught.value)


# --- payloads -------------------------------------------------------------------------------------

def test_decode_errors_name_the_field() -> None:
    offer = offer_for("a.ts.bce", b"x")
    good = json.loads(Hello(DEVICE, "1", 9, (offer, offer_for("b", b"y"))).encode())
    good["files"][1]["size"] = -1
    with pytest.raises(ProtocolError, match=r"hello\.files\[1\]\.size: -1 is outside"):
        Hello.decode(json.dumps(good).encode())
    # The page members a later revision added: optional, but checked when present.
    good["files"][1]["size"] = 1
    assert Hello.decode(json.dumps({k: v for k, v in good.items()
                                    if k not in ("page", "more_files", "more_bytes")}
                                   ).encode()).page == 0
    for key, value, expect in [("page", -1, "hello.page: -1 is outside"),
                               ("page", "1", "hello.page: must be an integer"),
                               ("more_files", True, "hello.more_files: must be an integer"),
                               ("more_bytes", 2**53, "hello.more_bytes: 9007199254740992")]:
        with pytest.raises(ProtocolError, match=expect.replace(".", r"\.")):
            Hello.decode(json.dumps({**good, key: value}).encode())
    want = json.loads(Want(((offer.file_id, 0),), (), page=2).encode())
    assert Want.decode(json.dumps(want).encode()).page == 2
    assert Want.decode(json.dumps({k: v for k, v in want.items() if k != "page"}).encode()).page == 0
    with pytest.raises(ProtocolError, match=r"want\.page: must be an integer"):
        Want.decode(json.dumps({**want, "page": None}).encode())
    init = json.loads(Init.from_offer(offer).encode())
    for key, value, expect in [("sha256", "xyz", "init.sha256"),
                               ("name", "../../etc/passwd", "init.name"),
                               ("name", ".hidden", "init.name"),
                               ("size", True, "init.size: must be an integer, not bool"),
                               ("file_id", "0" * 32, "init.file_id: is not the first 32"),
                               ("kind", "Media!", "init.kind")]:
        with pytest.raises(ProtocolError, match=expect.replace(".", r"\.")):
            Init.decode(json.dumps({**init, key: value}).encode())
    with pytest.raises(ProtocolError, match=r"init\.activity: missing"):
        Init.decode(json.dumps({k: v for k, v in init.items() if k != "activity"}).encode())
    with pytest.raises(ProtocolError, match="duplicate key"):
        Fin.decode(b'{"file_id":"a","file_id":"b","size":1,"sha256":"c"}')
    with pytest.raises(ProtocolError, match=r"ack\.status: must be one of"):
        Ack.decode(b'{"file_id":"' + FID.encode() + b'","next_offset":0,"status":"maybe",'
                   b'"reason":""}')
    with pytest.raises(ProtocolError, match="over the limit"):
        Ack.decode(b" " * (64 * 1024 + 1))
    with pytest.raises(ProtocolError, match="finite"):
        TimeRequest.decode(b'{"t1": 1e999}')
    with pytest.raises(ProtocolError, match="not acceptable JSON"):
        TimeRequest.decode(b'{"t1": NaN}')
    with pytest.raises(ProtocolError, match="nested too deeply"):
        Fin.decode(b"[" * 50_000)
    with pytest.raises(ProtocolError, match=r"receipt\.signature"):
        Receipt.decode(b'{"body": {}, "signature": "not base64!"}')
    with pytest.raises(ProtocolError, match=r"receipt\.body\.stored_at: missing"):
        body = make_receipt_body(dock="D", device=DEVICE, init=offer, stored_at=1,
                                 archive_path="p")
        del body["stored_at"]
        Receipt.decode(json.dumps({"body": body, "signature": "AA=="}).encode())
    with pytest.raises(ProtocolError, match="has no place in a signed receipt"):
        make_receipt_body(dock="D", device=DEVICE, init=offer, stored_at=1, archive_path="p",
                          rate=1.5)
    with pytest.raises(ProtocolError, match=r"init\.file_id: .* differs from the topic"):
        decode_message(Topic(Kind.INIT, DEVICE, FID), Init.from_offer(offer).encode())


@pytest.mark.req("R13.2")
def test_receipt_signature_covers_canonical_body() -> None:
    offer = offer_for("a.ts.bce", b"evidence")
    body = make_receipt_body(dock="DOCK-1", device=DEVICE, init=offer, stored_at=7,
                             archive_path="BC-0001/x/a.ts.bce", verified=True)
    receipt = Receipt(body, DOCK_KEY.sign(Receipt(body, b"-").signed_bytes()))
    wire = Receipt.decode(receipt.encode())
    DOCK_KEY.public_key().verify(wire.signature, wire.signed_bytes())
    assert wire.signed_bytes() == json.dumps(body, sort_keys=True, separators=(",", ":"),
                                             ensure_ascii=False).encode()
    assert wire.mismatch(offer, DEVICE) is None


# --- property tests ---------------------------------------------------------------------------

hexdigits = st.text("0123456789abcdef", min_size=64, max_size=64)
names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                min_size=1, max_size=40).filter(lambda s: not s.startswith("."))
devices = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
sizes = st.integers(0, 2**53 - 1)
# Times in UTC seconds: anything within the protocol's ±1e11 (fields.MAX_SECONDS).
numbers = st.one_of(st.integers(-10**11, 10**11), st.floats(-1e11, 1e11))


@st.composite
def offers(draw: st.DrawFn) -> FileOffer:
    activity = draw(names.filter(lambda s: len(s.encode()) <= 64))
    return FileOffer.of(name=draw(names), activity=activity,
                        size=draw(sizes), sha256=draw(hexdigits),
                        manifest=draw(st.none() | names),
                        kind=draw(st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z")))


@st.composite
def messages(draw: st.DrawFn) -> object:
    offer = draw(offers())
    which = draw(st.integers(0, 8))
    if which == 0:
        files = draw(st.lists(offers(), max_size=4, unique_by=lambda o: o.file_id))
        return Hello(draw(devices), draw(st.text(st.characters(blacklist_categories=("Cs", "Cc")),
                                                 max_size=20)),
                     draw(st.none() | st.integers(0, 100)), tuple(files))
    if which == 1:
        ids = draw(st.lists(hexdigits.map(lambda h: h[:32]), unique=True, max_size=6))
        cut = draw(st.integers(0, len(ids)))
        return Want(tuple((i, draw(sizes)) for i in ids[:cut]), tuple(ids[cut:]),
                    draw(st.integers(1, MAX_CHUNK_BYTES)))
    if which == 2:
        return Init.from_offer(offer)
    if which == 3:
        return Chunk.of(offer.file_id, draw(sizes), draw(st.binary(max_size=300)))
    if which == 4:
        return Ack(offer.file_id, draw(sizes), draw(st.sampled_from(list(AckStatus))),
                   draw(st.sampled_from(list(Reason))), draw(names))
    if which == 5:
        return Fin(offer.file_id, offer.size, offer.sha256)
    if which == 6:
        body = make_receipt_body(dock=draw(names), device=draw(devices), init=offer,
                                 stored_at=draw(st.integers(0, 2**53 - 1)),
                                 archive_path=draw(names), note=draw(names))
        return Receipt(body, draw(st.binary(min_size=1, max_size=100)))
    if which == 7:
        return TimeRequest(draw(numbers))
    return TimeResponse(draw(numbers), draw(numbers), draw(numbers))


@FAST
@given(messages(), devices)
def test_encode_decode_round_trip(message: object, device: str) -> None:
    if isinstance(message, Hello):
        device = message.device  # the dock refuses a hello from another device's prefix
    topic = message.topic(device)  # type: ignore[attr-defined]
    parsed, decoded = decode_message(topic, message.encode())  # type: ignore[attr-defined]
    assert decoded == message and str(parsed) == topic
    if not isinstance(message, Chunk):
        assert type(message).decode(message.encode()) == message  # type: ignore[attr-defined]


topic_levels = st.lists(st.sampled_from(["bodycam", "v1", "up", "down", DEVICE, "hello",
                                         "init", "chunk", "fin", "time", "req", "resp", "want",
                                         "ack", "receipt", FID, SHA, "0", "12", "", "+", "#",
                                         "x"]) | st.text(max_size=8), max_size=9)


@FAST
@given(st.one_of(st.text(max_size=300), topic_levels.map("/".join),
                 st.integers(), st.none(), st.binary(max_size=20)))
def test_parse_topic_raises_only_protocol_error(topic: object) -> None:
    try:
        parsed = parse_topic(topic)  # type: ignore[arg-type]
    except ProtocolError:
        return
    assert parse_topic(str(parsed)) == parsed


json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
field_names = st.sampled_from(["device", "firmware", "battery_percent", "files", "known",
                               "chunk_limit", "file_id", "name", "activity", "size", "sha256",
                               "manifest", "kind", "next_offset", "status", "reason", "detail",
                               "body", "signature", "t1", "t2", "t3", "offset"])
json_objects = st.dictionaries(field_names, json_values | hexdigits | hexdigits.map(
    lambda h: h[:32]), max_size=10).map(lambda d: json.dumps(d).encode())
payloads = st.one_of(st.binary(max_size=200), json_objects,
                     st.text(max_size=50).map(lambda s: s.encode("utf-8", "surrogatepass")))
any_topic = st.one_of(
    st.sampled_from([str(Topic(k, DEVICE, FID if k in (Kind.INIT, Kind.CHUNK, Kind.FIN,
                                                        Kind.ACK, Kind.RECEIPT) else None,
                               0 if k is Kind.CHUNK else None, SHA if k is Kind.CHUNK else None))
                     for k in Kind]),
    topic_levels.map("/".join))


@FAST
@given(st.sampled_from([Hello, Want, Init, Ack, Fin, Receipt, TimeRequest, TimeResponse]),
       payloads)
def test_decode_raises_only_protocol_error(cls: type, payload: bytes) -> None:
    try:
        cls.decode(payload)  # type: ignore[attr-defined]
    except ProtocolError:
        pass


@FAST
@given(any_topic, payloads)
def test_decode_message_raises_only_protocol_error(topic: str, payload: bytes) -> None:
    try:
        decode_message(topic, payload)
    except ProtocolError:
        pass


@FAST
@given(st.lists(st.tuples(any_topic, payloads), max_size=6))
def test_state_machines_never_raise_on_peer_input(inputs: list[tuple[str, bytes]]) -> None:
    ingest = Ingest(DEVICE)
    up = Uploader(DEVICE, [offer_for("a", b"a")], lambda o, off, n: b"a"[off:off + n])
    up.start()
    for topic, payload in inputs:
        for out in ingest.receive(topic, payload, 0.0):
            assert isinstance(out, (Publish, InvalidMessage, DeviceHello, OpenFile, StoreChunk,
                                    CompleteFile, DiscardFile))
        for out in up.receive(topic, payload):
            assert isinstance(out, (Publish, InvalidMessage, ReceiptReceived, FileFailed,
                                    TimeReceived, Done))


@FAST
@given(st.floats(-1e6, 1e6), st.floats(0, 10), st.floats(0, 1), st.floats(-1e4, 1e4))
def test_clock_offset_recovers_the_error_over_a_symmetric_path(
        true_send: float, delay: float, processing: float, device_error: float) -> None:
    t1 = true_send + device_error
    t2 = true_send + delay
    t3 = t2 + processing
    t4 = t3 + delay + device_error
    offset, round_trip = clock_offset(t1, t2, t3, t4)
    assert offset == pytest.approx(-device_error, abs=1e-6)
    assert round_trip == pytest.approx(2 * delay, abs=1e-6)


def test_clock_offset_known_values() -> None:
    # Device 5 s behind the dock, 0.1 s each way, 0.02 s in the dock.
    assert clock_offset(10.0, 15.1, 15.12, 10.22) == pytest.approx((5.0, 0.2))


# --- a broker restart at any moment: the session finishes by itself -------------------------

def run_dropping(device: DeviceEdge, dock: DockEdge, drop_at: int, *,
                 first: list | None = None) -> int:
    """Carry messages both ways in order; at the ``drop_at``-th message everything on the
    link is lost (a broker restart loses what it holds, both ways). Returns how many
    messages were carried."""
    link: deque[tuple[str, Publish]] = deque()
    link.extend(("up", p) for p in device.handle(first if first is not None
                                                  else device.uploader.start()))
    carried = 0
    while link:
        if carried == drop_at:
            link.clear()
            break
        direction, publish = link.popleft()
        carried += 1
        if direction == "up":
            link.extend(("down", q) for q in dock.receive(publish))
        else:
            outputs = device.uploader.receive(publish.topic, publish.payload)
            link.extend(("up", q) for q in device.handle(outputs))
    return carried


def finish_with_retries(device: DeviceEdge, dock: DockEdge, retries: int = 8) -> None:
    """What the device edge does after the link is back: retry(), and again after each
    silence, until the session is over — in the same session, without a new hello."""
    for _ in range(retries):
        if device.uploader.state is UploaderState.DONE:
            return
        run_dropping(device, dock, -1, first=device.uploader.retry())


def interleavings() -> list[int]:
    """Every point of a clean session's message sequence."""
    device, dock = DeviceEdge(sample_files(), chunk_size=CHUNK, window=4), DockEdge()
    return list(range(run_dropping(device, dock, -1) + 1))


@pytest.mark.parametrize("drop_at", interleavings())
def test_a_link_lost_at_any_message_is_recovered_by_retry_in_the_same_session(drop_at: int) -> None:
    """A broker restart can lose any message in flight either way — an init, a chunk, an
    ack, a fin, a receipt, the want. retry() after the reconnect must bring every file to
    its receipt in the same session: none failed, none left for the next docking."""
    files = sample_files()
    device, dock = DeviceEdge(files, chunk_size=CHUNK, window=4), DockEdge()
    run_dropping(device, dock, drop_at)
    finish_with_retries(device, dock)
    assert not device.of_type(FileFailed), device.of_type(FileFailed)
    assert_all_archived(device, dock, files)
    assert set(dock.archived_count.values()) == {1}
    # Nothing the dock confirmed was stored again.
    assert max(dock.stores.values()) == 1


@FAST
@given(st.lists(st.integers(0, 60), min_size=1, max_size=3), st.integers(1, 6))
def test_repeated_restarts_still_finish_in_the_same_session(drops: list[int], window: int) -> None:
    """Several restarts, each at any point of what is left: retry() after each brings every
    file home in one session, nothing confirmed is stored twice."""
    files = sample_files()
    device, dock = DeviceEdge(files, chunk_size=CHUNK, window=window), DockEdge()
    first = None
    for drop_at in drops:
        run_dropping(device, dock, drop_at, first=first)
        first = device.uploader.retry()
    run_dropping(device, dock, -1, first=first)
    finish_with_retries(device, dock)
    assert not device.of_type(FileFailed)
    assert_all_archived(device, dock, files)
    assert max(dock.stores.values()) == 1


def test_a_hello_sent_twice_reaches_the_dock_mid_transfer_and_the_session_still_finishes() -> None:
    """The want was slow (a busy dock), so the device said hello again; the dock answers the
    first, the device starts sending, then the second hello makes the dock start over from
    its disk, forgetting the inits it had. The files go on in the same session."""
    files = sample_files()
    device, dock = DeviceEdge(files, chunk_size=CHUNK, window=4), DockEdge()
    (hello,) = device.handle(device.uploader.start())
    again = device.uploader.retry()  # silence: the hello once more
    assert again == [hello]
    answer = dock.receive(hello)
    want = next(p for p in answer if p.topic.endswith("/want"))
    sending = device.handle(device.uploader.receive(want.topic, want.payload))
    up = deque(sending)
    for _ in range(3):  # the first init and chunks arrive ...
        dock.receive(up.popleft())
    dock.receive(hello)  # ... then the second hello: a new Ingest from the disk
    link = [p for item in up for p in dock.receive(item)]
    outputs = [o for p in link for o in device.uploader.receive(p.topic, p.payload)]
    run_dropping(device, dock, -1, first=outputs)
    finish_with_retries(device, dock)
    assert not device.of_type(FileFailed)
    assert_all_archived(device, dock, files)
    assert max(dock.stores.values()) == 1


def test_ingest_acknowledges_a_batch_of_stores_with_one_cumulative_ack_per_file() -> None:
    a, b = offer_for("a.ts.bce", bytes(range(250))), offer_for("b.ts.bce", bytes(300))
    ingest = Ingest(DEVICE, chunk_limit=100)
    stores = []
    for init, data in ((a, bytes(range(250))), (b, bytes(300))):
        ingest.receive(init.topic(DEVICE), init.encode(), 0.0)
        for offset in range(0, 200, 100):
            (store,) = ingest.receive(*chunk(init, offset, data[offset:offset + 100]), 0.0)
            stores.append((store.file_id, store.offset, len(store.data)))
    out = ingest.chunks_stored(stores)
    acks = [Ack.decode(p.payload) for p in out]
    assert [(k.file_id, k.next_offset, k.status) for k in acks] == [
        (a.file_id, 200, AckStatus.OK), (b.file_id, 200, AckStatus.OK)]
