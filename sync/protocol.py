"""The dock-sync wire protocol: topics, messages and the two state machines (after h11).

A docked recorder uploads its evidence to the dock over MQTT. This module is the whole
protocol and nothing else: bytes and events go in, events and publishes come out. It opens
no sockets or files, starts no threads and reads no clock — times are passed in, and the
one thing it cannot do without I/O, reading a piece of an evidence file on the device, is a
callable the device edge hands to :class:`Uploader`. paho-mqtt, the archive and the keys
live at the edges. ``docs/sync-protocol.md`` is the specification; this docstring is the map.

Topics (``{d}`` is the device id, which is also its certificate's CN and MQTT username)::

    device → dock  bodycam/v1/up/{d}/hello
                   bodycam/v1/up/{d}/init/{file_id}
                   bodycam/v1/up/{d}/chunk/{file_id}/{offset}/{sha256}
                   bodycam/v1/up/{d}/fin/{file_id}
                   bodycam/v1/up/{d}/time/req
    dock → device  bodycam/v1/down/{d}/want
                   bodycam/v1/down/{d}/ack/{file_id}
                   bodycam/v1/down/{d}/receipt/{file_id}
                   bodycam/v1/down/{d}/time/resp

The file layout follows EMQX's MQTT file transfer (``init``, a segment addressed by offset
with its checksum in the topic, ``fin``); per-chunk metadata sits in the topic because MQTT
3.1.1 has no user properties. ``file_id`` is the first 32 hex digits of the file's SHA-256:
content-addressed, so a file resent after either side restarted is recognised as the same.

One session (one connection, one :class:`Uploader`; one :class:`Ingest` per device)::

    device                                  dock
    hello {files offered} ───────────────►  Want: files to send and from which offset,
                        ◄──────────────────  files already held (their receipts follow)
    per wanted file:
    init ────────────────────────────────►  OpenFile
    chunk @offset ×window ───────────────►  StoreChunk → edge writes durably → chunk_stored
                        ◄──────────────────  ack ok next_offset        (or resend / restart /
    ... until all chunks acked                                          rejected, with reason)
    fin {size, sha256} ──────────────────►  CompleteFile → edge checks hash and seal, archives
                        ◄──────────────────  receipt {body, signature}  (file_verified)
                        ◄──────────────────  ack restart                (file_rejected)

Only a receipt confirms a file: never a PUBACK, which Mosquitto sends even for a message it
then drops for being too large under MQTT 3.1.1.

Uploader states (per session)::

    IDLE --start()--> HELLO_SENT --want--> TRANSFERRING --every file receipted or failed--> DONE

Per file on the device: OFFERED --want--> SENDING --all chunks acked--> FIN_SENT --receipt-->
RECEIPTED; OFFERED --want.known--> KNOWN --receipt--> RECEIPTED; resend/restart return to
SENDING; rejected, too many retries or a receipt that does not match → FAILED (the file
stays on the device for the next session). A valid receipt is taken in any state.

Per file at the dock: RECEIVING --fin with every byte stored--> VERIFYING --file_verified-->
ARCHIVED; VERIFYING --file_rejected--> RECEIVING from offset 0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import math
import re
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, ClassVar, Mapping, Sequence

# --- limits and constants ----------------------------------------------------------------------

PREFIX = "bodycam/v1"
UP = "up"  # device → dock
DOWN = "down"  # dock → device

DEVICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"
FILE_ID_CHARS = 32  # hex digits of SHA-256 kept in the file id (128 bits)

MAX_CONTROL_BYTES = 64 * 1024  # any JSON message but hello and want
MAX_HELLO_BYTES = 256 * 1024  # hello and want carry lists; no bigger than a default chunk,
#                               so a broker limit that lets chunks through lets them through
DEFAULT_CHUNK_BYTES = 256 * 1024  # well under any message_size_limit worth setting
MAX_CHUNK_BYTES = 1024 * 1024  # hard limit: no chunk payload is ever larger
MAX_SIZE = 2**53 - 1  # sizes and offsets stay exact in every JSON implementation
DEFAULT_WINDOW = 16  # chunks in flight: 4 MiB at the default size
DEFAULT_MAX_RETRIES = 5  # resends at one offset, or restarts of one file, before giving up
MAX_TOPIC_CHARS = 256  # our longest topic is ~170 characters
QOS = 1

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_FILE_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OFFSET = re.compile(r"0|[1-9][0-9]{0,15}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REASON = re.compile(r"[a-z_]{0,32}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ProtocolError(ValueError):
    """Malformed input: a topic, a payload or a call the protocol cannot take.

    ``field`` names what was wrong (``"hello.files[2].sha256"``, ``"topic.offset"``) and
    ``reason`` says how, so a log line is enough to find the fault.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)

    def within(self, outer: str) -> ProtocolError:
        """The same error, its field named from an enclosing message."""
        return ProtocolError(self.reason, f"{outer}.{self.field}" if self.field else outer)


def file_id_of(sha256: str) -> str:
    """The file id for a file whose SHA-256 (lowercase hex) is ``sha256``."""
    return _sha256(sha256, "sha256")[:FILE_ID_CHARS]


# --- field checks (shared by constructors and decoders) ----------------------------------------
# Constructors check their fields too, so a message built wrongly on our side fails where it
# is built, with the same message a peer's bad payload would get.

