"""Hostile dock-sync messages (issue 7): refused with a reason, and never at evidence's cost.

The in-memory edges of tests/test_sync_protocol.py carry a whole transfer (three files, a
device and a dock that signs real receipts) while messages are slipped in on the link:

* malformed ones — wrong topics (device, direction, version, kind, levels, file id, offset),
  truncated, oversized, non-UTF-8 or deeply nested payloads, duplicate keys, NaN, wrong
  types: each is answered by exactly one ``InvalidMessage`` that names the problem, and the
  transfer goes on byte for byte as it would have without them;
* anything at all, forged messages for the real files included (chunks, acks, receipts,
  init, fin): nothing raises, the archive never holds other bytes under a file's id, and
  the device deletes nothing without the dock's signed receipt for exactly those bytes;
* replays of earlier messages: a replayed chunk is acknowledged as a duplicate, nothing is
  stored twice, every file still arrives and is deleted once.

The device's own edge (``DeviceSync``, without a broker) deletes a file only for a receipt
signed by the dock's key: receipts signed by another key, with a garbled signature, or for
other bytes delete nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
import pytest

from firmware_py.evidence.keys import pem_public
from hostile import examples
from sync import protocol as p
from sync.device_sync import DeviceSync
from sync.credentials import DOCK_PUB
from test_sync_protocol import CHUNK, DEVICE, DOCK_KEY, DeviceEdge, DockEdge, sample_files

NOW = 1_000.0
OTHER_KEY = Ed25519PrivateKey.generate()  # a key that is not the dock's
WHAT = {p.Kind.HELLO: "hello", p.Kind.WANT: "want", p.Kind.INIT: "init", p.Kind.ACK: "ack",
        p.Kind.FIN: "fin", p.Kind.RECEIPT: "receipt", p.Kind.TIME_REQUEST: "time_request",
        p.Kind.TIME_RESPONSE: "time_response"}


@dataclass(frozen=True)
class Message:
    """One message on the link: ``up`` goes to the dock, ``down`` to the device."""

    direction: str
    topic: str
    payload: bytes


class RefusingDevice(DeviceEdge):
    """The device edge as ``DeviceSync`` behaves: a receipt the dock did not sign deletes
    nothing (the test edge it extends would raise instead)."""

    def __init__(self, files: dict[str, bytes], **options: Any) -> None:
        self.refused: list[str] = []
        super().__init__(files, **options)

    def handle(self, outputs: list) -> list[p.Publish]:
        kept = []
        for item in outputs:
            if isinstance(item, p.ReceiptReceived):
                try:
                    DOCK_KEY.public_key().verify(item.receipt.signature,
                                                 item.receipt.signed_bytes())
                except InvalidSignature:
                    self.refused.append(item.file_id)
                    continue
            kept.append(item)
        return super().handle(kept)


@dataclass
class Transfer:
    """What one run of the link left behind."""

    trace: list[Message]  # every message delivered, in order (slipped-in ones left out)
    archive: dict[str, bytes]
    deleted: list[str]
    device: RefusingDevice
    dock: DockEdge


# Before the n-th delivery this message goes to its receiver; an int k stands for a replay
# of the k-th message delivered so far (modulo their number).
Slip = tuple[int, Message | int]


def transfer(slips: Sequence[Slip] = (), *, answers: list | None = None) -> Transfer:
    """Run a whole transfer of ``sample_files()``; slipped-in messages go to their receiver
    and what it answers is appended to ``answers`` (and carried out, as any answer)."""
    device = RefusingDevice(sample_files(), chunk_size=CHUNK, window=4)
    dock = DockEdge()
    link: deque[Message] = deque(Message("up", q.topic, q.payload)
                                 for q in device.handle(device.uploader.start()))
    pending = sorted(slips, key=lambda s: s[0])
    trace: list[Message] = []
    for step in range(100_000):
        while pending and (pending[0][0] <= step or not link):  # the rest, once all is quiet
            slipped = pending.pop(0)[1]
            if isinstance(slipped, int):
                slipped = trace[slipped % len(trace)]
            link.extendleft(reversed(deliver(device, dock, slipped, answers)))
        if not link:
            return Transfer(trace, dict(dock.archive), sorted(device.deleted), device, dock)
        message = link.popleft()
        trace.append(message)
        link.extend(deliver(device, dock, message, None))
    raise AssertionError("the link never went quiet")


def deliver(device: RefusingDevice, dock: DockEdge, message: Message,
            answers: list | None) -> list[Message]:
    """Hand ``message`` to its receiver, carry out what it asks, return what it sends."""
    if message.direction == "up":
        outputs = dock.ingest.receive(message.topic, message.payload, NOW)
        replies = [Message("down", q.topic, q.payload) for q in dock.handle(outputs)]
    else:
        outputs = device.uploader.receive(message.topic, message.payload)
        replies = [Message("up", q.topic, q.payload) for q in device.handle(outputs)]
    if answers is not None:
        answers.append((message, outputs))
    return replies


@functools.cache
def clean() -> Transfer:
    """The transfer with nothing slipped in: every file archived, receipted and deleted."""
    run = transfer()
    files = sample_files()
    assert sorted(run.deleted) == sorted(files) and len(run.archive) == len(files)
    return run


# --- malformed messages ------------------------------------------------------------------------

KNOWN_LEVELS = {"hello", "init", "chunk", "fin", "time", "want", "ack", "receipt"}


@st.composite
def bad_topics(draw: st.DrawFn, topic: str) -> str:
    """``topic`` (one of ours) with one thing wrong in it."""
    levels = topic.split("/")
    has_file = len(levels) > 5 and levels[4] != "time"
    how = draw(st.sampled_from(["device", "direction", "version", "kind", "extra", "missing",
                                "file_id", "offset", "long", "prefix"]))
    if how == "device":
        levels[3] = draw(st.sampled_from(["BC-0002", "", "+", "#", "BC 0001", "-BC", "A" * 33,
                                          "BC-0001\x00"]))
    elif how == "direction":
        levels[2] = {"up": "down", "down": "up"}[levels[2]]
    elif how == "version":
        levels[1] = draw(st.sampled_from(["v2", "v0", "", "V1"]))
    elif how == "kind":
        levels[4] = draw(st.text(max_size=8).filter(lambda k: k not in KNOWN_LEVELS))
    elif how == "missing":
        levels.pop()
    elif how == "file_id" and has_file:
        levels[5] = draw(st.sampled_from([levels[5].upper(), levels[5][:-1], levels[5] + "0",
                                          "g" * 32, ""]))
    elif how == "offset" and levels[4] == "chunk":
        levels[6] = draw(st.sampled_from(["007", "-1", "1.0", "", "1e3", "9" * 17]))
    elif how == "long":
        levels.append("a" * p.MAX_TOPIC_CHARS)
    elif how == "prefix":
        levels[0] = draw(st.sampled_from(["", "Bodycam", "$SYS", "bodycam "]))
    else:
        levels.append(draw(st.sampled_from(["x", "", "#"])))  # one level too many
    return "/".join(levels)


JSON_BY_FAMILY = {"bool": [True, False], "number": [0, -1, 1.5, 2**60], "string": ["", "x", "0"],
                  "list": [[], [1]], "object": [{}, {"a": 1}]}


def family(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), "null")


@st.composite
def bad_payloads(draw: st.DrawFn, kind: p.Kind, payload: bytes) -> tuple[bytes, tuple[str, ...]]:
    """``payload`` (a JSON message of ``kind``) spoilt, and words the refusal must use."""
    what = WHAT[kind]
    how = draw(st.sampled_from(["truncated", "oversized", "duplicate", "nan", "type", "utf8",
                                "not_object", "nested"]))
    obj = json.loads(payload)
    if how == "truncated":
        return payload[:draw(st.integers(0, len(payload) - 1))], ("not acceptable JSON",
                                                                  "not UTF-8")
    if how == "oversized":
        limit = p.MAX_HELLO_BYTES if kind in (p.Kind.HELLO, p.Kind.WANT) else p.MAX_CONTROL_BYTES
        return payload + b" " * (limit + 1 - len(payload)), ("over the limit",)
    if how == "duplicate":
        key = draw(st.sampled_from(sorted(obj)))
        return b"{" + json.dumps(key).encode() + b":0," + payload[1:], ("duplicate key",)
    if how == "nan":
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return b'{"x":' + constant.encode() + b"," + payload[1:], ("is not a JSON number",)
    if how == "type":
        key = draw(st.sampled_from(sorted(k for k, v in obj.items() if v is not None)))
        value = draw(st.sampled_from([v for f, vs in JSON_BY_FAMILY.items()
                                      if f != family(obj[key]) for v in vs]))
        return json.dumps({**obj, key: value}).encode(), (f"{what}.{key}",)
    if how == "utf8":
        i = payload.index(b'"') + 1
        return payload[:i] + b"\xff" + payload[i:], ("not UTF-8",)
    if how == "not_object":
        return draw(st.sampled_from([b"[]", b'"x"', b"1", b"null", b"true"])), \
            ("must be a JSON object",)
    return b"[" * 5000 + b"]" * 5000, ("nested too deeply",)


@st.composite
def malformed(draw: st.DrawFn) -> tuple[Message, tuple[str, ...]]:
    """A message of the clean transfer with one thing wrong, and words its refusal must use."""
    original = draw(st.sampled_from(clean().trace))
    kind = p.parse_topic(original.topic).kind
    if kind is p.Kind.CHUNK or draw(st.booleans()):  # a chunk's payload is any bytes
        topic = draw(bad_topics(original.topic))
        return Message(original.direction, topic, original.payload), \
            ("topic", "not from", "not addressed")
    payload, words = draw(bad_payloads(kind, original.payload))
    return Message(original.direction, original.topic, payload), words


@examples(60)
@given(st.lists(st.tuples(st.integers(0, 80), malformed()), max_size=6))
def test_malformed_messages_are_refused_by_name_and_change_nothing(
        slips: list[tuple[int, tuple[Message, tuple[str, ...]]]]) -> None:
    answers: list = []
    run = transfer([(step, message) for step, (message, _) in slips], answers=answers)
    assert len(answers) == len(slips)
    expected = {id(message): words for _, (message, words) in slips}
    for message, outputs in answers:
        assert len(outputs) == 1 and isinstance(outputs[0], p.InvalidMessage), outputs
        reason = outputs[0].reason
        assert "\n" not in reason and len(reason) < 2000
        assert any(word in reason for word in expected[id(message)]), (reason, message.topic)
    base = clean()
    assert run.trace == base.trace, "a refused message changed what followed"
    assert run.archive == base.archive and run.deleted == base.deleted


# --- anything at all, forged messages included -----------------------------------------------

@functools.cache
def originals() -> dict[str, tuple[p.FileOffer, bytes]]:
    """The device's files by file id: what it offers, and the bytes."""
    return dict(RefusingDevice(sample_files()).files)


