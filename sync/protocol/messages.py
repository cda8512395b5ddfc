"""The nine messages, each a frozen dataclass that checks its fields, with its topic, its
payload encoder and its decoder (after h11's ``_events``); and the one receipt body.

Every decoder raises :class:`ProtocolError` and nothing else, naming the field at fault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Mapping, Sequence

from .fields import (FILE_ID_CHARS, KIND_RE, MAX_CHUNK_BYTES, MAX_CONTROL_BYTES, MAX_HELLO_BYTES,
                     MAX_SIZE, DEFAULT_CHUNK_BYTES, REASON_RE, ProtocolError, build, check_bytes,
                     check_device, check_file_id, check_int, check_number, check_path_part,
                     check_pattern, check_sha256, check_text, encode_json, file_id_of, get_field,
                     json_object, type_name)
from .topics import (Kind, Topic, ack_topic, chunk_topic, fin_topic, hello_topic, init_topic,
                     parse_topic, receipt_topic, time_request_topic, time_response_topic,
                     want_topic)


def _check_meta(obj: Any) -> None:
    """The fields a file offer and an init share."""
    check_file_id(obj.file_id)
    check_path_part(obj.name, "name")
    check_path_part(obj.activity, "activity", 64)
    check_int(obj.size, "size")
    check_sha256(obj.sha256)
    if obj.manifest is not None:
        check_path_part(obj.manifest, "manifest")
    check_pattern(obj.kind, "kind", KIND_RE, "a kind (lowercase letters, digits, _)")
    if obj.file_id != obj.sha256[:FILE_ID_CHARS]:
        raise ProtocolError("is not the first 32 hex digits of sha256", "file_id")


_META_KEYS = ("file_id", "name", "activity", "size", "sha256", "manifest", "kind")


@dataclass(frozen=True)
class FileOffer:
    """One evidence file waiting on the device, as listed in ``hello``.

    ``name`` is the bare file name in its activity directory ``activity``; ``manifest`` the
    name of the manifest that seals it (a manifest and its signature name that manifest
    itself), or None for a file no manifest covers. ``kind`` is a short label for the
    dock's index and progress display (``media``, ``metadata``, ``photo``, ``manifest``,
    ``signature``, ``work_record``, ``activity``, …).
    """

    file_id: str
    name: str
    activity: str
    size: int
    sha256: str
    manifest: str | None
    kind: str

    def __post_init__(self) -> None:
        _check_meta(self)

    @classmethod
    def of(cls, *, name: str, activity: str, size: int, sha256: str,
           manifest: str | None, kind: str) -> FileOffer:
        """An offer with its file id derived from ``sha256``."""
        return cls(file_id_of(sha256), name, activity, size, sha256, manifest, kind)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _META_KEYS}

    @classmethod
    def from_json(cls, obj: object, what: str = "offer") -> FileOffer:
        if not isinstance(obj, dict):
            raise ProtocolError(f"must be an object, not {type_name(obj)}", what)
        return build(cls, obj, what, _META_KEYS)


@dataclass(frozen=True)
class Hello:
    """Device → dock on docking: who it is and every file it holds for the dock."""

    KIND: ClassVar[Kind] = Kind.HELLO
    device: str
    firmware: str
    battery_percent: int | None
    files: tuple[FileOffer, ...]

    def __post_init__(self) -> None:
        check_device(self.device)
        check_text(self.firmware, "firmware", 64, empty=True)
        if self.battery_percent is not None:
            check_int(self.battery_percent, "battery_percent", 0, 100)
        if not isinstance(self.files, (list, tuple)):
            raise ProtocolError(f"must be a list, not {type_name(self.files)}", "files")
        object.__setattr__(self, "files", tuple(self.files))
        seen: set[str] = set()
        for i, offer in enumerate(self.files):
            if not isinstance(offer, FileOffer):
                raise ProtocolError(f"must be a FileOffer, not {type_name(offer)}", f"files[{i}]")
            if offer.file_id in seen:
                # Content-addressed ids: two files with the same bytes cannot be told apart.
                raise ProtocolError("offered twice in one hello", f"files[{i}].file_id")
            seen.add(offer.file_id)

    def topic(self, device: str) -> str:
        return hello_topic(device)

    def encode(self) -> bytes:
        return encode_json({"device": self.device, "firmware": self.firmware,
                        "battery_percent": self.battery_percent,
                        "files": [offer.to_json() for offer in self.files]})

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        obj = json_object(payload, "hello", MAX_HELLO_BYTES)
        files = get_field(obj, "files", "hello")
        if not isinstance(files, list):
            raise ProtocolError(f"must be a list, not {type_name(files)}", "hello.files")
        offers = [FileOffer.from_json(item, f"hello.files[{i}]") for i, item in enumerate(files)]
        return build(cls, {**obj, "files": offers}, "hello",
                      ("device", "firmware", "battery_percent", "files"))


@dataclass(frozen=True)
class Want:
    """Dock → device, the answer to ``hello``.

    ``files``: (file_id, offset) to send, in the order the dock wants them, each from the
    offset the dock has stored durably. ``known``: files the dock already holds (archived,
    or being verified); their receipts follow without anything being sent. ``chunk_limit``:
    the largest chunk payload the dock takes.
    """

    KIND: ClassVar[Kind] = Kind.WANT
    files: tuple[tuple[str, int], ...]
    known: tuple[str, ...]
    chunk_limit: int = DEFAULT_CHUNK_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.files, (list, tuple)):
            raise ProtocolError(f"must be a list, not {type_name(self.files)}", "files")
        if not isinstance(self.known, (list, tuple)):
            raise ProtocolError(f"must be a list, not {type_name(self.known)}", "known")
        files = []
        seen: set[str] = set()
        for i, item in enumerate(self.files):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ProtocolError("must be a (file_id, offset) pair", f"files[{i}]")
            file_id = check_file_id(item[0], f"files[{i}].file_id")
            offset = check_int(item[1], f"files[{i}].offset")
            if file_id in seen:
                raise ProtocolError("listed twice", f"files[{i}].file_id")
            seen.add(file_id)
            files.append((file_id, offset))
        known = []
        for i, file_id in enumerate(self.known):
            if check_file_id(file_id, f"known[{i}]") in seen:
                raise ProtocolError("both wanted and known", f"known[{i}]")
            seen.add(file_id)
            known.append(file_id)
        check_int(self.chunk_limit, "chunk_limit", 1, MAX_CHUNK_BYTES)
        object.__setattr__(self, "files", tuple(files))
        object.__setattr__(self, "known", tuple(known))

    def topic(self, device: str) -> str:
        return want_topic(device)

    def encode(self) -> bytes:
        return encode_json({"files": [{"file_id": f, "offset": o} for f, o in self.files],
                        "known": list(self.known), "chunk_limit": self.chunk_limit})

    @classmethod
    def decode(cls, payload: bytes) -> Want:
        obj = json_object(payload, "want", MAX_HELLO_BYTES)
        files = get_field(obj, "files", "want")
        if not isinstance(files, list):
            raise ProtocolError(f"must be a list, not {type_name(files)}", "want.files")
        pairs = []
        for i, item in enumerate(files):
            where = f"want.files[{i}]"
            if not isinstance(item, dict):
                raise ProtocolError(f"must be an object, not {type_name(item)}", where)
            pairs.append((get_field(item, "file_id", where), get_field(item, "offset", where)))
        return build(cls, {**obj, "files": pairs}, "want", ("files", "known", "chunk_limit"))


@dataclass(frozen=True)
class Init:
    """Device → dock before a file's chunks: what the file is (the fields of its offer)."""

    KIND: ClassVar[Kind] = Kind.INIT
    file_id: str
    name: str
    activity: str
    size: int
    sha256: str
    manifest: str | None
    kind: str

    def __post_init__(self) -> None:
        _check_meta(self)

    @classmethod
    def from_offer(cls, offer: FileOffer) -> Init:
        return cls(**offer.to_json())

    def offer(self) -> FileOffer:
        return FileOffer(**self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _META_KEYS}

    def topic(self, device: str) -> str:
        return init_topic(device, self.file_id)

    def encode(self) -> bytes:
        return encode_json(self.to_json())

    @classmethod
    def decode(cls, payload: bytes) -> Init:
        return build(cls, json_object(payload, "init", MAX_CONTROL_BYTES), "init", _META_KEYS)