def _int(value: object, name: str, lo: int = 0, hi: int = MAX_SIZE) -> int:
    if type(value) is not int:  # bool is an int to Python, not to the protocol
        raise ProtocolError(f"must be an integer, not {_type(value)}", name)
    if not lo <= value <= hi:
        raise ProtocolError(f"{value} is outside {lo}..{hi}", name)
    return value


def _number(value: object, name: str) -> float | int:
    if type(value) not in (int, float):
        raise ProtocolError(f"must be a number, not {_type(value)}", name)
    if not math.isfinite(value):  # JSON "1e999" parses to inf
        raise ProtocolError("must be finite", name)
    return value


def _text(value: object, name: str, max_bytes: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"must be a string, not {_type(value)}", name)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        raise ProtocolError("is not valid Unicode", name) from None
    if size > max_bytes:
        raise ProtocolError(f"is {size} bytes, over {max_bytes}", name)
    if not value and not empty:
        raise ProtocolError("must not be empty", name)
    if _CONTROL.search(value):
        raise ProtocolError("must not hold control characters", name)
    return value


def _path_part(value: object, name: str, max_bytes: int = 255) -> str:
    """One name in a directory: the dock joins it to a path, so nothing may climb out."""
    text = _text(value, name, max_bytes)
    if "/" in text or "\\" in text:
        raise ProtocolError("must be a bare name, without / or \\", name)
    if text.startswith("."):  # also refuses "." and ".."; evidence names never start so
        raise ProtocolError("must not start with '.'", name)
    return text


def _pattern(value: object, name: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"must be a string, not {_type(value)}", name)
    if not pattern.fullmatch(value):
        raise ProtocolError(f"{_short(value)} is not {what}", name)
    return value


def _device(value: object, name: str = "device") -> str:
    return _pattern(value, name, _DEVICE_ID,
                    "a device id (letter or digit, then up to 31 of A-Z a-z 0-9 _ -)")


def _file_id(value: object, name: str = "file_id") -> str:
    return _pattern(value, name, _FILE_ID, "a file id (32 lowercase hex digits)")


def _sha256(value: object, name: str = "sha256") -> str:
    return _pattern(value, name, _SHA256, "a SHA-256 (64 lowercase hex digits)")


