"""The nine messages, each a frozen dataclass that checks its fields, with its topic, its
payload encoder and its decoder (after h11's ``_events``); and the receipt body.

Every decoder raises :class:`ProtocolError` and nothing else, naming the field at fault.
The eight JSON messages share one shape (:class:`JsonMessage`): the topic is named by the
message's kind (and file id), the payload is the canonical JSON of ``to_json()``, and the
decoder builds the message through its constructor, so a peer's payload is checked exactly
as our own messages are. A chunk's payload is its raw bytes, everything else in its topic.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

from .fields import (DEFAULT_CHUNK_BYTES, FILE_ID_CHARS, KIND_RE, MAX_CHUNK_BYTES,
                     MAX_CONTROL_BYTES, MAX_HELLO_BYTES, MAX_SIZE, REASON_RE, ProtocolError,
                     build, check_bytes, check_device, check_file_id, check_int, check_number,
                     check_path_part, check_pattern, check_sha256, check_text, encode_json,
                     file_id_of, get_field, json_object, type_name)
from .topics import Kind, Topic, chunk_topic, parse_topic

M = TypeVar("M", bound="JsonMessage")


@cache
def _keys(cls: type) -> tuple[str, ...]:
    """A message's JSON members: its dataclass fields, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


class JsonMessage:
    """What every message but the chunk shares. A subclass is a frozen dataclass that sets
    ``KIND``; its fields are its JSON members, and it overrides :meth:`to_json` and
    :meth:`_arguments` only where the wire shape differs from the fields."""

    KIND: ClassVar[Kind]
    # Members a later revision of v1 added: a reader takes their absence as the default.
    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _what(cls) -> str:
        """How errors name the message: ``hello``, ``init``, ``time_request``, …"""
        return cls.KIND.name.lower()

    def topic(self, device: str) -> str:
        return str(Topic(self.KIND, device, getattr(self, "file_id", None)))

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _keys(type(self))}

    def encode(self) -> bytes:
        return encode_json(self.to_json())

    @classmethod
    def decode(cls: type[M], payload: bytes) -> M:
        limit = MAX_HELLO_BYTES if cls.KIND in (Kind.HELLO, Kind.WANT) else MAX_CONTROL_BYTES
        return cls.from_json(json_object(payload, cls._what(), limit), cls._what())

    @classmethod
    def from_json(cls: type[M], obj: object, what: str) -> M:
        """The message from a decoded JSON object; ``what`` names it in errors.

        Unknown members are ignored, so a later minor revision can add fields without a
        new prefix."""
        if not isinstance(obj, dict):
            raise ProtocolError(f"must be an object, not {type_name(obj)}", what)
        return build(cls, cls._arguments(obj, what), what, _keys(cls), cls.OPTIONAL)

    @classmethod
    def _arguments(cls, obj: dict[str, Any], what: str) -> dict[str, Any]:
        """The JSON object made into constructor arguments (where the wire differs)."""
        return obj


@dataclass(frozen=True)
class FileOffer(JsonMessage):
    """One evidence file waiting on the device: listed in ``hello``, and sent alone as the
    ``init`` that comes before the file's chunks (the same members on the wire, so one
    class: ``Init`` is another name for it).

    ``name`` is the bare file name in its activity directory ``activity``; ``manifest`` the
    name of the manifest that seals it (a manifest and its signature name that manifest
    itself), or None for a file no manifest covers. ``kind`` is a short label for the
    dock's index and progress display (``media``, ``metadata``, ``photo``, ``manifest``,
    ``signature``, ``work_record``, ``activity``, …).
    """

    KIND: ClassVar[Kind] = Kind.INIT
    file_id: str
    name: str
    activity: str
    size: int
    sha256: str
    manifest: str | None
    kind: str

    def __post_init__(self) -> None:
        check_file_id(self.file_id)
        check_path_part(self.name, "name")
        check_path_part(self.activity, "activity", 64)
        check_int(self.size, "size")
        check_sha256(self.sha256)
        if self.manifest is not None:
            check_path_part(self.manifest, "manifest")
        check_pattern(self.kind, "kind", KIND_RE, "a kind (lowercase letters, digits, _)")
        if self.file_id != self.sha256[:FILE_ID_CHARS]:
            raise ProtocolError("is not the first 32 hex digits of sha256", "file_id")

    @classmethod
    def of(cls, *, name: str, activity: str, size: int, sha256: str,
           manifest: str | None, kind: str) -> FileOffer:
        """An offer with its file id derived from ``sha256``."""
        return cls(file_id_of(sha256), name, activity, size, sha256, manifest, kind)

    @classmethod
    def from_offer(cls, offer: FileOffer) -> FileOffer:
        """The init for ``offer``: the offer itself (for callers that say ``Init``)."""
        if not isinstance(offer, FileOffer):
            raise ProtocolError(f"must be a FileOffer, not {type_name(offer)}", "offer")
        return offer


