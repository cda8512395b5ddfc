"""Topic names: the kind of each message, and where it goes (``docs/sync-protocol.md`` 3).

``str(Topic(...))`` builds a topic name and :func:`parse_topic` reads one; the table of
topics is in the package's docstring.
"""

from __future__ import annotations

import functools

import re
from dataclasses import dataclass
from enum import StrEnum

from .fields import (ProtocolError, check_device, check_file_id, check_int, check_sha256, shorten,
                     type_name)

PREFIX = "bodycam/v1"
UP = "up"  # device → dock
DOWN = "down"  # dock → device
MAX_TOPIC_CHARS = 256  # our longest topic is ~170 characters
QOS = 1

OFFSET_RE = re.compile(r"0|[1-9][0-9]{0,15}")


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
WITH_FILE = frozenset({Kind.INIT, Kind.CHUNK, Kind.FIN, Kind.ACK, Kind.RECEIPT})
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
    sha256: str | None = None  # chunk only, optional: the SHA-256 of this chunk's payload

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in Kind._value2member_map_:
            raise ProtocolError(f"{self.kind!r} is not a kind of message", "topic.kind")
        object.__setattr__(self, "kind", Kind(self.kind))
        check_device(self.device, "topic.device")
        if self.kind in WITH_FILE:
            check_file_id(self.file_id, "topic.file_id")
        elif self.file_id is not None:
            raise ProtocolError(f"{self.kind} topics carry no file id", "topic.file_id")
        if self.kind is Kind.CHUNK:
            check_int(self.offset, "topic.offset")
            if self.sha256 is not None:
                check_sha256(self.sha256, "topic.sha256")
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
            levels.append(str(self.offset))
            if self.sha256 is not None:
                levels.append(self.sha256)
        return "/".join(levels)


def parse_topic(topic: str) -> Topic:
    """Parse an MQTT topic name of this protocol; :class:`ProtocolError` says what is wrong."""
    if not isinstance(topic, str):
        raise ProtocolError(f"must be a string, not {type_name(topic)}", "topic")
    if len(topic) > MAX_TOPIC_CHARS:
        raise ProtocolError(f"is {len(topic)} characters, longer than any of ours", "topic")
    levels = topic.split("/")
    if levels[:1] != ["bodycam"]:
        raise ProtocolError(f"{shorten(topic)} is not under {PREFIX}/", "topic")
    if len(levels) > 1 and levels[1] != "v1":
        version = levels[1]
        raise ProtocolError(f"unsupported protocol version {shorten(version)} (this is v1)",
                            "topic.version")
    if len(levels) < 5:
        raise ProtocolError(f"{shorten(topic)} is too short: "
                            f"{PREFIX}/<up|down>/<device>/<kind>...", "topic")
    direction, device, rest = levels[2], levels[3], levels[4:]
    if direction not in (UP, DOWN):
        raise ProtocolError(f"{shorten(direction)} is neither 'up' nor 'down'", "topic.direction")
    check_device(device, "topic.device")
    kind = None
    for span in (2, 1):  # "time/req" spans two levels; try it before the one-level kinds
        candidate = _BY_LEVEL.get((direction, rest[0], span))
        if candidate is not None and "/".join(rest[:span]) == candidate.value:
            kind = candidate
            break
    if kind is None:
        raise ProtocolError(f"{shorten('/'.join(rest))} is not a {direction!r} message "
                            f"of this protocol", "topic.kind")
    params = rest[len(kind.value.split("/")):]
    # A chunk's checksum level is optional (section 3): <file_id>/<offset>[/<sha256>].
    wanted = 3 if kind is Kind.CHUNK else 1 if kind in WITH_FILE else 0
    least = 2 if kind is Kind.CHUNK else wanted
    if len(params) > wanted:
        raise ProtocolError(f"too many levels after {kind.value!r} "
                            f"(expected {wanted}, got {len(params)})", "topic")
    if len(params) < least:
        need = "<file_id>/<offset>[/<sha256>]" if kind is Kind.CHUNK else "<file_id>"
        raise ProtocolError(f"{kind.value!r} needs {need} after it", "topic")
    file_id = check_file_id(params[0], "topic.file_id") if wanted else None
    offset = sha = None
    if kind is Kind.CHUNK:
        if not OFFSET_RE.fullmatch(params[1]):
            raise ProtocolError(f"{shorten(params[1])} is not a decimal integer "
                                "(digits only, no sign or leading zeros)", "topic.offset")
        offset = check_int(int(params[1]), "topic.offset")
        sha = check_sha256(params[2], "topic.sha256") if len(params) == 3 else None
    return Topic(kind, device, file_id, offset, sha)


def hello_topic(device: str) -> str:
    return str(Topic(Kind.HELLO, device))


def init_topic(device: str, file_id: str) -> str:
    return str(Topic(Kind.INIT, device, file_id))


def chunk_topic(device: str, file_id: str, offset: int, sha256: str | None = None) -> str:
    if sha256 is not None or type(device) is not str or type(file_id) is not str:
        return str(Topic(Kind.CHUNK, device, file_id, offset, sha256))  # checked in full
    # Every chunk of a file has the same device and file id: those are checked once per
    # file (a Topic per chunk was an eighth of a sending device's interpreter time).
    return f"{_chunk_prefix(device, file_id)}/{check_int(offset, 'topic.offset')}"


@functools.lru_cache(maxsize=64)
def _chunk_prefix(device: str, file_id: str) -> str:
    return str(Topic(Kind.CHUNK, device, file_id, 0)).rsplit("/", 1)[0]


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
    return f"{PREFIX}/{UP}/{'+' if device is None else check_device(device)}/#"


def device_subscription(device: str) -> str:
    """What a device subscribes to: the dock's messages to it, and nothing else."""
    return f"{PREFIX}/{DOWN}/{check_device(device)}/#"