def offers() -> list[p.FileOffer]:
    return [offer for offer, _ in originals().values()]


@st.composite
def forged(draw: st.DrawFn) -> Message:
    """A message someone on the broker could send: well-formed, about the real files."""
    offer = draw(st.sampled_from(offers()))
    fid = offer.file_id
    how = draw(st.sampled_from(["chunk", "ack", "receipt", "init", "fin", "hello", "want",
                                "time", "replay"]))
    if how == "chunk":
        data = draw(st.binary(max_size=2 * CHUNK))
        offset = draw(st.sampled_from([0, CHUNK, 2 * CHUNK, offer.size]) | st.integers(0, 10**6))
        sha = hashlib.sha256(data).hexdigest() if draw(st.booleans()) else "0" * 64
        return Message("up", p.chunk_topic(DEVICE, fid, offset, sha), data)
    if how == "ack":
        ack = p.Ack(fid, draw(st.integers(0, offer.size + 10)), draw(st.sampled_from(
            list(p.AckStatus))), draw(st.sampled_from(list(p.Reason))))
        return Message("down", ack.topic(DEVICE), ack.encode())
    if how == "receipt":
        body = p.make_receipt_body(dock="dock", device=DEVICE, init=offer, stored_at=1,
                                   archive_path="x", verified=True)
        unsigned = p.Receipt(body, b"-").signed_bytes()
        signature = draw(st.sampled_from([OTHER_KEY.sign(unsigned), bytes(64)])
                         | st.binary(min_size=1, max_size=100))
        receipt = p.Receipt(body, signature)
        return Message("down", receipt.topic(DEVICE), receipt.encode())
    if how == "init":
        init = p.Init(fid, draw(st.sampled_from([offer.name, "other.ts.bce"])), offer.activity,
                      draw(st.sampled_from([offer.size, offer.size + 1, 0])), offer.sha256,
                      offer.manifest, offer.kind)
        return Message("up", init.topic(DEVICE), init.encode())
    if how == "fin":
        fin = p.Fin(fid, draw(st.sampled_from([offer.size, offer.size + 1, 0])), offer.sha256)
        return Message("up", fin.topic(DEVICE), fin.encode())
    if how == "hello":
        hello = p.Hello(DEVICE, "x", None, tuple(draw(st.lists(st.sampled_from(offers()),
                                                               unique=True))),
                        page=draw(st.integers(0, 3)), more_files=draw(st.integers(0, 10**6)),
                        more_bytes=draw(st.integers(0, 2**53 - 1)))
        return Message("up", hello.topic(DEVICE), hello.encode())
    if how == "want":
        want = p.Want(((fid, draw(st.integers(0, offer.size + 5))),), (),
                      page=draw(st.integers(0, 3)))
        return Message("down", want.topic(DEVICE), want.encode())
    if how == "time":
        response = p.TimeResponse(draw(st.floats(-1e9, 1e9)), NOW, NOW)
        return Message("down", response.topic(DEVICE), response.encode())
    return draw(st.sampled_from(clean().trace))