Init = FileOffer
"""The ``init`` message: a :class:`FileOffer` sent on its own topic before the chunks."""


@dataclass(frozen=True)
class Hello(JsonMessage):
    """Device → dock on docking: who it is and one page of the files it holds for the dock.

    A backlog too long for one hello is offered in pages, oldest first, in one docking:
    ``page`` counts them from 0 (a hello with ``page`` 0 starts a docking), and
    ``more_files`` / ``more_bytes`` say what is still waiting after this page (for the
    dock's records and progress; 0 on the last page). The next page's hello follows once
    every file of this one is receipted or has failed for the session."""

    KIND: ClassVar[Kind] = Kind.HELLO
    OPTIONAL: ClassVar[tuple[str, ...]] = ("page", "more_files", "more_bytes", "charging")
    device: str
    firmware: str
    battery_percent: int | None
    files: tuple[FileOffer, ...]
    page: int = 0
    more_files: int = 0
    more_bytes: int = 0
    # The device sits on the dock's charger (its power source says so): without it, or a
    # file actually received, the dock takes a hello as a claim, not as a docking.
    charging: bool = False

    def __post_init__(self) -> None:
        check_device(self.device)
        if type(self.charging) is not bool:
            raise ProtocolError(f"must be true or false, not {type_name(self.charging)}",
                                "charging")
        check_text(self.firmware, "firmware", 64, empty=True)
        if self.battery_percent is not None:
            check_int(self.battery_percent, "battery_percent", 0, 100)
        check_int(self.page, "page")
        check_int(self.more_files, "more_files")
        check_int(self.more_bytes, "more_bytes")
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

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "files": [offer.to_json() for offer in self.files]}

    @classmethod
    def _arguments(cls, obj: dict[str, Any], what: str) -> dict[str, Any]:
        files = get_field(obj, "files", what)
        if not isinstance(files, list):
            raise ProtocolError(f"must be a list, not {type_name(files)}", f"{what}.files")
        return {**obj, "files": [FileOffer.from_json(item, f"{what}.files[{i}]")
                                 for i, item in enumerate(files)]}


@dataclass(frozen=True)
class Want(JsonMessage):
    """Dock → device, the answer to ``hello``.

    ``files``: (file_id, offset) to send, in the order the dock wants them, each from the
    offset the dock has stored durably. ``known``: files the dock already holds (archived,
    or being verified); their receipts follow without anything being sent. ``chunk_limit``:
    the largest chunk payload the dock takes. ``page``: the hello page it answers, so a
    late answer to an earlier page is not taken for the answer to the present one.
    """

    KIND: ClassVar[Kind] = Kind.WANT
    OPTIONAL: ClassVar[tuple[str, ...]] = ("page",)
    files: tuple[tuple[str, int], ...]
    known: tuple[str, ...]
    chunk_limit: int = DEFAULT_CHUNK_BYTES
    page: int = 0

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
        check_int(self.page, "page")
        object.__setattr__(self, "files", tuple(files))
        object.__setattr__(self, "known", tuple(known))

    def to_json(self) -> dict[str, Any]:
        return {"files": [{"file_id": f, "offset": o} for f, o in self.files],
                "known": list(self.known), "chunk_limit": self.chunk_limit, "page": self.page}

    @classmethod
    def _arguments(cls, obj: dict[str, Any], what: str) -> dict[str, Any]:
        files = get_field(obj, "files", what)
        if not isinstance(files, list):
            raise ProtocolError(f"must be a list, not {type_name(files)}", f"{what}.files")
        pairs = []
        for i, item in enumerate(files):
            where = f"{what}.files[{i}]"
            if not isinstance(item, dict):
                raise ProtocolError(f"must be an object, not {type_name(item)}", where)
            pairs.append((get_field(item, "file_id", where), get_field(item, "offset", where)))
        return {**obj, "files": pairs}


@dataclass(frozen=True)
class Chunk:
    """Device → dock: ``data`` at ``offset`` of a file. Everything but the bytes is in the
    topic (EMQX's ``$file/{id}/{offset}/{checksum}``); the payload is the raw bytes."""

    KIND: ClassVar[Kind] = Kind.CHUNK
    file_id: str
    offset: int
    sha256: str | None  # as claimed by the sender (optional); compare with ``intact``
    data: bytes

    def __post_init__(self) -> None:
        check_file_id(self.file_id)
        check_int(self.offset, "offset")
        if self.sha256 is not None:
            check_sha256(self.sha256)
        data = check_bytes(self.data, "data")
        if len(data) > MAX_CHUNK_BYTES:
            raise ProtocolError(f"is {len(data)} bytes, over the hard limit of "
                                f"{MAX_CHUNK_BYTES}", "data")
        object.__setattr__(self, "data", data)

    @classmethod
    def of(cls, file_id: str, offset: int, data: bytes, *, checksum: bool = True) -> Chunk:
        """A chunk of ``data``; with ``checksum`` its SHA-256 goes in the topic."""
        return cls(file_id, offset, hashlib.sha256(data).hexdigest() if checksum else None, data)

    @property
    def intact(self) -> bool:
        """Whether the bytes are the ones the sender hashed (a corrupt chunk is not); a chunk
        sent without a checksum is checked only with its whole file."""
        return self.sha256 is None or hashlib.sha256(self.data).hexdigest() == self.sha256

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
            return cls(str(parsed.file_id), int(parsed.offset or 0), parsed.sha256, payload)
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
class Ack(JsonMessage):
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

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "status": str(self.status)}

    @classmethod
    def _arguments(cls, obj: dict[str, Any], what: str) -> dict[str, Any]:
        return {"detail": "", **obj}  # detail is optional on the wire


