"""Encrypted evidence files (R14.1): written in independently authenticated chunks.

Layout of a ``.bce`` file (every integer big-endian; docs/evidence-format.md has it all):

    "BCE1"  u16 header length  header (canonical JSON)
    then chunks:  u32 ciphertext length  u64 written-at (UTC ms)  ciphertext (with 16-byte tag)

The header carries an ephemeral X25519 public key and the per-file AES-256 key wrapped
with a key derived (HKDF-SHA256) from that ephemeral key and the agency's public key, so
only the agency's private key opens the file — not the device that wrote it. Chunk *i* is
AES-256-GCM with nonce = i (11 bytes) ‖ final-flag (1 byte) and associated data =
SHA-256(header) ‖ i ‖ written-at: a reordered, dropped or swapped chunk fails, and the
final flag on the last chunk shows where the file legitimately ends — so truncation shows
too. A chunk is cut at every flush (every half second of media), so a power cut loses at
most the unflushed tail; the plaintext SHA-256 and the stored-bytes SHA-256 are computed
as the bytes go by, never by reading the file back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.exceptions import InvalidTag

from firmware_py.evidence.canonical import canonical

MAGIC = b"BCE1"
ALGORITHM = "X25519-HKDF-SHA256/AES-256-GCM"
HKDF_INFO = b"bodycam evidence file key v1"
CHUNK_LIMIT = 1 << 20  # plaintext bytes per chunk at most
CHUNK_HEAD = struct.Struct(">IQ")  # ciphertext length, written-at UTC ms
SUFFIX = ".bce"


class EvidenceFileError(ValueError):
    """A stored file that is not what it claims; the message names the file and the place."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(raw_public_key: bytes) -> str:
    """How records name a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def _kek(shared: bytes, ephemeral: bytes, agency: bytes) -> bytes:
    return HKDF(SHA256(), 32, salt=ephemeral + agency, info=HKDF_INFO).derive(shared)


def nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def chunk_aad(header_hash: bytes, index: int, written_at_ms: int) -> bytes:
    return header_hash + index.to_bytes(8, "big") + written_at_ms.to_bytes(8, "big")


@dataclass(frozen=True)
class StoredFile:
    """What sealing needs to know about a closed evidence file."""

    path: Path
    plaintext_sha256: str | None  # None when the writer's state was lost (a cut file)
    plaintext_bytes: int | None
    stored_sha256: str
    stored_bytes: int
    chunks: int
    complete: bool  # ends with a final chunk
    last_chunk_utc_ms: int | None


class BackgroundHash:
    """SHA-256 on a second thread: the plaintext hash runs beside encryption and the stored
    hash (hashlib releases the GIL), in write order, on bytes nobody can change."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plain-sha256")
        self._last: Future[None] | None = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer once write() returns
        if len(data) < 65536:
            self._wait()
            self._hash.update(data)  # small writes: a thread hop costs more than the hash
            return
        self._last = self._pool.submit(self._hash.update, data)

    def _wait(self) -> None:
        if self._last is not None:
            self._last.result()
            self._last = None

    def hexdigest(self) -> str:
        self._wait()
        self._pool.shutdown(wait=True)
        return self._hash.hexdigest()