anything = st.one_of(
    forged(),
    malformed().map(lambda m: m[0]),
    st.builds(Message, st.sampled_from(["up", "down"]),
              st.text(max_size=60) | st.sampled_from([m.topic for m in clean().trace]),
              st.binary(max_size=300)),
    # Not even the types an MQTT client hands over.
    st.builds(Message, st.sampled_from(["up", "down"]),
              st.none() | st.integers() | st.binary(max_size=20),
              st.none() | st.text(max_size=20) | st.integers()))


@examples(80)
@given(st.lists(st.tuples(st.integers(0, 80), anything), max_size=8))
@pytest.mark.req("R13.2")
def test_nothing_on_the_link_puts_other_bytes_in_the_archive_or_deletes_unsafely(
        slips: list[Slip]) -> None:
    run = transfer(slips)  # raises if a state machine or an edge does
    device_bytes = {file_id: data for file_id, (_, data) in originals().items()}
    for file_id, data in device_bytes.items():
        if file_id in run.archive:
            assert run.archive[file_id] == data, "the archive holds other bytes for a file"
    # A receipt the dock signed in the clean run, replayed here, is the dock's word that it
    # holds those very bytes (receipts name content, not sessions): it may delete.
    replayed = {p.parse_topic(m.topic).file_id for _, m in slips
                if m in clean().trace and "/receipt/" in m.topic}
    deleted_ids = set(device_bytes) - set(run.device.files)
    for file_id in deleted_ids:
        assert run.archive.get(file_id) == device_bytes[file_id] or (
            file_id in replayed and clean().archive[file_id] == device_bytes[file_id]), \
            "deleted without a receipt for the bytes"
    assert len(run.deleted) == len(deleted_ids)


