"""The dock-sync wire protocol: topics, messages and the two state machines (after h11).

A docked recorder uploads its evidence to the dock over MQTT. This package is the whole
protocol and nothing else: bytes and events go in, events and publishes come out. It opens
no sockets or files, starts no threads and reads no clock — times are passed in, and the
one thing it cannot do without I/O, reading a piece of an evidence file on the device, is a
callable the device edge hands to :class:`Uploader`. paho-mqtt, the archive and the keys
live at the edges. ``docs/sync-protocol.md`` is the specification; this docstring is the map.

Modules, as h11 is split: ``fields`` (limits, :class:`ProtocolError`, the checks every field
passes), ``topics`` (topic names), ``messages`` (the nine messages and the receipt body),
``outputs`` (what the state machines hand their edges), ``uploader`` (the device's state
machine) and ``ingest`` (the dock's). Import the names from here: ``from sync import
protocol as p``.

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

The states of a session and of each file are drawn in ``uploader`` (the device) and
``ingest`` (the dock).
"""

from __future__ import annotations

from .fields import (DEFAULT_CHUNK_BYTES, DEFAULT_MAX_RETRIES, DEFAULT_WINDOW, DEVICE_ID_PATTERN,
                     FILE_ID_CHARS, MAX_CHUNK_BYTES, MAX_CONTROL_BYTES, MAX_HELLO_BYTES, MAX_SIZE,
                     ProtocolError, file_id_of)
from .ingest import Ingest, IngestPhase
from .messages import (RECEIPT_FIELDS, Ack, AckStatus, Chunk, FileOffer, Fin, Hello, Init, Message,
                       Reason, Receipt, TimeRequest, TimeResponse, Want, clock_offset,
                       decode_message, make_receipt_body, receipt_body, split_offers)
from .outputs import (CompleteFile, DeviceHello, DiscardFile, Done, FileFailed, FileProgress,
                      IngestOutput, InvalidMessage, OpenFile, Publish, ReceiptReceived, StoreChunk,
                      TimeReceived, UploaderOutput)
from .topics import (DOWN, MAX_TOPIC_CHARS, PREFIX, QOS, UP, Kind, Topic, ack_topic, chunk_topic,
                     device_subscription, dock_subscription, fin_topic, hello_topic, init_topic,
                     parse_topic, receipt_topic, time_request_topic, time_response_topic,
                     want_topic)
from .uploader import ReadFn, Uploader, UploaderState, UploadPhase

__all__ = [
    # fields
    "DEFAULT_CHUNK_BYTES", "DEFAULT_MAX_RETRIES", "DEFAULT_WINDOW", "DEVICE_ID_PATTERN",
    "FILE_ID_CHARS", "MAX_CHUNK_BYTES", "MAX_CONTROL_BYTES", "MAX_HELLO_BYTES", "MAX_SIZE",
    "ProtocolError", "file_id_of",
    # topics
    "DOWN", "MAX_TOPIC_CHARS", "PREFIX", "QOS", "UP", "Kind", "Topic", "ack_topic",
    "chunk_topic", "device_subscription", "dock_subscription", "fin_topic", "hello_topic",
    "init_topic", "parse_topic", "receipt_topic", "time_request_topic", "time_response_topic",
    "want_topic",
    # messages
    "RECEIPT_FIELDS", "Ack", "AckStatus", "Chunk", "FileOffer", "Fin", "Hello", "Init",
    "Message", "Reason", "Receipt", "TimeRequest", "TimeResponse", "Want", "clock_offset",
    "decode_message", "make_receipt_body", "receipt_body", "split_offers",
    # outputs
    "CompleteFile", "DeviceHello", "DiscardFile", "Done", "FileFailed", "FileProgress",
    "IngestOutput", "InvalidMessage", "OpenFile", "Publish", "ReceiptReceived", "StoreChunk",
    "TimeReceived", "UploaderOutput",
    # the state machines
    "ReadFn", "Uploader", "UploaderState", "UploadPhase", "Ingest", "IngestPhase",
]
