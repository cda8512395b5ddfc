"""Encrypted evidence files (R14.1): written in independently authenticated chunks.

Layout of a version 2 ``.bce`` file (every integer big-endian; docs/evidence-format.md
has it all):

    "BCE2"  u16 header length  header (canonical JSON)
    then chunks:  u32 ciphertext length  u64 written-at (UTC ms)  u8 flags
                  ciphertext (AES-256-CTR)  tag (HMAC-SHA256, 32 bytes)

The header carries an ephemeral X25519 public key; HKDF-SHA256 over the X25519 secret of
that key and the agency's public key gives the file's encryption key and MAC key, so only
the agency's private key opens the file — not the device that wrote it (it forgets the
ephemeral private key at once). Chunk *i* is AES-256-CTR with the counter block
i (8 bytes) ‖ 0 (8 bytes), then encrypt-then-MAC: the tag is HMAC-SHA256 over the file's
head (magic, header length, header), i as u64, the chunk's 13-byte head (length,
written-at, flags) and the ciphertext. A reordered, dropped, retimed or foreign chunk
fails, and the final flag on the last chunk shows where the file legitimately ends — so
truncation shows too. Every step is one the ``openssl`` command line does
(``pkeyutl -derive``, ``kdf HKDF``, ``dgst -mac HMAC``, ``enc -aes-256-ctr``):
docs/verify-by-hand.sh checks and decrypts evidence with nothing else. (Version 1, read
still, was AES-256-GCM, which ``openssl enc`` does not do.)

A chunk is cut at every flush (every half second of media), so a power cut loses at most
the unflushed tail; the plaintext SHA-256 and the stored-bytes SHA-256 are computed as the
bytes go by, never by reading the file back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from firmware_py.evidence.canonical import canonical

MAGIC = b"BCE2"
ALGORITHM = "X25519-HKDF-SHA256/AES-256-CTR+HMAC-SHA256"
HKDF_INFO = b"bodycam evidence file keys v2"
CHUNK_LIMIT = 1 << 20  # plaintext bytes per chunk at most
CHUNK_HEAD = struct.Struct(">IQB")  # ciphertext length, written-at UTC ms, flags
TAG_BYTES = 32
FINAL = 0x01  # the flags bit of the chunk that closes the file
SUFFIX = ".bce"

# Version 1 (AES-256-GCM, a wrapped file key): still read, never written.
MAGIC_V1 = b"BCE1"
ALGORITHM_V1 = "X25519-HKDF-SHA256/AES-256-GCM"
HKDF_INFO_V1 = b"bodycam evidence file key v1"
CHUNK_HEAD_V1 = struct.Struct(">IQ")
GCM_TAG = 16


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


def file_keys(shared: bytes, ephemeral: bytes, agency: bytes) -> tuple[bytes, bytes]:
    """Version 2: the file's AES-256 key and HMAC key, the two halves of one HKDF output."""
    okm = HKDF(SHA256(), 64, salt=ephemeral + agency, info=HKDF_INFO).derive(shared)
    return okm[:32], okm[32:]


def counter_block(index: int) -> bytes:
    """The AES-CTR initial counter of chunk ``index``: 2^64 blocks apart, never reused."""
    return index.to_bytes(8, "big") + bytes(8)


def file_head(header_bytes: bytes) -> bytes:
    """Magic, header length and header: the first bytes of the file, in every chunk's MAC."""
    return MAGIC + struct.pack(">H", len(header_bytes)) + header_bytes


def _kek_v1(shared: bytes, ephemeral: bytes, agency: bytes) -> bytes:
    return HKDF(SHA256(), 32, salt=ephemeral + agency, info=HKDF_INFO_V1).derive(shared)