@dataclass(frozen=True)
class Fin(JsonMessage):
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
class Receipt(JsonMessage):
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

    def to_json(self) -> dict[str, Any]:
        return {"body": dict(self.body),
                "signature": base64.b64encode(self.signature).decode("ascii")}

    @classmethod
    def _arguments(cls, obj: dict[str, Any], what: str) -> dict[str, Any]:
        text = get_field(obj, "signature", what)
        if not isinstance(text, str):
            raise ProtocolError(f"must be base64 text, not {type_name(text)}", f"{what}.signature")
        try:
            signature = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise ProtocolError("is not standard base64", f"{what}.signature") from None
        return {**obj, "signature": signature}


def receipt_body(*, dock: str, device: str, file_id: str, name: str, size: int, sha256: str,
                 stored_at: int, archive_path: str, **extra: Any) -> dict[str, Any]:
    """The body of a receipt, for the dock to sign: :data:`RECEIPT_FIELDS`, and ``extra``
    members (``activity``, ``verified``, …) signed with the rest."""
    return {**extra, "dock": dock, "device": device, "file_id": file_id, "name": name,
            "size": size, "sha256": sha256, "stored_at": stored_at,
            "archive_path": archive_path}


def make_receipt_body(*, dock: str, device: str, init: FileOffer, stored_at: int,
                      archive_path: str, **extra: Any) -> dict[str, Any]:
    """:func:`receipt_body` for the file ``init`` describes, checked now, where a mistake
    is the caller's."""
    body = receipt_body(dock=dock, device=device, file_id=init.file_id, name=init.name,
                        size=init.size, sha256=init.sha256, stored_at=stored_at,
                        archive_path=archive_path, **extra)
    Receipt(body, b"\0")
    return body


@dataclass(frozen=True)
class TimeRequest(JsonMessage):
    """Device → dock: ``t1``, the device's clock (UTC seconds) when it sent this."""

    KIND: ClassVar[Kind] = Kind.TIME_REQUEST
    t1: float

    def __post_init__(self) -> None:
        check_number(self.t1, "t1")


@dataclass(frozen=True)
class TimeResponse(JsonMessage):
    """Dock → device: the request's ``t1`` echoed, ``t2`` the dock's clock when the request
    arrived, ``t3`` when the answer left (UTC seconds); ``signature`` the dock's signature
    over :meth:`signed_bytes` — its receipt key, which the device got at enrolment — so
    the device's clock never rests on the broker alone. (Absent from a dock before issue
    14: the device then takes no correction from it.)"""

    KIND: ClassVar[Kind] = Kind.TIME_RESPONSE
    OPTIONAL: ClassVar[tuple[str, ...]] = ("signature",)
    t1: float
    t2: float
    t3: float
    signature: bytes = b""

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t3"):
            check_number(getattr(self, name), name)
        signature = check_bytes(self.signature, "signature")
        if len(signature) > 512:
            raise ProtocolError(f"is {len(signature)} bytes; expected at most 512", "signature")
        object.__setattr__(self, "signature", signature)

    def signed_bytes(self, device: str) -> bytes:
        """What the dock signs and the device checks: the three times and whom they are for
        (an answer to one device is no answer to another)."""
        return encode_json({"device": check_device(device), "t1": self.t1, "t2": self.t2,
                            "t3": self.t3})

    def to_json(self) -> dict[str, Any]:
        return {"t1": self.t1, "t2": self.t2, "t3": self.t3,
                "signature": base64.b64encode(self.signature).decode("ascii")}

    @classmethod
    def _arguments(cls, obj: dict[str, Any], what: str) -> dict[str, Any]:
        if "signature" not in obj:
            return obj
        return Receipt._arguments(obj, what)  # the same base64 member, decoded


Message = Hello | Want | FileOffer | Chunk | Ack | Fin | Receipt | TimeRequest | TimeResponse

_CLASSES: dict[Kind, Any] = {cls.KIND: cls for cls in (Hello, Want, FileOffer, Chunk, Ack, Fin,
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
