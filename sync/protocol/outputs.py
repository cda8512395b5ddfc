"""What the two state machines hand their edges: publishes to send, and effects to carry
out (after h11's events out). Each effect's docstring says what the edge must do with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import FileOffer, Hello, Message, Receipt, TimeResponse
from .topics import QOS


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

    init: FileOffer


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
    init: FileOffer


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


def publish(device: str, message: Message) -> Publish:
    return Publish(message.topic(device), message.encode())


def topic_text(topic: object) -> str:
    return topic if isinstance(topic, str) else repr(topic)