def nonce_v1(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def chunk_aad_v1(header_hash: bytes, index: int, written_at_ms: int) -> bytes:
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
        ephemeral = X25519PrivateKey.generate()
        eph_raw = raw_public(ephemeral.public_key())
        agency_raw = raw_public(agency_public)
        self._enc_key, mac_key = file_keys(ephemeral.exchange(agency_public), eph_raw,
                                           agency_raw)
        del ephemeral  # the device keeps nothing that could open the file again
        header = canonical({"alg": ALGORITHM, "agency_key": key_id(agency_raw),
                            "ephemeral": b64(eph_raw), "chunk_limit": CHUNK_LIMIT, **context})
        head = file_head(header)
        # Every chunk's MAC starts with the file's head: hashed once, copied per chunk.
        self._mac = hmac.new(mac_key, head, hashlib.sha256)
        # The stored hash must see bytes in file order: one worker, fed in order.
        self._stored_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stored-sha256")
        # Two output buffers in turn: one is hashed (on the stored-hash thread) while the
        # next chunk is encrypted into the other; a fresh megabyte per chunk would cost
        # more in page faults than the encryption itself.
        self._out = [bytearray(CHUNK_LIMIT + 16), bytearray(CHUNK_LIMIT + 16)]
        self._pending: list[Future[None] | None] = [None, None]
        self._fh: BinaryIO = open(self.path, "xb")  # evidence is never overwritten
        self._plain = BackgroundHash()
        self._stored = hashlib.sha256()
        self.plaintext_bytes = 0
        self.bytes_written = 0
        self.chunks = 0
        self._buffer = bytearray()
        self._last_chunk_ms: int | None = None
        self._closed = False
        self._fh.write(head)
        self._stored.update(head)
        self.bytes_written += len(head)
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        if self._durable:
            os.fsync(self._fh.fileno())

    def _chunk(self, data: bytes | bytearray | memoryview, final: bool) -> None:
        written_at = self._utc_ms()
        head = CHUNK_HEAD.pack(len(data), written_at, FINAL if final else 0)
        slot = self.chunks % 2
        if self._pending[slot] is not None:
            self._pending[slot].result()  # its last chunk is hashed: the buffer is free
        encryptor = Cipher(algorithms.AES(self._enc_key),
                           modes.CTR(counter_block(self.chunks))).encryptor()
        size = encryptor.update_into(data, self._out[slot])
        encryptor.finalize()
        ciphertext = memoryview(self._out[slot])[:size]
        mac = self._mac.copy()
        mac.update(self.chunks.to_bytes(8, "big") + head)
        mac.update(ciphertext)  # encrypt-then-MAC: the tag covers what is stored
        tag = mac.digest()
        self._fh.write(head)
        self._fh.write(ciphertext)
        self._fh.write(tag)
        self._pending[slot] = self._stored_pool.submit(self._stored_update, head, ciphertext,
                                                       tag)
        self.bytes_written += len(head) + size + len(tag)
        self.chunks += 1
        self._last_chunk_ms = written_at

    def _stored_update(self, *parts: bytes | memoryview) -> None:
        for part in parts:
            self._stored.update(part)

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
    ciphertext: bytes | memoryview  # version 1: with the GCM tag; version 2: without
    head: bytes = b""  # version 2: the chunk's 13 stored head bytes (length, time, flags)
    tag: bytes | memoryview = b""  # version 2: the HMAC-SHA256 tag
    final: bool | None = None  # version 2: the stored final flag; version 1: unknown here


@dataclass(frozen=True)
class ParsedFile:
    header: dict[str, object]
    header_bytes: bytes
    chunks: tuple[EncryptedChunk, ...]
    torn_bytes: int  # bytes after the last complete chunk (a cut mid-write)
    end_of_chunks: int
    version: int = 2


def parse(data: bytes, name: str = "file") -> ParsedFile:
    """Split a stored file into header and chunks without decrypting (the device can do this)."""
    version, header, header_bytes = _read_header(data, name)
    length = len(header_bytes)
    chunks = []
    offset = 6 + length
    view = memoryview(data)  # chunks are views into the file's bytes, not copies
    if version == 2:
        while offset + CHUNK_HEAD.size <= len(data):
            size, written_at, flags = CHUNK_HEAD.unpack_from(data, offset)
            start = offset + CHUNK_HEAD.size
            if size > CHUNK_LIMIT or flags & ~FINAL or start + size + TAG_BYTES > len(data):
                break
            chunks.append(EncryptedChunk(len(chunks), offset, written_at,
                                         view[start:start + size],
                                         bytes(view[offset:start]),
                                         view[start + size:start + size + TAG_BYTES],
                                         bool(flags & FINAL)))
            offset = start + size + TAG_BYTES
    else:
        while offset + CHUNK_HEAD_V1.size <= len(data):
            size, written_at = CHUNK_HEAD_V1.unpack_from(data, offset)
            start = offset + CHUNK_HEAD_V1.size
            if size < GCM_TAG or size > CHUNK_LIMIT + GCM_TAG or start + size > len(data):
                break
            chunks.append(EncryptedChunk(len(chunks), offset, written_at,
                                         view[start:start + size]))
            offset = start + size
    return ParsedFile(header, header_bytes, tuple(chunks), len(data) - offset, offset, version)


def _read_header(data: bytes, name: str) -> tuple[int, dict[str, object], bytes]:
    """The format version, header and header bytes at the start of a stored file."""
    if len(data) < 6 or data[:4] not in (MAGIC, MAGIC_V1):
        raise EvidenceFileError(f"{name}: not a bodycam evidence file (bad magic)")
    version = 2 if data[:4] == MAGIC else 1
    (length,) = struct.unpack(">H", data[4:6])
    header_bytes = bytes(data[6:6 + length])
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
    expected = ALGORITHM if version == 2 else ALGORITHM_V1
    if not isinstance(header, dict) or header.get("alg") != expected:
        found = header.get("alg") if isinstance(header, dict) else header
        raise EvidenceFileError(f"{name}: unknown algorithm {repr(found)[:60]} for a "
                                f"version {version} file")
    return version, header, header_bytes


class ChunkCounter:
    """Counts a stored file's chunks from its bytes fed in order, as :func:`parse` counts
    them in the whole file: for a receiver that sees each byte once as it arrives and
    should not read the file back to learn its layout. Only the header and the chunk heads
    are looked at; the bytes between them are skipped."""

    def __init__(self, name: str = "file") -> None:
        self.name = name
        self._fed = 0  # bytes fed so far
        self._next = 0  # file offset of what is read next: the start, the header, a head
        self._reading = "start"  # "start" (magic, header length), "header", "heads"
        self._need = 6  # bytes of it
        self._carry = b""  # its first bytes, where they came in an earlier feed
        self._start = b""  # magic, header length and header, as stored
        self._head = CHUNK_HEAD
        self._heads = 0  # chunk heads read
        self._stopped = False  # at a head that parse stops at: no chunks after it

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        at = self._fed  # file offset of view[0]
        self._fed += len(view)
        while not self._stopped and self._next < self._fed:
            # What is wanted starts in this feed, or began in an earlier one (carried).
            first = max(self._next - at, 0)
            got = self._carry + bytes(view[first:first + self._need - len(self._carry)])
            if len(got) < self._need:
                self._carry = got
                return
            self._carry = b""
            self._take(got)

    def _take(self, got: bytes) -> None:
        self._next += len(got)
        if self._reading == "start":
            if got[:4] not in (MAGIC, MAGIC_V1):
                self._stopped = True  # not an evidence file: count() says why
                return
            self._start = got
            self._head = CHUNK_HEAD if got[:4] == MAGIC else CHUNK_HEAD_V1
            (length,) = struct.unpack(">H", got[4:6])
            self._reading, self._need = "header", length
            if length == 0:
                self._take(b"")
        elif self._reading == "header":
            self._start += got
            self._reading, self._need = "heads", self._head.size
        else:
            fields = self._head.unpack(got)
            size = fields[0]
            if self._head is CHUNK_HEAD:
                if size > CHUNK_LIMIT or fields[2] & ~FINAL:
                    self._stopped = True
                    return
                self._next += size + TAG_BYTES
            else:
                if size < GCM_TAG or size > CHUNK_LIMIT + GCM_TAG:
                    self._stopped = True
                    return
                self._next += size
            self._heads += 1

    def count(self) -> int:
        """How many whole chunks the bytes fed hold; EvidenceFileError where they are not
        an evidence file (the error :func:`parse` gives)."""
        # Raises, with parse's words, where the start never came whole or is not a header;
        # bytes after the header (a carried part of a head) are not looked at.
        _read_header(self._start + self._carry, self.name)
        torn = self._heads and self._next > self._fed  # the last chunk's end never came
        return self._heads - (1 if torn else 0)


def _shared_secret(header: dict[str, object], agency_private: X25519PrivateKey,
                   name: str) -> tuple[bytes, bytes, bytes]:
    """The X25519 secret of the file, with the raw ephemeral and agency public keys."""
    try:
        ephemeral = unb64(str(header["ephemeral"]))
    except (KeyError, ValueError) as exc:
        raise EvidenceFileError(f"{name}: header lacks a usable ephemeral key ({exc})") from None
    agency_raw = raw_public(agency_private.public_key())
    if header.get("agency_key") != key_id(agency_raw):
        raise EvidenceFileError(f"{name}: encrypted to agency key {header.get('agency_key')}, "
                                f"not to the key given ({key_id(agency_raw)})")
    try:
        shared = agency_private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    except ValueError as exc:  # not 32 bytes, or a point that yields no shared key
        raise EvidenceFileError(f"{name}: the header's ephemeral key is not usable "
                                f"({exc})") from None
    return shared, ephemeral, agency_raw


def unwrap_key_v1(header: dict[str, object], agency_private: X25519PrivateKey,
                  name: str) -> bytes:
    """Version 1: the file key, unwrapped (AES-256-GCM) with the key HKDF derives."""
    shared, ephemeral, agency_raw = _shared_secret(header, agency_private, name)
    try:
        wrapped = unb64(str(header["wrapped_key"]))
    except (KeyError, ValueError) as exc:
        raise EvidenceFileError(f"{name}: header lacks a usable wrapped key ({exc})") from None
    try:
        return AESGCM(_kek_v1(shared, ephemeral, agency_raw)).decrypt(
            b"\x00" * 12, wrapped, ephemeral + agency_raw)
    except InvalidTag:
        raise EvidenceFileError(f"{name}: the wrapped file key does not open") from None


def decrypt_chunks(parsed: ParsedFile, agency_private: X25519PrivateKey,
                   name: str) -> Iterator[tuple[EncryptedChunk, bytes | memoryview, bool]]:
    """Each chunk's plaintext and whether it is the final one; raises at the first bad chunk.

    The plaintext may be a view into a buffer reused for the next chunk: use or copy it
    before asking for the next."""
    if parsed.version == 1:
        yield from _decrypt_chunks_v1(parsed, agency_private, name)
        return
    enc_key, mac_key = file_keys(*_shared_secret(parsed.header, agency_private, name))
    mac = hmac.new(mac_key, file_head(parsed.header_bytes), hashlib.sha256)
    buffer = bytearray(CHUNK_LIMIT + 16)  # reused: the caller consumes each plaintext first
    for chunk in parsed.chunks:
        check = mac.copy()
        check.update(chunk.index.to_bytes(8, "big") + chunk.head)
        check.update(chunk.ciphertext)
        if not hmac.compare_digest(check.digest(), bytes(chunk.tag)):
            raise EvidenceFileError(f"{name}: chunk {chunk.index} at byte {chunk.offset} fails "
                                    "authentication (altered, reordered or from another file)")
        decryptor = Cipher(algorithms.AES(enc_key),
                           modes.CTR(counter_block(chunk.index))).decryptor()
        size = decryptor.update_into(chunk.ciphertext, buffer)
        decryptor.finalize()
        yield chunk, memoryview(buffer)[:size], bool(chunk.final)


def _decrypt_chunks_v1(parsed: ParsedFile, agency_private: X25519PrivateKey,
                       name: str) -> Iterator[tuple[EncryptedChunk, bytes | memoryview, bool]]:
    aead = AESGCM(unwrap_key_v1(parsed.header, agency_private, name))
    header_hash = hashlib.sha256(parsed.header_bytes).digest()
    for chunk in parsed.chunks:
        aad = chunk_aad_v1(header_hash, chunk.index, chunk.written_at_ms)
        for final in (False, True):
            try:
                plain = aead.decrypt(nonce_v1(chunk.index, final), chunk.ciphertext, aad)
            except InvalidTag:
                continue
            yield chunk, plain, final
            break
        else:
            raise EvidenceFileError(f"{name}: chunk {chunk.index} at byte {chunk.offset} fails "
                                    "authentication (altered, reordered or from another file)")