def _bytes(value: object, name: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ProtocolError(f"must be bytes, not {_type(value)}", name)


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _detail(text: str, limit: int = 1024) -> str:
    """Free text from an edge (an exception message, say) made fit for an ack's detail."""
    clean = _CONTROL.sub(" ", str(text))
    return clean.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def _json_object(payload: object, what: str, limit: int) -> dict[str, Any]:
    data = _bytes(payload, what)
    if len(data) > limit:
        raise ProtocolError(f"payload is {len(data)} bytes, over the limit of {limit}", what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload is not UTF-8 (byte {exc.start})", what) from None
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise ProtocolError("payload JSON is nested too deeply", what) from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, huge integers
        raise ProtocolError(f"payload is not acceptable JSON: {exc}", what) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"payload must be a JSON object, not {_type(obj)}", what)
    return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicate key would let two readers see two different messages (or receipts).
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _get(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise ProtocolError("missing", f"{what}.{key}")
    return obj[key]


def _build(cls: Any, obj: Mapping[str, Any], what: str, keys: Sequence[str]) -> Any:
    """``cls(**{k: obj[k]})`` with missing keys and bad values named as ``what.key``.

    Unknown keys are ignored, so a later minor revision can add fields without a new prefix.
    """
    try:
        return cls(**{key: _get(obj, key, what) for key in keys})
    except ProtocolError as exc:
        if exc.field is not None and exc.field.startswith(f"{what}."):
            raise
        raise exc.within(what) from None


def _encode(obj: Mapping[str, Any]) -> bytes:
    # The canonical JSON of docs/evidence-format.md 4.2 (sorted keys, no spaces, UTF-8 as
    # is), so a receipt body — integers only — is signed over exactly the bytes any reader
    # re-derives. Written out here rather than imported: time messages carry floats, which
    # sealed records refuse.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# --- topics -----------------------------------------------------------------------------------

class Kind(StrEnum):
    """What a topic carries; the value is its topic level(s) after the device id."""

    HELLO = "hello"
    INIT = "init"
    CHUNK = "chunk"
    FIN = "fin"
    TIME_REQUEST = "time/req"
    WANT = "want"
    ACK = "ack"
    RECEIPT = "receipt"
    TIME_RESPONSE = "time/resp"

    @property
    def direction(self) -> str:
        return UP if self in _UP_KINDS else DOWN


_UP_KINDS = frozenset({Kind.HELLO, Kind.INIT, Kind.CHUNK, Kind.FIN, Kind.TIME_REQUEST})
_WITH_FILE = frozenset({Kind.INIT, Kind.CHUNK, Kind.FIN, Kind.ACK, Kind.RECEIPT})
# Parsing table: (direction, first level after the device) → kind.
_BY_LEVEL = {(kind.direction, kind.value.split("/")[0], len(kind.value.split("/"))): kind
             for kind in Kind}


@dataclass(frozen=True)
class Topic:
    """A parsed or to-be-built topic. ``str(topic)`` is the MQTT topic name."""

    kind: Kind
    device: str
    file_id: str | None = None
    offset: int | None = None  # chunk only
    sha256: str | None = None  # chunk only: the SHA-256 of this chunk's payload

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in Kind._value2member_map_:
            raise ProtocolError(f"{self.kind!r} is not a kind of message", "topic.kind")
        object.__setattr__(self, "kind", Kind(self.kind))
        _device(self.device, "topic.device")
        if self.kind in _WITH_FILE:
            _file_id(self.file_id, "topic.file_id")
        elif self.file_id is not None:
            raise ProtocolError(f"{self.kind} topics carry no file id", "topic.file_id")
        if self.kind is Kind.CHUNK:
            _int(self.offset, "topic.offset")
            _sha256(self.sha256, "topic.sha256")
        elif self.offset is not None or self.sha256 is not None:
            raise ProtocolError("only chunk topics carry an offset and checksum", "topic")

    @property
    def direction(self) -> str:
        return self.kind.direction

    def __str__(self) -> str:
        levels = [PREFIX, self.direction, self.device, self.kind.value]
        if self.file_id is not None:
            levels.append(self.file_id)
        if self.kind is Kind.CHUNK:
            levels += [str(self.offset), str(self.sha256)]
        return "/".join(levels)


def parse_topic(topic: str) -> Topic:
    """Parse an MQTT topic name of this protocol; :class:`ProtocolError` says what is wrong."""
    if not isinstance(topic, str):
        raise ProtocolError(f"must be a string, not {_type(topic)}", "topic")
    if len(topic) > MAX_TOPIC_CHARS:
        raise ProtocolError(f"is {len(topic)} characters, longer than any of ours", "topic")
    levels = topic.split("/")
    if levels[:1] != ["bodycam"]:
        raise ProtocolError(f"{_short(topic)} is not under {PREFIX}/", "topic")
    if len(levels) > 1 and levels[1] != "v1":
        version = levels[1]
        raise ProtocolError(f"unsupported protocol version {_short(version)} (this is v1)",
                            "topic.version")
    if len(levels) < 5:
        raise ProtocolError(f"{_short(topic)} is too short: "
                            f"{PREFIX}/<up|down>/<device>/<kind>...", "topic")
    direction, device, rest = levels[2], levels[3], levels[4:]
    if direction not in (UP, DOWN):
        raise ProtocolError(f"{_short(direction)} is neither 'up' nor 'down'", "topic.direction")
    _device(device, "topic.device")
    kind = None
    for span in (2, 1):  # "time/req" spans two levels; try it before the one-level kinds
        candidate = _BY_LEVEL.get((direction, rest[0], span))
        if candidate is not None and "/".join(rest[:span]) == candidate.value:
            kind = candidate
            break
    if kind is None:
        raise ProtocolError(f"{_short('/'.join(rest))} is not a {direction!r} message "
                            f"of this protocol", "topic.kind")
    params = rest[len(kind.value.split("/")):]
    wanted = 3 if kind is Kind.CHUNK else 1 if kind in _WITH_FILE else 0
    if len(params) > wanted:
        raise ProtocolError(f"too many levels after {kind.value!r} "
                            f"(expected {wanted}, got {len(params)})", "topic")
    if len(params) < wanted:
        need = "<file_id>/<offset>/<sha256>" if kind is Kind.CHUNK else "<file_id>"
        raise ProtocolError(f"{kind.value!r} needs {need} after it", "topic")
    file_id = _file_id(params[0], "topic.file_id") if wanted else None
    offset = sha = None
    if kind is Kind.CHUNK:
        if not _OFFSET.fullmatch(params[1]):
            raise ProtocolError(f"{_short(params[1])} is not a decimal integer "
                                "(digits only, no sign or leading zeros)", "topic.offset")
        offset = _int(int(params[1]), "topic.offset")
        sha = _sha256(params[2], "topic.sha256")
    return Topic(kind, device, file_id, offset, sha)


def hello_topic(device: str) -> str:
    return str(Topic(Kind.HELLO, device))


def init_topic(device: str, file_id: str) -> str:
    return str(Topic(Kind.INIT, device, file_id))


def chunk_topic(device: str, file_id: str, offset: int, sha256: str) -> str:
    return str(Topic(Kind.CHUNK, device, file_id, offset, sha256))


def fin_topic(device: str, file_id: str) -> str:
    return str(Topic(Kind.FIN, device, file_id))


def time_request_topic(device: str) -> str:
    return str(Topic(Kind.TIME_REQUEST, device))


def want_topic(device: str) -> str:
    return str(Topic(Kind.WANT, device))


def ack_topic(device: str, file_id: str) -> str:
    return str(Topic(Kind.ACK, device, file_id))


def receipt_topic(device: str, file_id: str) -> str:
    return str(Topic(Kind.RECEIPT, device, file_id))


def time_response_topic(device: str) -> str:
    return str(Topic(Kind.TIME_RESPONSE, device))


def dock_subscription(device: str | None = None) -> str:
    """What the dock subscribes to: one device's uploads, or every device's (``+``)."""
    return f"{PREFIX}/{UP}/{'+' if device is None else _device(device)}/#"


def device_subscription(device: str) -> str:
    """What a device subscribes to: the dock's messages to it, and nothing else."""
    return f"{PREFIX}/{DOWN}/{_device(device)}/#"


# --- messages ---------------------------------------------------------------------------------

def _check_meta(obj: Any) -> None:
    """The fields a file offer and an init share."""
    _file_id(obj.file_id)
    _path_part(obj.name, "name")
    _path_part(obj.activity, "activity", 64)
    _int(obj.size, "size")
    _sha256(obj.sha256)
    if obj.manifest is not None:
        _path_part(obj.manifest, "manifest")
    _pattern(obj.kind, "kind", _KIND, "a kind (lowercase letters, digits, _)")
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
            raise ProtocolError(f"must be an object, not {_type(obj)}", what)
        return _build(cls, obj, what, _META_KEYS)


@dataclass(frozen=True)
class Hello:
    """Device → dock on docking: who it is and every file it holds for the dock."""

    KIND: ClassVar[Kind] = Kind.HELLO
    device: str
    firmware: str
    battery_percent: int | None
    files: tuple[FileOffer, ...]

    def __post_init__(self) -> None:
        _device(self.device)
        _text(self.firmware, "firmware", 64, empty=True)
        if self.battery_percent is not None:
            _int(self.battery_percent, "battery_percent", 0, 100)
        if not isinstance(self.files, (list, tuple)):
            raise ProtocolError(f"must be a list, not {_type(self.files)}", "files")
        object.__setattr__(self, "files", tuple(self.files))
        seen: set[str] = set()
        for i, offer in enumerate(self.files):
            if not isinstance(offer, FileOffer):
                raise ProtocolError(f"must be a FileOffer, not {_type(offer)}", f"files[{i}]")
            if offer.file_id in seen:
                # Content-addressed ids: two files with the same bytes cannot be told apart.
                raise ProtocolError("offered twice in one hello", f"files[{i}].file_id")
            seen.add(offer.file_id)

    def topic(self, device: str) -> str:
        return hello_topic(device)

    def encode(self) -> bytes:
        return _encode({"device": self.device, "firmware": self.firmware,
                        "battery_percent": self.battery_percent,
                        "files": [offer.to_json() for offer in self.files]})

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        obj = _json_object(payload, "hello", MAX_HELLO_BYTES)
        files = _get(obj, "files", "hello")
        if not isinstance(files, list):
            raise ProtocolError(f"must be a list, not {_type(files)}", "hello.files")
        offers = [FileOffer.from_json(item, f"hello.files[{i}]") for i, item in enumerate(files)]
        return _build(cls, {**obj, "files": offers}, "hello",
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
            raise ProtocolError(f"must be a list, not {_type(self.files)}", "files")
        if not isinstance(self.known, (list, tuple)):
            raise ProtocolError(f"must be a list, not {_type(self.known)}", "known")
        files = []
        seen: set[str] = set()
        for i, item in enumerate(self.files):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ProtocolError("must be a (file_id, offset) pair", f"files[{i}]")
            file_id = _file_id(item[0], f"files[{i}].file_id")
            offset = _int(item[1], f"files[{i}].offset")
            if file_id in seen:
                raise ProtocolError("listed twice", f"files[{i}].file_id")
            seen.add(file_id)
            files.append((file_id, offset))
        known = []
        for i, file_id in enumerate(self.known):
            if _file_id(file_id, f"known[{i}]") in seen:
                raise ProtocolError("both wanted and known", f"known[{i}]")
            seen.add(file_id)
            known.append(file_id)
        _int(self.chunk_limit, "chunk_limit", 1, MAX_CHUNK_BYTES)
        object.__setattr__(self, "files", tuple(files))
        object.__setattr__(self, "known", tuple(known))

    def topic(self, device: str) -> str:
        return want_topic(device)

    def encode(self) -> bytes:
        return _encode({"files": [{"file_id": f, "offset": o} for f, o in self.files],
                        "known": list(self.known), "chunk_limit": self.chunk_limit})

    @classmethod
    def decode(cls, payload: bytes) -> Want:
        obj = _json_object(payload, "want", MAX_HELLO_BYTES)
        files = _get(obj, "files", "want")
        if not isinstance(files, list):
            raise ProtocolError(f"must be a list, not {_type(files)}", "want.files")
        pairs = []
        for i, item in enumerate(files):
            where = f"want.files[{i}]"
            if not isinstance(item, dict):
                raise ProtocolError(f"must be an object, not {_type(item)}", where)
            pairs.append((_get(item, "file_id", where), _get(item, "offset", where)))
        return _build(cls, {**obj, "files": pairs}, "want", ("files", "known", "chunk_limit"))


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
        return _encode(self.to_json())

    @classmethod
    def decode(cls, payload: bytes) -> Init:
        return _build(cls, _json_object(payload, "init", MAX_CONTROL_BYTES), "init", _META_KEYS)


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
        _file_id(self.file_id)
        _int(self.offset, "offset")
        _sha256(self.sha256)
        data = _bytes(self.data, "data")
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
        _file_id(self.file_id)
        _int(self.next_offset, "next_offset")
        if not isinstance(self.status, str) or self.status not in AckStatus._value2member_map_:
            raise ProtocolError(f"must be one of {', '.join(AckStatus)}", "status")
        object.__setattr__(self, "status", AckStatus(self.status))
        _pattern(self.reason, "reason", _REASON, "a reason code (lowercase letters and _)")
        _text(self.detail, "detail", 1024, empty=True)

    def topic(self, device: str) -> str:
        return ack_topic(device, self.file_id)

    def encode(self) -> bytes:
        return _encode({"file_id": self.file_id, "next_offset": self.next_offset,
                        "status": str(self.status), "reason": self.reason,
                        "detail": self.detail})

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        obj = _json_object(payload, "ack", MAX_CONTROL_BYTES)
        obj.setdefault("detail", "")  # optional on the wire
        return _build(cls, obj, "ack", ("file_id", "next_offset", "status", "reason", "detail"))


@dataclass(frozen=True)
class Fin:
    """Device → dock once every chunk is acknowledged: the whole file's size and hash."""

    KIND: ClassVar[Kind] = Kind.FIN
    file_id: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        _file_id(self.file_id)
        _int(self.size, "size")
        _sha256(self.sha256)
        if self.file_id != self.sha256[:FILE_ID_CHARS]:
            raise ProtocolError("is not the first 32 hex digits of sha256", "file_id")

    def topic(self, device: str) -> str:
        return fin_topic(device, self.file_id)

    def encode(self) -> bytes:
        return _encode({"file_id": self.file_id, "size": self.size, "sha256": self.sha256})

    @classmethod
    def decode(cls, payload: bytes) -> Fin:
        return _build(cls, _json_object(payload, "fin", MAX_CONTROL_BYTES), "fin",
                      ("file_id", "size", "sha256"))


RECEIPT_FIELDS = ("dock", "device", "file_id", "name", "size", "sha256", "stored_at",
                  "archive_path")


def _plain_json(value: object, name: str, depth: int = 0) -> None:
    # A receipt body is signed over its canonical form, which allows integers only.
    if depth > 8:
        raise ProtocolError("is nested too deeply", name)
    if isinstance(value, str):
        _text(value, name, MAX_CONTROL_BYTES, empty=True)
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
            _text(key, f"{name} key", 128)
            _plain_json(item, f"{name}.{key}", depth + 1)
        return
    raise ProtocolError(f"{_type(value)} has no place in a signed receipt", name)


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
            raise ProtocolError(f"must be an object, not {_type(self.body)}", "body")
        body = dict(self.body)
        _plain_json(body, "body")
        for key in RECEIPT_FIELDS:
            _get(body, key, "body")
        _text(body["dock"], "body.dock", 128)
        _device(body["device"], "body.device")
        _file_id(body["file_id"], "body.file_id")
        _path_part(body["name"], "body.name")
        _int(body["size"], "body.size")
        _sha256(body["sha256"], "body.sha256")
        _int(body["stored_at"], "body.stored_at")
        _text(body["archive_path"], "body.archive_path", 1024)
        if body["file_id"] != body["sha256"][:FILE_ID_CHARS]:
            raise ProtocolError("is not the first 32 hex digits of sha256", "body.file_id")
        signature = _bytes(self.signature, "signature")
        if not 1 <= len(signature) <= 512:
            raise ProtocolError(f"is {len(signature)} bytes; expected 1..512", "signature")
        # A private deep copy: the caller's dict can change, the signed body cannot.
        object.__setattr__(self, "body", json.loads(_encode(body)))
        object.__setattr__(self, "signature", signature)

    @property
    def file_id(self) -> str:
        return str(self.body["file_id"])

    def signed_bytes(self) -> bytes:
        """The bytes the dock signs and the device verifies: canonical JSON of the body."""
        return _encode(self.body)

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
        return _encode({"body": dict(self.body),
                        "signature": base64.b64encode(self.signature).decode("ascii")})

    @classmethod
    def decode(cls, payload: bytes) -> Receipt:
        obj = _json_object(payload, "receipt", MAX_CONTROL_BYTES)
        text = _get(obj, "signature", "receipt")
        if not isinstance(text, str):
            raise ProtocolError(f"must be base64 text, not {_type(text)}", "receipt.signature")
        try:
            signature = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise ProtocolError("is not standard base64", "receipt.signature") from None
        return _build(cls, {**obj, "signature": signature}, "receipt", ("body", "signature"))


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
        _number(self.t1, "t1")

    def topic(self, device: str) -> str:
        return time_request_topic(device)

    def encode(self) -> bytes:
        return _encode({"t1": self.t1})

    @classmethod
    def decode(cls, payload: bytes) -> TimeRequest:
        return _build(cls, _json_object(payload, "time_request", MAX_CONTROL_BYTES),
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
            _number(getattr(self, name), name)

    def topic(self, device: str) -> str:
        return time_response_topic(device)

    def encode(self) -> bytes:
        return _encode({"t1": self.t1, "t2": self.t2, "t3": self.t3})

    @classmethod
    def decode(cls, payload: bytes) -> TimeResponse:
        return _build(cls, _json_object(payload, "time_response", MAX_CONTROL_BYTES),
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
        size = len(_encode(offer.to_json())) + 1
        if batches[-1] and used + size > budget:
            batches.append([])
            used = 0
        batches[-1].append(offer)
        used += size
    return batches if batches[-1] else []


# --- outputs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Publish:
    """Publish ``payload`` on ``topic``: QoS 1, never retained."""

    topic: str
    payload: bytes
    qos: int = QOS


@dataclass(frozen=True)
class InvalidMessage:
    """Input from the peer that was not acted on; the edge logs it."""

    topic: str
    reason: str


@dataclass(frozen=True)
class ReceiptReceived:
    """Device edge: a receipt whose body matches the offered file. Verify its signature
    with the dock's key and the file's hash on disk, then delete and write the audit log."""

    file_id: str
    receipt: Receipt


@dataclass(frozen=True)
class FileFailed:
    """Device edge: this file was not transferred in this session; it stays on the device
    and is offered again next time."""

    file_id: str
    reason: str


@dataclass(frozen=True)
class TimeReceived:
    """Device edge: the answer to a time request. Stamp t4 on arrival and use
    :func:`clock_offset`; log the offset before correcting (R7.4)."""

    response: TimeResponse


@dataclass(frozen=True)
class Done:
    """Device edge: every offered file has a receipt or has failed; the session may end."""

    receipted: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True)
class DeviceHello:
    """Dock edge: a device docked (record it; show its backlog)."""

    hello: Hello


@dataclass(frozen=True)
class OpenFile:
    """Dock edge: create the incoming file for ``init`` if it does not exist (keep it if it
    does) and record its metadata. Comes before any StoreChunk for the file."""

    init: Init


@dataclass(frozen=True)
class StoreChunk:
    """Dock edge: make the incoming file exactly ``data`` at ``offset`` — cut anything past
    ``offset`` first — durably (fsync), then call ``Ingest.chunk_stored``, or
    ``Ingest.chunk_failed`` if it could not (also when the file is shorter than ``offset``).
    Carry these out in the order given."""

    file_id: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class CompleteFile:
    """Dock edge: every byte is stored. Check size and whole-file hash, verify the seal,
    move the file into the archive, then call ``Ingest.file_verified`` with a signed
    receipt body, or ``Ingest.file_rejected`` with the reason."""

    file_id: str
    init: Init


@dataclass(frozen=True)
class DiscardFile:
    """Dock edge: empty the incoming file; it will be sent again from offset 0."""

    file_id: str
    reason: str


UploaderOutput = Publish | ReceiptReceived | FileFailed | TimeReceived | Done | InvalidMessage
IngestOutput = (Publish | DeviceHello | OpenFile | StoreChunk | CompleteFile | DiscardFile
                | InvalidMessage)


@dataclass(frozen=True)
class FileProgress:
    """Where one file stands, for progress displays."""

    file_id: str
    name: str
    size: int
    confirmed: int  # bytes the dock has confirmed as stored durably
    phase: str


def _publish(device: str, message: Message) -> Publish:
    return Publish(message.topic(device), message.encode())


def _topic_text(topic: object) -> str:
    return topic if isinstance(topic, str) else repr(topic)


# --- device side ------------------------------------------------------------------------------

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
    phase: UploadPhase = UploadPhase.OFFERED
    acked: int = 0  # the dock has stored [0, acked) durably
    sent: int = 0  # next offset to send
    in_flight: deque[tuple[int, int]] = field(default_factory=deque)  # (offset, length)
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
                 firmware: str = "", battery_percent: int | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self.device = _device(device)
        self.chunk_size = _int(chunk_size, "chunk_size", 1, MAX_CHUNK_BYTES)
        self.window = _int(window, "window", 1, 1 << 16)
        self.max_retries = _int(max_retries, "max_retries", 0, 1 << 16)
        self._read = read
        files = tuple(files)
        self._hello = Hello(device, firmware, battery_percent, files)
        encoded = self._hello.encode()
        if len(encoded) > MAX_HELLO_BYTES:
            raise ProtocolError(f"a hello offering {len(files)} files is {len(encoded)} "
                                f"bytes, over {MAX_HELLO_BYTES}; offer them in several "
                                "sessions (split_offers)", "files")
        self._hello_bytes = encoded
        self._files = {offer.file_id: _Upload(offer, i) for i, offer in enumerate(files)}
        self._queue: list[tuple[int, str]] = []  # heap: (index, file_id) with sends due
        self._in_flight = 0  # chunks sent and not yet acknowledged, over all files
        self._unsettled = len(self._files)  # neither receipted nor failed
        self._time_requests: deque[float] = deque(maxlen=8)
        self.state = UploaderState.IDLE

    # --- the edge calls these --------------------------------------------------------------

    def start(self) -> list[UploaderOutput]:
        """Begin the session: the hello."""
        if self.state is not UploaderState.IDLE:
            raise ProtocolError(f"start() in state {self.state}", "state")
        self.state = UploaderState.HELLO_SENT
        return [Publish(hello_topic(self.device), self._hello_bytes)]

    def request_time(self, t1: float) -> list[UploaderOutput]:
        """Ask the dock for its time (after start()); ``t1`` is the device clock now."""
        if self.state is UploaderState.IDLE:
            raise ProtocolError("request_time() before start()", "state")
        request = TimeRequest(t1)
        self._time_requests.append(request.t1)
        return [_publish(self.device, request)]

    def receive(self, topic: str, payload: bytes) -> list[UploaderOutput]:
        """A message from the broker. Never raises on what the dock sent."""
        try:
            parsed = parse_topic(topic)
        except ProtocolError as exc:
            return [InvalidMessage(_topic_text(topic), str(exc))]
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
        (go back to the last acknowledged offset), every fin still unanswered, an init for
        each file whose receipt is awaited (the dock answers it with the receipt), or the
        hello. A message the broker dropped silently is recovered this way."""
        if self.state is UploaderState.HELLO_SENT:
            return [Publish(hello_topic(self.device), self._hello_bytes)]
        if self.state is not UploaderState.TRANSFERRING:
            return []
        out: list[UploaderOutput] = []
        for upload in self._files.values():
            if upload.phase is UploadPhase.SENDING:
                self._rewind(upload, upload.acked)
            elif upload.phase is UploadPhase.FIN_SENT:
                out.append(self._fin(upload))
            elif upload.phase is UploadPhase.KNOWN:
                out.append(_publish(self.device, Init.from_offer(upload.offer)))
        out += self._pump()
        return out + self._check_done()  # a read that failed may have settled the last file

    def progress(self) -> tuple[FileProgress, ...]:
        return tuple(FileProgress(u.offer.file_id, u.offer.name, u.offer.size,
                                  u.offer.size if u.phase is UploadPhase.RECEIPTED else u.acked,
                                  str(u.phase)) for u in self._files.values())

    # --- handlers -----------------------------------------------------------------------------

    def _on_want(self, topic: str, want: Want) -> list[UploaderOutput]:
        if self.state is not UploaderState.HELLO_SENT:
            return []  # one want per session; a repeat changes nothing
        self.state = UploaderState.TRANSFERRING
        self.chunk_size = min(self.chunk_size, want.chunk_limit)
        out: list[UploaderOutput] = []
        for file_id in want.known:
            upload = self._files.get(file_id)
            if upload is None:
                out.append(InvalidMessage(topic, f"known file {file_id} was not offered"))
            elif upload.phase is UploadPhase.OFFERED:
                upload.phase = UploadPhase.KNOWN
        for order, (file_id, offset) in enumerate(want.files):
            upload = self._files.get(file_id)
            if upload is None:
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
        for upload in self._files.values():
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
            if upload.phase is not UploadPhase.SENDING:
                return []  # a late duplicate ack
            if ack.next_offset > upload.acked:
                upload.acked = ack.next_offset
                upload.retries = 0  # progress: earlier trouble is over
            if upload.acked > upload.sent:  # the dock had more than we knew: skip ahead
                self._rewind(upload, upload.acked)
            while upload.in_flight and sum(upload.in_flight[0]) <= upload.acked:
                upload.in_flight.popleft()
                self._in_flight -= 1
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
        if upload.phase is not UploadPhase.FAILED:
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
        upload.in_flight.clear()

    def _pump(self) -> list[UploaderOutput]:
        """Fill the window, the first file in the dock's order first."""
        out: list[UploaderOutput] = []
        while self._queue and self._in_flight < self.window:
            upload = self._files[self._queue[0][1]]
            if upload.phase is UploadPhase.SENDING and not upload.init_sent:
                # Init every time a file is (re)started in a session, even to resume:
                # it is small, and it lets a dock that restarted learn the file again.
                upload.init_sent = True
                out.append(_publish(self.device, Init.from_offer(upload.offer)))
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
            chunk = Chunk.of(upload.offer.file_id, upload.sent, bytes(data))
            out.append(_publish(self.device, chunk))
            upload.in_flight.append((upload.sent, length))
            upload.sent += length
            self._in_flight += 1
        return out

    def _maybe_fin(self, upload: _Upload) -> list[UploaderOutput]:
        if (upload.phase is UploadPhase.SENDING and upload.init_sent
                and upload.acked == upload.sent == upload.offer.size and not upload.in_flight):
            upload.phase = UploadPhase.FIN_SENT
            return [self._fin(upload)]
        return []

    def _fin(self, upload: _Upload) -> Publish:
        offer = upload.offer
        return _publish(self.device, Fin(offer.file_id, offer.size, offer.sha256))

    def _fail(self, upload: _Upload, reason: str) -> list[UploaderOutput]:
        self._drop_in_flight(upload)
        if upload.phase is not UploadPhase.FAILED:
            self._unsettled -= 1
        upload.phase = UploadPhase.FAILED
        return [FileFailed(upload.offer.file_id, reason)]

    def _check_done(self) -> list[UploaderOutput]:
        if self.state is not UploaderState.TRANSFERRING or self._unsettled:
            return []
        self.state = UploaderState.DONE
        return [Done(tuple(f for f, u in self._files.items() if u.phase is UploadPhase.RECEIPTED),
                     tuple(f for f, u in self._files.items() if u.phase is UploadPhase.FAILED))]


# --- dock side --------------------------------------------------------------------------------

class IngestPhase(StrEnum):
    RECEIVING = "receiving"
    VERIFYING = "verifying"
    ARCHIVED = "archived"


@dataclass
class _Incoming:
    file_id: str
    phase: IngestPhase = IngestPhase.RECEIVING
    init: Init | None = None  # from this Ingest's init; chunks need it
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
        self.device = _device(device)
        self.chunk_limit = _int(chunk_limit, "chunk_limit", 1, MAX_CHUNK_BYTES)
        self._files: dict[str, _Incoming] = {}
        for file_id, offset in (stored or {}).items():
            _file_id(file_id, "stored")
            _int(offset, f"stored[{file_id}]")
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

    def receive(self, topic: str, payload: bytes, now: float) -> list[IngestOutput]:
        """A message from the device; ``now`` is the dock's clock (UTC seconds) on arrival."""
        _number(now, "now")
        try:
            parsed = parse_topic(topic)
        except ProtocolError as exc:
            return [InvalidMessage(_topic_text(topic), str(exc))]
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
        if isinstance(message, Init):
            return self._on_init(message)
        if isinstance(message, Fin):
            return self._on_fin(message)
        assert isinstance(message, TimeRequest)
        return [_publish(self.device, TimeResponse(message.t1, now, now))]

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
                receipts.append(_publish(self.device, entry.receipt))
            elif entry.phase is IngestPhase.VERIFYING:
                known.append(offer.file_id)  # its receipt (or a restart) follows
            else:
                entry.resend_from = None  # a new session: nothing is asked for yet
                if entry.confirmed > offer.size:
                    out += self._reset(entry, f"{entry.confirmed} bytes stored, more than "
                                              f"the file's {offer.size}")
                wanted.append((offer.file_id, entry.confirmed))
        want = Want(tuple(wanted), tuple(known), self.chunk_limit)
        return out + [_publish(self.device, want)] + receipts

    def _on_init(self, init: Init) -> list[IngestOutput]:
        entry = self._files.setdefault(init.file_id, _Incoming(init.file_id))
        if entry.phase is IngestPhase.ARCHIVED:
            assert entry.receipt is not None
            return [_publish(self.device, entry.receipt)]
        if entry.phase is IngestPhase.VERIFYING:
            return []
        held = entry.init or entry.offer
        if held is not None and held.to_json() != init.to_json():
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
            return [InvalidMessage(topic, f"payload is {_type(payload)}, not bytes")]
        data = bytes(payload)
        file_id, offset = str(parsed.file_id), int(parsed.offset or 0)
        entry = self._files.get(file_id)
        if entry is None or entry.init is None:
            return [Publish(ack_topic(self.device, file_id),
                            Ack(file_id, 0, AckStatus.REJECTED, Reason.UNKNOWN_FILE,
                                "no init for this file").encode())]
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
        if hashlib.sha256(data).hexdigest() != parsed.sha256:
            return [self._ask_resend(entry, Reason.CHECKSUM, f"chunk at {offset} does not "
                                                             "match its sha256")]
        entry.pending.append((offset, size))
        entry.accepted = offset + size
        entry.resend_from = None
        return [StoreChunk(file_id, offset, data)]

    def _on_fin(self, fin: Fin) -> list[IngestOutput]:
        entry = self._files.get(fin.file_id)
        if entry is None or entry.init is None:
            return [Publish(ack_topic(self.device, fin.file_id),
                            Ack(fin.file_id, 0, AckStatus.REJECTED, Reason.UNKNOWN_FILE,
                                "fin without init").encode())]
        if entry.phase is IngestPhase.ARCHIVED:
            assert entry.receipt is not None
            return [_publish(self.device, entry.receipt)]
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
        entry = self._entry(file_id)
        if entry.phase is not IngestPhase.RECEIVING or not entry.pending \
                or entry.pending[0] != (offset, size):
            return []  # a store from before a resend or restart: no longer counted
        entry.pending.popleft()
        entry.confirmed = offset + size
        out: list[IngestOutput] = [self._ack(entry, AckStatus.OK, Reason.STORED)]
        if entry.fin_waiting and entry.init is not None and entry.confirmed == entry.init.size:
            out += self._complete(entry)
        return out

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
        problem = receipt.mismatch(entry.init.offer(), self.device)
        if problem is not None:
            raise ProtocolError(f"receipt does not describe the file received: {problem}",
                                "receipt_body")
        entry.phase = IngestPhase.ARCHIVED
        entry.receipt = receipt
        return [_publish(self.device, receipt)]

    def file_rejected(self, file_id: str, reason: str, *, retry: bool = True) -> list[IngestOutput]:
        """The stored file failed its hash or seal: discard it and have it sent again from 0
        (``retry``), or refuse it for this session (a seal that will never verify)."""
        entry = self._entry(file_id)
        if entry.phase is not IngestPhase.VERIFYING:
            raise ProtocolError(f"file {file_id} is {entry.phase}, not verifying", "file_id")
        out = self._reset(entry, _detail(reason))
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

    def _ask_resend(self, entry: _Incoming, reason: Reason, detail: str) -> Publish:
        # Remember the ask, so the chunks already on their way past this point (each a
        # "gap" now) do not each trigger another resend of the same range.
        entry.resend_from = entry.accepted
        return self._ack(entry, AckStatus.RESEND, reason, detail, next_offset=entry.accepted)

    def _ack(self, entry: _Incoming, status: AckStatus, reason: Reason, detail: str = "", *,
             next_offset: int | None = None) -> Publish:
        offset = entry.confirmed if next_offset is None else next_offset
        return _publish(self.device, Ack(entry.file_id, offset, status, str(reason),
                                         _detail(detail)))