@dataclass(frozen=True)
class Chunk:
    """Device → dock: ``data`` at ``offset`` of a file. Everything but the bytes is in the
    topic (EMQX's ``$file/{id}/{offset}/{checksum}``); the payload is the raw bytes."""

    KIND: ClassVar[Kind] = Kind.CHUNK
    file_id: str
    offset: int
    sha256: str  # as claimed by the sender; compare with ``intact``
    data: bytes

    def __post_init__(self) -> None:
        check_file_id(self.file_id)
        check_int(self.offset, "offset")
        check_sha256(self.sha256)
        data = check_bytes(self.data, "data")
        if len(data) > MAX_CHUNK_BYTES:
            raise ProtocolError(f"is {len(data)} bytes, over the hard limit of "
                                f"{MAX_CHUNK_BYTES}", "data")
        object.__setattr__(self, "data", data)

    @classmethod
    def of(cls, file_id: str, offset: int, data: bytes) -> Chunk:
        return cls(file_id, offset, hashlib.sha256(data).hexdigest(), data)

    @property
    def intact(self) -> bool:
        """Whether the bytes are the ones the sender hashed (a corrupt chunk is not)."""
        return hashlib.sha256(self.data).hexdigest() == self.sha256

    def topic(self, device: str) -> str:
        return chunk_topic(device, self.file_id, self.offset, self.sha256)

    def encode(self) -> bytes:
        return self.data

    @classmethod
    def decode(cls, payload: bytes, topic: Topic | str) -> Chunk:
        parsed = parse_topic(topic) if isinstance(topic, str) else topic
        if not isinstance(parsed, Topic) or parsed.kind is not Kind.CHUNK:
            raise ProtocolError("is not a chunk topic", "topic")
        try:
            return cls(str(parsed.file_id), int(parsed.offset or 0), str(parsed.sha256),
                       payload)
        except ProtocolError as exc:
            raise exc.within("chunk") from None