# --- replays -----------------------------------------------------------------------------------

@examples(60)
@given(st.lists(st.tuples(st.integers(1, 80), st.integers(0, 10**6)), min_size=1, max_size=8))
def test_replayed_messages_are_duplicates_and_store_nothing_twice(
        replays: list[tuple[int, int]]) -> None:
    base = clean()
    answers: list = []
    run = transfer(replays, answers=answers)  # each replays a message delivered before it
    assert run.archive == base.archive and run.deleted == base.deleted
    assert all(count == 1 for count in run.dock.stores.values()), "a chunk was stored twice"
    assert set(run.dock.archived_count.values()) == {1}, "a file was archived twice"
    assert not run.device.refused
    for message, outputs in answers:
        if message.direction == "up" and p.parse_topic(message.topic).kind is p.Kind.CHUNK:
            (ack,) = [p.Ack.decode(o.payload) for o in outputs if isinstance(o, p.Publish)]
            assert (ack.status, ack.reason) == (p.AckStatus.OK, p.Reason.DUPLICATE), ack
            assert not any(isinstance(o, p.StoreChunk) for o in outputs)


# --- receipts at the device's edge -------------------------------------------------------------

class Wire:
    """Stands in for the paho client: keeps what the device would publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.published.append((topic, payload))


@dataclass(frozen=True)
class Incoming:
    """What paho hands ``on_message``."""

    topic: str
    payload: bytes


class Errors(logging.Handler):
    """Collects what the edge logs at ERROR (an exception it caught and logged)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


