"""The device's edge of dock sync: offer what is sealed, send it, delete only on a receipt.

On docking the device offers every file that is finished — each sealed item (signature and
manifest first, then its files) and the records beside them — runs the protocol's
``Uploader`` over MQTT, and for each receipt checks the dock's signature, that the receipt
describes the file it offered, and that the file on disk is still the one it offered (the
same inode, size and modification time as when it was offered, or else the file hashed
again): the dock checked the bytes it holds against the offered hash, so an unchanged file
is that file. Only then is the file deleted, and the deletion written into the audit log
(R13.2). Anything still being
written — an open segment, the log of an open activity — is not offered.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature

from device.clock import Clock, TimeSource
from firmware_py.evidence.audit import AuditLog
from firmware_py.evidence.seal import MANIFEST, SIGNATURE
from firmware_py.evidence.chainhead import FOLDER as CHAIN_FOLDER
from firmware_py.evidence.chainhead import SIGNATURE as CHAIN_HEAD_SIG
from firmware_py.evidence.chainhead import SUFFIX as CHAIN_HEAD
from firmware_py.evidence.store import READ_ONLY, sha256_file, write_atomic
from sync import protocol as p
from sync.credentials import dock_public
from sync.mqtt import client as mqtt_client
from sync.mqtt import close as mqtt_close
from sync.pacing import WindowSizer

log = logging.getLogger(__name__)

SEAL_KINDS = ("manifest", "signature")
AUDIT_FOLDER = "audit"  # under evidence/: audit log snapshots waiting for the dock
AUDIT_STATE = ".audit-sent.json"  # beside the audit log: how much of it the snapshots cover
RETRY_AFTER_S = 3.0
WINDOW = 256  # chunks in flight at most: with the window in bytes measured, this only
#               caps how many small files' chunks may be out at once


@dataclass
class SessionResult:
    offered: int = 0
    receipted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    refused_receipts: list[tuple[str, str]] = field(default_factory=list)
    clock_offset_s: float | None = None
    round_trip_s: float | None = None
    done: bool = False
    undocked: bool = False  # the session ended because the device left the dock
    bytes_sent: int = 0
    # The window in bytes at the end, and the link's smallest round trip behind it
    # (sync/pacing.py); None where the window was fixed or nothing was confirmed.
    window_bytes: int | None = None
    base_round_trip_s: float | None = None

    def summary(self) -> dict[str, Any]:
        """The session's outcome in counts, as a timeline or a status shows it."""
        return {"offered": self.offered, "receipted": len(self.receipted),
                "deleted": len(self.deleted), "failed": len(self.failed),
                "bytes": self.bytes_sent,
                "clock_offset_s": None if self.clock_offset_s is None
                else round(self.clock_offset_s, 3)}



Identity = tuple[int, int, int, int]  # device, inode, size, mtime: a file as it was seen