class AckStatus(StrEnum):
    OK = "ok"  # stored durably up to next_offset; go on
    RESEND = "resend"  # send again from next_offset
    RESTART = "restart"  # the dock discarded the file: init again, send from 0
    REJECTED = "rejected"  # not in this session; the device keeps the file


class Reason(StrEnum):
    """Why an ack says what it says. Readers must accept codes they do not know."""

    STORED = "stored"  # ok: a chunk reached the disk
    DUPLICATE = "duplicate"  # ok: a chunk the dock already has
    GAP = "gap"  # resend: a chunk beyond the next offset the dock expects
    CHECKSUM = "checksum"  # resend: the payload does not hash to the topic's sha256
    OVERSIZE = "oversize"  # resend: payload over the dock's chunk_limit
    BEYOND_END = "beyond_end"  # resend: chunk runs past the size given in init
    EMPTY = "empty"  # resend: a zero-byte chunk
    INCOMPLETE = "incomplete"  # resend: fin before every byte was stored
    STORE_FAILED = "store_failed"  # resend: the dock could not write the chunk
    VERIFY_FAILED = "verify_failed"  # restart (or rejected): whole-file hash or seal failed
    UNKNOWN_FILE = "unknown_file"  # rejected: chunk or fin without init
    INIT_MISMATCH = "init_mismatch"  # rejected: init differs from what the dock holds
    FIN_MISMATCH = "fin_mismatch"  # rejected: fin's size or hash differs from init


@dataclass(frozen=True)
class Ack:
    """Dock → device about one file: where the dock stands and what it wants next."""

    KIND: ClassVar[Kind] = Kind.ACK
    file_id: str
    next_offset: int
    status: AckStatus
    reason: str = ""
    detail: str = ""  # for people and logs; never parsed

    def __post_init__(self) -> None:
        check_file_id(self.file_id)
        check_int(self.next_offset, "next_offset")
        if not isinstance(self.status, str) or self.status not in AckStatus._value2member_map_:
            raise ProtocolError(f"must be one of {', '.join(AckStatus)}", "status")
        object.__setattr__(self, "status", AckStatus(self.status))
        check_pattern(self.reason, "reason", REASON_RE, "a reason code (lowercase letters and _)")
        check_text(self.detail, "detail", 1024, empty=True)

    def topic(self, device: str) -> str:
        return ack_topic(device, self.file_id)

    def encode(self) -> bytes:
        return encode_json({"file_id": self.file_id, "next_offset": self.next_offset,
                        "status": str(self.status), "reason": self.reason,
                        "detail": self.detail})

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        obj = json_object(payload, "ack", MAX_CONTROL_BYTES)
        obj.setdefault("detail", "")  # optional on the wire
        return build(cls, obj, "ack", ("file_id", "next_offset", "status", "reason", "detail"))