RECEIPT_KINDS = ("good", "other_key", "garbled", "zero", "body_edited", "other_bytes",
                 "other_topic")


def device_root(folder: Path) -> dict[str, bytes]:
    """A device with one sealed item waiting (signature, manifest, media) and the dock's key."""
    activity = folder / "evidence" / "20261129T010100Z"
    activity.mkdir(parents=True)
    stem = f"{DEVICE}_20261129T010100Z_000001_20261129T010100Z"
    files = {f"{stem}.ts.bce": os.urandom(300), f"{stem}.manifest.sig": os.urandom(64)}
    files[f"{stem}.manifest.json"] = json.dumps(
        {"files": [{"name": f"{stem}.ts.bce", "role": "media"}]}).encode()
    for name, data in files.items():
        (activity / name).write_bytes(data)
    (folder / DOCK_PUB).parent.mkdir(parents=True)
    (folder / DOCK_PUB).write_bytes(pem_public(DOCK_KEY.public_key()))
    return files


def receipt_for(kind: str, offer: p.FileOffer, other: p.FileOffer) -> p.Publish:
    body = p.make_receipt_body(dock="dock", device=DEVICE, init=offer, stored_at=1,
                               archive_path=f"{DEVICE}/{offer.activity}/{offer.name}")
    if kind == "other_bytes":  # the dock's signature, but a body for another file's bytes
        body = {**body, "name": other.name}
    signed = p.Receipt(body, b"-").signed_bytes()
    signature = {"other_key": OTHER_KEY.sign(signed), "garbled": os.urandom(64),
                 "zero": bytes(64)}.get(kind, DOCK_KEY.sign(signed))
    if kind == "body_edited":  # signed, then the archive path changed on the way
        body = {**body, "archive_path": "elsewhere"}
    receipt = p.Receipt(body, signature)
    topic = receipt.topic(DEVICE) if kind != "other_topic" else p.receipt_topic(DEVICE,
                                                                               other.file_id)
    return p.Publish(topic, receipt.encode())


@examples(30)
@given(st.lists(st.lists(st.sampled_from(RECEIPT_KINDS), min_size=1, max_size=3),
                min_size=3, max_size=3))
@pytest.mark.req("R13.2")
def test_a_receipt_not_signed_by_the_dock_deletes_nothing(kinds: list[list[str]]) -> None:
    errors = Errors()
    logging.getLogger("sync.device_sync").addHandler(errors)
    with tempfile.TemporaryDirectory(prefix="bodycam-hostile-") as scratch:
        root = Path(scratch)
        files = device_root(root)
        session = DeviceSync(root, DEVICE, "127.0.0.1", 1,  # never connects
                             evidence=root / "evidence", audit_log=root / "audit.jsonl",
                             correct_above_s=0.5)
        session.client = Wire()  # type: ignore[assignment]
        session._carry_out(session.uploader.start())
        waiting = {offer.name: offer for offer, _ in session._files.values()}
        assert sorted(waiting) == sorted(files)

        def receive(publish: p.Publish) -> None:
            session._on_message(session.client, None, Incoming(publish.topic, publish.payload))

        receive(p.Publish(p.want_topic(DEVICE), p.Want((), tuple(
            o.file_id for o in waiting.values())).encode()))
        order = sorted(waiting)
        for name, plan in zip(order, kinds):
            other = waiting[order[(order.index(name) + 1) % len(order)]]
            for kind in plan:
                receive(receipt_for(kind, waiting[name], other))
        left = {path.name for path in root.rglob("*") if path.is_file()}
    logging.getLogger("sync.device_sync").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    for name, plan in zip(order, kinds):
        if "good" not in plan:
            assert name in left, f"{name} deleted without the dock's signed receipt"
        if plan[0] == "good" and name.endswith(".ts.bce"):  # the dock's word came first
            assert name not in left and name in session.result.deleted
    if all(plan[0] == "good" for plan in kinds):  # seals go too (after the files they cover)
        assert not left & set(order), left
        refused = [why for refused_name, why in session.result.refused_receipts
                   if refused_name == name]
        if plan[0] in ("other_key", "garbled", "zero", "body_edited"):
            assert refused and "signature" in refused[0]
    assert len(session.result.deleted) == len(set(session.result.deleted))