def _identity_of(path: Path) -> Identity | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def snapshot_audit(audit_log: Path, evidence: Path) -> Path | None:
    """Hand the audit log (``audit_log``, the device's audit.jsonl) to the dock too: copy the
    lines no earlier docking took into ``evidence/audit/audit-<first seq>-<last seq>.jsonl``, offered like evidence and deleted
    on its receipt. The log itself stays whole on the device; at the dock the snapshots,
    in order, are the log up to the last docking — its hash chain runs on across them.

    Only whole lines are taken (a line being written now waits for the next docking).
    ``AUDIT_STATE`` beside the log remembers how far the snapshots reach, written after the
    snapshot is durable: a cut between the two repeats lines at the dock, never loses them."""
    log_path = Path(audit_log)
    if not log_path.exists():
        return None
    state_path = log_path.parent / AUDIT_STATE
    try:
        taken = int(json.loads(state_path.read_text())["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        taken = 0
    with open(log_path, "rb") as fh:
        fh.seek(taken)
        data = fh.read()
    data = data[: data.rfind(b"\n") + 1]
    if not data:
        return None
    lines = data.splitlines()
    try:
        first, last = json.loads(lines[0])["seq"], json.loads(lines[-1])["seq"]
    except (ValueError, KeyError, TypeError):
        log.warning("audit log at byte %d is not readable entries; not sent", taken)
        return None
    folder = Path(evidence) / AUDIT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"audit-{first:06d}-{last:06d}.jsonl"
    write_atomic(path, data, mode=READ_ONLY)
    write_atomic(state_path, json.dumps({"bytes": taken + len(data), "through_seq": last}).encode())
    return path


def offers(evidence: Path) -> list[tuple[p.FileOffer, Path]]:
    """Finished evidence in sending order: per sealed item its signature, its manifest, its
    files; then records of ended activities and torn remains no seal covers."""
    out: list[tuple[p.FileOffer, Path]] = []
    covered: set[Path] = set()

    def add(path: Path, manifest: str | None, kind: str,
            record: dict[str, Any] | None = None) -> None:
        if path in covered:
            return
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        covered.add(path)
        # A sealed file's hash is in its manifest: hashing it again here would read every
        # byte of the evidence one more time per docking (the dock checks the bytes against
        # it, and the device checks before it deletes that the file has not changed since
        # it was offered). A file whose size differs
        # from its record is hashed as it is, and the dock's seal check says the rest.
        sealed = record.get("stored_sha256") if record else None
        digest = (sealed if isinstance(sealed, str) and record.get("stored_bytes") == size
                  and len(sealed) == 64 and not sealed.strip("0123456789abcdef")
                  else sha256_file(path))
        out.append((p.FileOffer.of(name=path.name, activity=path.parent.name, size=size,
                                   sha256=digest, manifest=manifest, kind=kind), path))

    for folder in sorted(d for d in Path(evidence).iterdir() if d.is_dir()):
        for manifest in sorted(folder.glob(f"*{MANIFEST}")):
            body = json.loads(manifest.read_bytes())
            stem = manifest.name[: -len(MANIFEST)]
            add(folder / (stem + SIGNATURE), manifest.name, "signature")
            add(manifest, manifest.name, "manifest")
            for record in body.get("files", []):
                add(folder / record["name"], manifest.name, str(record.get("role", "file")),
                    record)
        if (folder / "activity.manifest.json").exists():  # the activity has ended
            add(folder / "activity.jsonl", None, "activity_log")
        for torn in sorted(folder.glob("*.torn")):
            add(torn, None, "torn")
        if folder.name == AUDIT_FOLDER:
            for snapshot in sorted(folder.glob("audit-*.jsonl")):
                add(snapshot, None, "audit_log")
        if folder.name == CHAIN_FOLDER:  # signed chain heads: the signature first
            for head in sorted(folder.glob(f"*{CHAIN_HEAD}")):
                add(head.with_name(head.name[: -len(CHAIN_HEAD)] + CHAIN_HEAD_SIG), None,
                    "chain_head_signature")
                add(head, None, "chain_head")
    return out


class DeviceSync:
    """One docking session: connect, offer, send, check receipts, delete.

    ``device_root`` holds what enrolment left (the dock's receipt key); ``evidence`` is the
    configured evidence directory, ``audit_log`` the device's audit.jsonl (snapshots of it
    go to the dock too), and ``correct_above_s`` the policy's
    ``selfcheck.clock_correct_above_s``: a dock clock further off than that corrects the
    device's clock."""

    def __init__(self, device_root: Path, device: str, host: str, port: int, *,
                 evidence: Path, audit_log: Path, correct_above_s: float,
                 tls: tuple[Path, Path, Path] | None = None, audit: AuditLog | None = None,
                 firmware: str = "bodycam", battery_percent: int | None = None,
                 charging: bool = False,
                 clock: Clock | None = None,
                 chunk_size: int = p.DEFAULT_CHUNK_BYTES, window: int = WINDOW,
                 window_bytes: int | None = None) -> None:
        self.root = Path(device_root)
        self.evidence = Path(evidence)
        self.device = device
        self.audit = audit
        self._clock = clock
        self._correct_above_s = correct_above_s
        self._dock_key = dock_public(self.root)
        snapshot_audit(Path(audit_log), self.evidence)
        self._files: dict[str, tuple[p.FileOffer, Path]] = {}
        self._left: Counter[tuple[str, str | None]] = Counter()
        self._take_offers()
        self._reading: tuple[str, BinaryIO] | None = None  # the file chunks are read from
        # Seals receipted while files they cover are still here: deleted after those files.
        self._held: dict[str, list[tuple[p.FileOffer, Path, p.Receipt]]] = {}
        self._chunk_size, self._window, self._window_bytes = chunk_size, window, window_bytes
        # Without a fixed ``window_bytes``, the window follows the link (sync/pacing.py).
        self._sizer = WindowSizer() if window_bytes is None else None
        self.uploader = p.Uploader(device, [o for o, _ in self._files.values()], self._read,
                                   chunk_size=chunk_size, window=window,
                                   window_bytes=self._window_bytes_now(), firmware=firmware,
                                   battery_percent=battery_percent, charging=charging)
        self._charging = charging
        self.result = SessionResult(offered=len(self._files))
        self._finished = threading.Event()
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._started = False
        self._last_heard = time.monotonic()
        # What the broker brought, for the sender thread: paho's network thread only reads
        # and queues, so reading evidence files for the next chunks never holds it up.
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        ca, cert, key = tls if tls else (None, None, None)
        self.client = mqtt_client(host, port, device, ca=ca, cert=cert, key=key)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    def _take_offers(self) -> None:
        """What is waiting now, each file as it was seen when offered, and per seal how many
        of its files are still here."""
        self._files = {offer.file_id: (offer, path) for offer, path in offers(self.evidence)}
        self._seen: dict[str, Identity | None] = {
            file_id: _identity_of(path) for file_id, (_, path) in self._files.items()}
        self._left = Counter((o.activity, o.manifest) for o, _ in self._files.values()
                             if o.manifest and o.kind not in SEAL_KINDS)

    def _read(self, offer: p.FileOffer, offset: int, size: int) -> bytes:
        # The file stays open while its chunks go out (one open per file, not per chunk).
        if self._reading is None or self._reading[0] != offer.file_id:
            self._close_reading()
            self._reading = (offer.file_id, open(self._files[offer.file_id][1], "rb"))
        fh = self._reading[1]
        fh.seek(offset)
        data = fh.read(size)
        self.result.bytes_sent += len(data)
        return data

    def _close_reading(self) -> None:
        if self._reading is not None:
            self._reading[1].close()
            self._reading = None

    def _on_disk_is_offered(self, offer: p.FileOffer, path: Path) -> bool:
        """R13.2's last check: the file about to be deleted is the one the dock holds.

        The receipt says the dock holds bytes whose SHA-256 is the offer's (it checked the
        whole file against it; for sealed files that hash is the manifest's). A file whose
        inode, size and modification time are the ones seen when it was offered has not
        changed since, so the device need not hash it again — hashing every byte it sends
        was a third of a Pi's CPU during a docking. A file that changed is read and hashed:
        only if its bytes are still the offered ones may it go."""
        seen = self._seen.get(offer.file_id)
        if seen is not None and seen == _identity_of(path):
            return True
        return sha256_file(path) == offer.sha256

    def run(self, timeout: float = 120.0, rounds: int = 3) -> SessionResult:
        """Send everything; a file that failed in one round (a link cut at the wrong moment,
        a seal whose signature had not arrived) is offered again in the next."""
        if not self._files:
            self.result.done = True
            return self.result
        self._worker = threading.Thread(target=self._work, name=f"sync-{self.device}",
                                        daemon=True)
        self._worker.start()
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        try:
            for round_number in range(rounds):
                self._wait(deadline)
                if (not self.result.failed or round_number == rounds - 1
                        or time.monotonic() >= deadline or self._cancelled.is_set()):
                    break
                with self._lock:
                    log.info("%s: %d files failed, offering them again", self.device,
                             len(self.result.failed))
                    self._take_offers()
                    self._held = {}  # held seals are offered again, and receipted again
                    self.uploader = p.Uploader(self.device, [o for o, _ in self._files.values()],
                                               self._read, chunk_size=self._chunk_size,
                                               window=self._window,
                                               window_bytes=self._window_bytes_now(),
                                               charging=self._charging)
                    if self._sizer is not None:
                        self._sizer.forget()  # a new uploader counts from 0 again
                    self.result.failed = []
                    self.result.done = False
                    self._finished.clear()
                    self._last_heard = time.monotonic()
                    self._carry_out(self.uploader.start())
                    self._pace()
        finally:
            mqtt_close(self.client)
            self._inbox.put(None)
            self._worker.join(10)
            with self._lock:
                self._close_reading()
        return self.result

    def undock(self) -> None:
        """The device left the dock: the session ends now, whatever is in flight. What the
        dock confirmed stays confirmed; the rest goes at the next docking."""
        self.result.undocked = True
        self._cancelled.set()
        self._finished.set()

    def _wait(self, deadline: float) -> None:
        while (not self._finished.wait(0.5) and time.monotonic() < deadline
               and not self._cancelled.is_set()):
            # Silence means something was lost (a broker restart drops messages in
            # flight, or the dock was not subscribed yet): ask the protocol to go
            # back to what the dock last confirmed.
            if self._started and time.monotonic() - self._last_heard > RETRY_AFTER_S:
                with self._lock:
                    self._last_heard = time.monotonic()
                    self._carry_out(self.uploader.retry())
                    self._pace()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("%s refused by the broker: %s", self.device, reason)
            return
        self._subscribed.clear()
        client.subscribe(p.device_subscription(self.device), qos=p.QOS)
        # The hello waits for the subscription, or the dock's answer could be missed.
        threading.Thread(target=self._hello, daemon=True).start()

    def _hello(self) -> None:
        if not self._subscribed.wait(10):
            return
        with self._lock:
            self._started = True
            self._last_heard = time.monotonic()
            outputs = (self.uploader.start() if self.uploader.state is p.UploaderState.IDLE
                       else self.uploader.retry())
            outputs += self.uploader.request_time(self._utc())
            self._carry_out(outputs)
            self._pace()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self._cancelled.is_set():
            return  # undocked: the link is gone, whatever the socket still holds
        self._last_heard = time.monotonic()
        if self._worker is None:  # not running (driven by hand, as the tests do): now
            with self._lock:
                self._handle(message.topic, message.payload)
            return
        self._inbox.put((message.topic, message.payload))

    def _handle(self, topic: str, payload: bytes) -> None:
        try:
            self._carry_out(self.uploader.receive(topic, payload))
        except Exception:
            log.exception("%s: handling %s failed", self.device, topic)
        self._pace()

    def _window_bytes_now(self) -> int | None:
        return self._sizer.window if self._sizer is not None else self._window_bytes

    def _pace(self) -> None:
        """Size the window from what the dock confirmed and when (sync/pacing.py)."""
        if self._sizer is None:
            return
        now, up = time.monotonic(), self.uploader
        if up.confirmed_mark:
            up.window_bytes = self._sizer.confirmed(up.confirmed_mark, up.bytes_confirmed, now)
            self.result.window_bytes = up.window_bytes
            self.result.base_round_trip_s = self._sizer.base_round_trip
        self._sizer.published(up.bytes_published, now)

    def _work(self) -> None:
        """The sender thread: the protocol, the reads of evidence files, the publishes and
        the receipts' checks and deletions, for every message queued — several at a time,
        under one hold of the lock."""
        while True:
            item = self._inbox.get()
            batch = [item]
            while item is not None and len(batch) < 256:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            with self._lock:
                for entry in batch:
                    if entry is None or self._cancelled.is_set():
                        continue
                    self._handle(*entry)
            if batch[-1] is None or None in batch:
                return

    def _carry_out(self, outputs: list[Any]) -> None:
        for out in outputs:
            match out:
                case p.Publish(topic, payload, qos):
                    self.client.publish(topic, payload, qos=qos)
                case p.ReceiptReceived(file_id, receipt):
                    self._receipt(file_id, receipt)
                case p.TimeReceived(response):
                    self._set_clock(response)
                case p.FileFailed(file_id, reason):
                    self.result.failed.append((file_id, reason))
                case p.Done():
                    self.result.done = True
                    self._finished.set()
                case p.InvalidMessage(topic, reason):
                    log.warning("%s: %s", topic, reason)

    def _utc(self) -> float:
        return self._clock.now().utc if self._clock is not None else time.time()

    def _set_clock(self, response: p.TimeResponse) -> None:
        """R7.4 at the dock: measure against the dock's clock, log the offset, correct —
        only from an answer the dock signed (its key from enrolment)."""
        t4 = self._utc()
        try:
            self._dock_key.verify(response.signature, response.signed_bytes(self.device))
        except InvalidSignature:
            log.warning("%s: a time answer not signed by the dock: ignored", self.device)
            self._log("dock_time_refused", {"why": "not signed by the dock's key"})
            return
        offset, round_trip = p.clock_offset(response.t1, response.t2, response.t3, t4)
        self.result.clock_offset_s, self.result.round_trip_s = offset, round_trip
        facts = {"source": "dock", "offset_before_s": round(-offset, 3),
                 "round_trip_s": round(round_trip, 4)}
        if self._clock is not None and abs(offset) > self._correct_above_s:
            self._clock.correct(t4 + offset, self._clock.monotonic(), TimeSource.DOCK)
            self._log("clock_corrected", facts)
        else:
            self._log("dock_clock_checked", facts)

    def _receipt(self, file_id: str, receipt: p.Receipt) -> None:
        offer, path = self._files[file_id]
        if not path.exists():
            return  # deleted already on an earlier copy of this receipt
        try:
            self._dock_key.verify(receipt.signature, receipt.signed_bytes())
        except InvalidSignature:
            self.result.refused_receipts.append((offer.name, "signature does not match the dock's key"))
            self._log("receipt_refused", {"file": offer.name, "why": "bad signature"})
            return
        problem = receipt.mismatch(offer, self.device)
        if problem is None and not self._on_disk_is_offered(offer, path):
            problem = "the file on the device changed since it was offered"
        if problem is not None:
            self.result.refused_receipts.append((offer.name, problem))
            self._log("receipt_refused", {"file": offer.name, "why": problem})
            return
        self.result.receipted.append(offer.name)
        seal = offer.kind in SEAL_KINDS
        if seal and self._sealed_files_left(offer):
            # A seal leaves the device after the files it covers, never before: the device
            # finds what it still has to send through its manifests, so a file whose seal
            # were gone would never be offered again.
            self._held.setdefault(offer.manifest or "", []).append((offer, path, receipt))
            return
        self._delete(offer, path, receipt)
        if not seal and offer.manifest:
            self._left[(offer.activity, offer.manifest)] -= 1
            if not self._sealed_files_left(offer):
                for held_offer, held_path, held_receipt in self._held.pop(offer.manifest, []):
                    self._delete(held_offer, held_path, held_receipt)

    def _sealed_files_left(self, offer: p.FileOffer) -> bool:
        """Whether files sealed by ``offer``'s manifest are still on the device (counted,
        not searched: a receipt costs the same with ten files waiting or fifty thousand)."""
        return self._left[(offer.activity, offer.manifest)] > 0

    def _delete(self, offer: p.FileOffer, path: Path, receipt: p.Receipt) -> None:
        os.chmod(path, 0o644)
        path.unlink()
        self.result.deleted.append(offer.name)
        self._log("evidence_deleted_after_receipt",
                  {"file": offer.name, "activity": offer.activity, "sha256": offer.sha256,
                   "dock": receipt.body.get("dock"), "archive_path": receipt.body.get("archive_path")})
        folder = path.parent
        if folder != self.evidence:
            try:
                folder.rmdir()  # the last file of the activity has gone (else: not empty)
            except OSError:
                pass

    def _log(self, kind: str, fields: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(kind, fields)