class EncryptingFile:
    """A new ``.bce`` evidence file; ``write`` buffers, ``flush`` seals a chunk to disk."""

    def __init__(self, path: Path, agency_public: X25519PublicKey,
                 context: dict[str, object], utc_ms: Callable[[], int] | None = None,
                 durable: bool = True) -> None:
        self.path = Path(path)
        self._utc_ms = utc_ms or (lambda: int(time.time() * 1000))
        self._durable = durable
        file_key = AESGCM.generate_key(256)
        ephemeral = X25519PrivateKey.generate()
        eph_raw = raw_public(ephemeral.public_key())
        agency_raw = raw_public(agency_public)
        kek = _kek(ephemeral.exchange(agency_public), eph_raw, agency_raw)
        wrapped = AESGCM(kek).encrypt(b"\x00" * 12, file_key, eph_raw + agency_raw)
        header = canonical({"alg": ALGORITHM, "agency_key": key_id(agency_raw),
                            "ephemeral": b64(eph_raw), "wrapped_key": b64(wrapped),
                            "chunk_limit": CHUNK_LIMIT, **context})
        self._aead = AESGCM(file_key)
        self._out = ([bytearray(CHUNK_LIMIT + 16), bytearray(CHUNK_LIMIT + 16)]
                     if hasattr(self._aead, "encrypt_into") else [])
        self._pending: list[Future[None] | None] = [None, None]
        # The stored hash must see bytes in file order: one worker, fed in order.
        self._stored_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stored-sha256")
        self._header_hash = hashlib.sha256(header).digest()
        self._fh: BinaryIO = open(self.path, "xb")  # evidence is never overwritten
        self._plain = BackgroundHash()
        self._stored = hashlib.sha256()
        self.plaintext_bytes = 0
        self.bytes_written = 0
        self.chunks = 0
        self._buffer = bytearray()
        self._last_chunk_ms: int | None = None
        self._closed = False
        self._emit(MAGIC + struct.pack(">H", len(header)) + header)
        self._sync()

    def _emit(self, data: bytes | memoryview) -> None:
        self._fh.write(data)
        self._stored.update(data)
        self.bytes_written += len(data)

    def _sync(self) -> None:
        self._fh.flush()
        if self._durable:
            os.fsync(self._fh.fileno())

    def _chunk(self, data: bytes | bytearray | memoryview, final: bool) -> None:
        written_at = self._utc_ms()
        size = len(data) + 16
        aad = chunk_aad(self._header_hash, self.chunks, written_at)
        if self._out:
            # Two output buffers in turn: one is hashed (on the stored-hash thread) while
            # the next chunk is encrypted into the other; a fresh megabyte per chunk would
            # cost more in page faults than the encryption itself.
            slot = self.chunks % 2
            if self._pending[slot] is not None:
                self._pending[slot].result()
            out = memoryview(self._out[slot])[:size]
            self._aead.encrypt_into(nonce(self.chunks, final), data, aad, out)
        else:
            slot = None
            out = memoryview(self._aead.encrypt(nonce(self.chunks, final), data, aad))
        head = CHUNK_HEAD.pack(size, written_at)
        self._fh.write(head)
        self._fh.write(out)
        if slot is not None:
            self._stored_pool.submit(self._stored.update, head)
            self._pending[slot] = self._stored_pool.submit(self._stored.update, out)
        else:
            self._stored.update(head)
            self._stored.update(out)
        self.bytes_written += len(head) + size
        self.chunks += 1
        self._last_chunk_ms = written_at

    def _stored_digest(self) -> str:
        for future in self._pending:
            if future is not None:
                future.result()
        self._stored_pool.shutdown(wait=True)
        return self._stored.hexdigest()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError(f"{self.path.name}: write after close")
        view = memoryview(data).cast("B")
        self._plain.update(data)
        self.plaintext_bytes += len(view)
        if self._buffer:  # top up the pending chunk first
            take = min(len(view), CHUNK_LIMIT - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == CHUNK_LIMIT:
                self._chunk(self._buffer, final=False)
                self._buffer.clear()
        while len(view) >= CHUNK_LIMIT:  # whole chunks straight from the caller's bytes
            self._chunk(view[:CHUNK_LIMIT], final=False)
            view = view[CHUNK_LIMIT:]
        self._buffer += view
        return len(data)

    def flush(self) -> None:
        """Seal what is buffered as a chunk and put it on the disk."""
        if self._buffer:
            self._chunk(self._buffer, final=False)
            self._buffer.clear()
        self._sync()

    def close(self) -> StoredFile:
        if not self._closed:
            self._chunk(self._buffer, final=True)  # may be empty: it marks the end
            self._buffer.clear()
            self._sync()
            self._fh.close()
            os.chmod(self.path, 0o444)
            self._closed = True
        return StoredFile(self.path, self._plain.hexdigest(), self.plaintext_bytes,
                          self._stored_digest(), self.bytes_written, self.chunks, True,
                          self._last_chunk_ms)

    @property
    def closed(self) -> bool:
        return self._closed


# --- reading -----------------------------------------------------------------------------

@dataclass(frozen=True)
class EncryptedChunk:
    index: int
    offset: int  # of its length field in the file
    written_at_ms: int
    ciphertext: bytes | memoryview


@dataclass(frozen=True)
class ParsedFile:
    header: dict[str, object]
    header_bytes: bytes
    chunks: tuple[EncryptedChunk, ...]
    torn_bytes: int  # bytes after the last complete chunk (a cut mid-write)
    end_of_chunks: int


def parse(data: bytes, name: str = "file") -> ParsedFile:
    """Split a stored file into header and chunks without decrypting (the device can do this)."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise EvidenceFileError(f"{name}: not a bodycam evidence file (bad magic)")
    (length,) = struct.unpack(">H", data[4:6])
    header_bytes = data[6:6 + length]
    if len(header_bytes) != length:
        raise EvidenceFileError(f"{name}: header cut short")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EvidenceFileError(f"{name}: header is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise EvidenceFileError(f"{name}: header is not JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # a number too long to convert; deep nesting
        raise EvidenceFileError(f"{name}: header is not usable JSON "
                                f"({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        found = header.get("alg") if isinstance(header, dict) else header
        raise EvidenceFileError(f"{name}: unknown algorithm {repr(found)[:60]}")
    chunks = []
    offset = 6 + length
    view = memoryview(data)  # chunks are views into the file's bytes, not copies
    while offset + CHUNK_HEAD.size <= len(data):
        size, written_at = CHUNK_HEAD.unpack_from(data, offset)
        start = offset + CHUNK_HEAD.size
        if size < 16 or size > CHUNK_LIMIT + 16 or start + size > len(data):
            break
        chunks.append(EncryptedChunk(len(chunks), offset, written_at, view[start:start + size]))
        offset = start + size
    return ParsedFile(header, header_bytes, tuple(chunks), len(data) - offset, offset)


def unwrap_key(header: dict[str, object], agency_private: X25519PrivateKey, name: str) -> bytes:
    try:
        ephemeral = unb64(str(header["ephemeral"]))
        wrapped = unb64(str(header["wrapped_key"]))
    except (KeyError, ValueError) as exc:
        raise EvidenceFileError(f"{name}: header lacks a usable wrapped key ({exc})") from None
    agency_raw = raw_public(agency_private.public_key())
    if header.get("agency_key") != key_id(agency_raw):
        raise EvidenceFileError(f"{name}: encrypted to agency key {header.get('agency_key')}, "
                                f"not to the key given ({key_id(agency_raw)})")
    try:
        shared = agency_private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    except ValueError as exc:  # not 32 bytes, or a point that yields no shared key
        raise EvidenceFileError(f"{name}: the header's ephemeral key is not usable "
                                f"({exc})") from None
    try:
        return AESGCM(_kek(shared, ephemeral, agency_raw)).decrypt(b"\x00" * 12, wrapped,
                                                                   ephemeral + agency_raw)
    except InvalidTag:
        raise EvidenceFileError(f"{name}: the wrapped file key does not open") from None


def decrypt_chunks(parsed: ParsedFile, agency_private: X25519PrivateKey,
                   name: str) -> Iterator[tuple[EncryptedChunk, bytes | memoryview, bool]]:
    """Each chunk's plaintext and whether it is the final one; raises at the first bad chunk.

    The plaintext may be a view into a buffer reused for the next chunk: use or copy it
    before asking for the next."""
    aead = AESGCM(unwrap_key(parsed.header, agency_private, name))
    header_hash = hashlib.sha256(parsed.header_bytes).digest()
    into = hasattr(aead, "decrypt_into")
    buffer = bytearray(CHUNK_LIMIT) if into else None
    for chunk in parsed.chunks:
        aad = chunk_aad(header_hash, chunk.index, chunk.written_at_ms)
        for final in (False, True):
            try:
                if buffer is not None:
                    # Reused buffer: the caller must consume the plaintext before the next.
                    plain: bytes | memoryview = memoryview(buffer)[:len(chunk.ciphertext) - 16]
                    aead.decrypt_into(nonce(chunk.index, final), chunk.ciphertext, aad, plain)
                else:
                    plain = aead.decrypt(nonce(chunk.index, final), chunk.ciphertext, aad)
            except InvalidTag:
                continue
            yield chunk, plain, final
            break
        else:
            raise EvidenceFileError(f"{name}: chunk {chunk.index} at byte {chunk.offset} fails "
                                    "authentication (altered, reordered or from another file)")