@dataclass(frozen=True)
class Fin:
    """Device → dock once every chunk is acknowledged: the whole file's size and hash."""

    KIND: ClassVar[Kind] = Kind.FIN
    file_id: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        check_file_id(self.file_id)
        check_int(self.size, "size")
        check_sha256(self.sha256)
        if self.file_id != self.sha256[:FILE_ID_CHARS]:
            raise ProtocolError("is not the first 32 hex digits of sha256", "file_id")

    def topic(self, device: str) -> str:
        return fin_topic(device, self.file_id)

    def encode(self) -> bytes:
        return encode_json({"file_id": self.file_id, "size": self.size, "sha256": self.sha256})

    @classmethod
    def decode(cls, payload: bytes) -> Fin:
        return build(cls, json_object(payload, "fin", MAX_CONTROL_BYTES), "fin",
                      ("file_id", "size", "sha256"))


RECEIPT_FIELDS = ("dock", "device", "file_id", "name", "size", "sha256", "stored_at",
                  "archive_path")


def _plain_json(value: object, name: str, depth: int = 0) -> None:
    # A receipt body is signed over its canonical form, which allows integers only.
    if depth > 8:
        raise ProtocolError("is nested too deeply", name)
    if isinstance(value, str):
        check_text(value, name, MAX_CONTROL_BYTES, empty=True)
        return
    if value is None or isinstance(value, bool):
        return
    if type(value) is int:
        if abs(value) > MAX_SIZE:
            raise ProtocolError("integer too large for every JSON reader", name)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _plain_json(item, f"{name}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError("keys must be strings", name)
            check_text(key, f"{name} key", 128)
            _plain_json(item, f"{name}.{key}", depth + 1)
        return
    raise ProtocolError(f"{type_name(value)} has no place in a signed receipt", name)


@dataclass(frozen=True)
class Receipt:
    """Dock → device: the dock's signed statement that it holds a file, verified.

    ``body`` holds at least :data:`RECEIPT_FIELDS` (``stored_at`` in UTC milliseconds) and
    may hold more; ``signature`` is the dock's signature over :meth:`signed_bytes`. The
    protocol carries both; signing and checking the signature belong to the edges.
    """

    KIND: ClassVar[Kind] = Kind.RECEIPT
    body: Mapping[str, Any]
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.body, Mapping):
            raise ProtocolError(f"must be an object, not {type_name(self.body)}", "body")
        body = dict(self.body)
        _plain_json(body, "body")
        for key in RECEIPT_FIELDS:
            get_field(body, key, "body")
        check_text(body["dock"], "body.dock", 128)
        check_device(body["device"], "body.device")
        check_file_id(body["file_id"], "body.file_id")
        check_path_part(body["name"], "body.name")
        check_int(body["size"], "body.size")
        check_sha256(body["sha256"], "body.sha256")
        check_int(body["stored_at"], "body.stored_at")
        check_text(body["archive_path"], "body.archive_path", 1024)
        if body["file_id"] != body["sha256"][:FILE_ID_CHARS]:
            raise ProtocolError("is not the first 32 hex digits of sha256", "body.file_id")
        signature = check_bytes(self.signature, "signature")
        if not 1 <= len(signature) <= 512:
            raise ProtocolError(f"is {len(signature)} bytes; expected 1..512", "signature")
        # A private deep copy: the caller's dict can change, the signed body cannot.
        object.__setattr__(self, "body", json.loads(encode_json(body)))
        object.__setattr__(self, "signature", signature)

    @property
    def file_id(self) -> str:
        return str(self.body["file_id"])

    def signed_bytes(self) -> bytes:
        """The bytes the dock signs and the device verifies: canonical JSON of the body."""
        return encode_json(self.body)

    def mismatch(self, offer: FileOffer, device: str) -> str | None:
        """What in the body differs from the file the device offered, or None."""
        for key, expected in (("device", device), ("file_id", offer.file_id),
                              ("name", offer.name), ("size", offer.size),
                              ("sha256", offer.sha256)):
            if self.body.get(key) != expected:
                return f"body.{key} is {self.body.get(key)!r}, expected {expected!r}"
        return None

    def topic(self, device: str) -> str:
        return receipt_topic(device, self.file_id)

    def encode(self) -> bytes:
        return encode_json({"body": dict(self.body),
                        "signature": base64.b64encode(self.signature).decode("ascii")})

    @classmethod
    def decode(cls, payload: bytes) -> Receipt:
        obj = json_object(payload, "receipt", MAX_CONTROL_BYTES)
        text = get_field(obj, "signature", "receipt")
        if not isinstance(text, str):
            raise ProtocolError(f"must be base64 text, not {type_name(text)}", "receipt.signature")
        try:
            signature = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise ProtocolError("is not standard base64", "receipt.signature") from None
        return build(cls, {**obj, "signature": signature}, "receipt", ("body", "signature"))


def make_receipt_body(*, dock: str, device: str, init: Init | FileOffer, stored_at: int,
                      archive_path: str, **extra: Any) -> dict[str, Any]:
    """A receipt body for a verified file, for the dock edge to sign. ``extra`` members
    (``activity``, ``verified``, …) are signed with the rest."""
    body = {**extra, "dock": dock, "device": device, "file_id": init.file_id,
            "name": init.name, "size": init.size, "sha256": init.sha256,
            "stored_at": stored_at, "archive_path": archive_path}
    Receipt(body, b"\0")  # checks the fields now, where a mistake is the caller's
    return body


@dataclass(frozen=True)
class TimeRequest:
    """Device → dock: ``t1``, the device's clock (UTC seconds) when it sent this."""

    KIND: ClassVar[Kind] = Kind.TIME_REQUEST
    t1: float

    def __post_init__(self) -> None:
        check_number(self.t1, "t1")

    def topic(self, device: str) -> str:
        return time_request_topic(device)

    def encode(self) -> bytes:
        return encode_json({"t1": self.t1})

    @classmethod
    def decode(cls, payload: bytes) -> TimeRequest:
        return build(cls, json_object(payload, "time_request", MAX_CONTROL_BYTES),
                      "time_request", ("t1",))


@dataclass(frozen=True)
class TimeResponse:
    """Dock → device: the request's ``t1`` echoed, ``t2`` the dock's clock when the request
    arrived, ``t3`` when the answer left (UTC seconds)."""

    KIND: ClassVar[Kind] = Kind.TIME_RESPONSE
    t1: float
    t2: float
    t3: float

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t3"):
            check_number(getattr(self, name), name)

    def topic(self, device: str) -> str:
        return time_response_topic(device)

    def encode(self) -> bytes:
        return encode_json({"t1": self.t1, "t2": self.t2, "t3": self.t3})

    @classmethod
    def decode(cls, payload: bytes) -> TimeResponse:
        return build(cls, json_object(payload, "time_response", MAX_CONTROL_BYTES),
                      "time_response", ("t1", "t2", "t3"))


Message = Hello | Want | Init | Chunk | Ack | Fin | Receipt | TimeRequest | TimeResponse

_CLASSES: dict[Kind, Any] = {cls.KIND: cls for cls in (Hello, Want, Init, Chunk, Ack, Fin,
                                                       Receipt, TimeRequest, TimeResponse)}


def decode_message(topic: str | Topic, payload: bytes) -> tuple[Topic, Message]:
    """Parse a topic and decode its payload, checking that the two agree."""
    parsed = parse_topic(topic) if not isinstance(topic, Topic) else topic
    cls = _CLASSES[parsed.kind]
    if cls is Chunk:
        return parsed, Chunk.decode(payload, parsed)
    message = cls.decode(payload)
    if isinstance(message, Hello) and message.device != parsed.device:
        raise ProtocolError(f"{message.device!r} differs from the topic's {parsed.device!r}",
                            "hello.device")
    if parsed.file_id is not None and message.file_id != parsed.file_id:
        raise ProtocolError(f"{message.file_id} differs from the topic's {parsed.file_id}",
                            f"{parsed.kind.value}.file_id")
    return parsed, message


def clock_offset(t1: float, t2: float, t3: float, t4: float) -> tuple[float, float]:
    """NTP's offset and round trip from one exchange (RFC 5905).

    t1 device sends, t2 dock receives, t3 dock answers, t4 device receives. ``offset`` is
    dock minus device — add it to the device clock to read dock time — and is exact when
    the two legs take equally long; ``round_trip`` is the time on the wire, the dock's
    processing left out. The device's own "device minus reference" is ``-offset``.
    """
    offset = ((t2 - t1) + (t3 - t4)) / 2
    round_trip = (t4 - t1) - (t3 - t2)
    return offset, round_trip


def split_offers(files: Sequence[FileOffer],
                 max_bytes: int = MAX_HELLO_BYTES) -> list[list[FileOffer]]:
    """Cut a long backlog into lists that each fit one hello, keeping the order."""
    budget = max_bytes - 1024  # room for device, firmware and battery around the list
    batches: list[list[FileOffer]] = [[]]
    used = 0
    for offer in files:
        size = len(encode_json(offer.to_json())) + 1
        if batches[-1] and used + size > budget:
            batches.append([])
            used = 0
        batches[-1].append(offer)
        used += size
    return batches if batches[-1] else []
