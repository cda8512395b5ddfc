"""A dock under attack, for the tests of issue 14: the real Mosquitto with the shipped mutual
TLS and ACL, ``DockService`` on it, and two enrolled devices — ``ATTACKER`` (a stolen
recorder: its certificate, its signing key, root on it) and ``WITNESS`` (a well-behaved
recorder that keeps docking while the attack runs and after it).

``Rig.archived()`` is what the dock has receipted — archive path → SHA-256 of the bytes on
disk — so a test compares it before and after an attack: byte for byte unchanged.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from dock.broker import MosquittoBroker
from dock.enrollment import dock_client, enroll_device
from dock.service import DockService
from simulator.harness.backlog import make_backlog
from sync import protocol as p
from sync.credentials import device_sync_files
from sync import device_sync
from sync.device_sync import DeviceSync, SessionResult
from sync.mqtt import client as mqtt_client
from sync.mqtt import close as mqtt_close

ATTACKER, WITNESS = "BC-ATK", "BC-OK"
UNIT = "Baofeng County HRSS Labour Inspection Brigade"


_FORGED: dict[Path, list[tuple[p.FileOffer, Path]]] = {}  # evidence folder → its offers
_real_offers = device_sync.offers


def _offers(evidence: Path) -> list[tuple[p.FileOffer, Path]]:
    forged = _FORGED.get(Path(evidence))
    return list(forged) if forged is not None else _real_offers(evidence)


device_sync.offers = _offers  # what DeviceSync offers from a forged folder: anything at all


class ForgedSync(DeviceSync):
    """A docking session that offers exactly ``files`` ((offer, path) pairs) — what an
    attacker with root on its recorder makes its own device sync send — from the evidence
    folder it is given (every other folder is offered as the device software would)."""

    def __init__(self, files: list[tuple[p.FileOffer, Path]], *args: Any, **kwargs: Any) -> None:
        _FORGED[Path(kwargs["evidence"])] = files
        super().__init__(*args, **kwargs)


class Rig:
    def __init__(self, tmp_path: Path, broker: MosquittoBroker, **dock_options: Any) -> None:
        self.tmp = tmp_path
        self.broker = broker
        self.dock_dir, self.archive_dir = tmp_path / "dock", tmp_path / "archive"
        self.roots = {d: tmp_path / d for d in (ATTACKER, WITNESS)}
        for device, root in self.roots.items():
            enroll_device(root, self.dock_dir, device, UNIT)
        cert = dock_client(self.dock_dir)
        self.dock = DockService(self.dock_dir, self.archive_dir, broker.host, broker.port,
                                tls=(broker.ca_file, cert.cert, cert.key), **dock_options)
        self.dock.start()
        self.receipts: dict[str, list[str]] = {ATTACKER: [], WITNESS: []}
        self.conf = tmp_path / "dock.toml"  # for the custodians' commands
        self.conf.write_text(f'[dock]\nid = "{self.dock.dock_id}"\ndir = "{self.dock_dir}"\n'
                             f'archive = "{self.archive_dir}"\n')

    def close(self) -> None:
        self.dock.stop()

    # --- devices ------------------------------------------------------------------------------

    def seal(self, device: str, items: int = 1, body_bytes: int = 3000) -> int:
        """New sealed evidence on ``device``: ``items`` segments (media, manifest, signature)."""
        return make_backlog(self.roots[device], device, items=items, body_bytes=body_bytes)

    def tls(self, device: str) -> tuple[Path, Path, Path]:
        files = device_sync_files(self.roots[device], device)
        return files.ca, files.cert, files.key

    def sync(self, device: str, timeout: float = 30, **options: Any) -> SessionResult:
        """One docking of ``device`` with what it has sealed; its receipts are kept."""
        root = self.roots[device]
        result = DeviceSync(root, device, self.broker.host, self.broker.port,
                            evidence=root / "evidence", audit_log=root / "audit.jsonl",
                            correct_above_s=0.5, tls=self.tls(device), window=8,
                            **options).run(timeout=timeout, rounds=1)
        self.receipts[device] += result.receipted
        return result

    def witness_docks(self, items: int = 1) -> SessionResult:
        """The well-behaved device seals new evidence and docks: every file receipted."""
        made = self.seal(WITNESS, items)
        result = self.sync(WITNESS)
        assert result.done and not result.failed and len(result.receipted) == made, (
            result.failed, result.receipted, self.dock.invalid[-5:])
        return result

    def forged_sync(self, files: list[tuple[p.FileOffer, Path]], device: str = ATTACKER,
                    timeout: float = 20) -> SessionResult:
        root = self.roots[device]
        return ForgedSync(files, root, device, self.broker.host, self.broker.port,
                          evidence=self.tmp / "forged-evidence", audit_log=self.tmp / "none",
                          correct_above_s=0.5, tls=self.tls(device),
                          window=8).run(timeout=timeout, rounds=1)

    def raw(self, device: str = ATTACKER, client_id: str | None = None) -> Any:
        """A connected paho client holding ``device``'s certificate (and asking for
        ``client_id``): the attacker's own MQTT, free of the device software's rules."""
        connected = threading.Event()
        c = mqtt_client(self.broker.host, self.broker.port, client_id or device,
                        ca=self.tls(device)[0], cert=self.tls(device)[1], key=self.tls(device)[2])
        c.on_connect = lambda client, u, f, reason, props: connected.set()
        c.loop_start()
        assert connected.wait(10), f"{device} could not connect"
        return c

    def connect_once(self, device: str, client_id: str | None = None) -> bool:
        """Connect with ``device``'s certificate asking for ``client_id``, wait for the
        broker's answer, disconnect: one turn of a reconnect loop (no network thread).
        True when the broker accepted the connection."""
        return connect_once(self.broker.host, self.broker.port, self.tls(device),
                            client_id or device)

    def send(self, client: Any, messages: list[tuple[str, bytes]]) -> None:
        """Publish every message at QoS 1 and wait until the broker has them all."""
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)

    def quiet(self, seconds: float = 0.3) -> None:
        """Let what was published reach the dock's queue, then wait until it is handled."""
        time.sleep(seconds)  # the broker's delivery to the dock (real time: a real broker)
        self.dock.settle()

    # --- the archive --------------------------------------------------------------------------

    def archived(self) -> dict[str, str]:
        """Every receipted file: archive path → SHA-256 of the bytes now on disk, checked
        against the SHA-256 its receipt gave."""
        db = sqlite3.connect(self.archive_dir / "index.sqlite")
        try:
            rows = db.execute("SELECT archive_path, sha256 FROM files WHERE state='archived'"
                              ).fetchall()
        finally:
            db.close()
        out = {}
        for path, receipted in rows:
            held = hashlib.sha256((self.archive_dir / path).read_bytes()).hexdigest()
            assert held == receipted, f"{path}: holds other bytes than were receipted"
            out[path] = held
        return out

    def assert_serving(self) -> None:
        assert self.dock.failure() is None, self.dock.failure()


def connect_once(host: str, port: int, tls: tuple[Path, Path, Path], client_id: str) -> bool:
    """One connection with these TLS files, asking for ``client_id``: True when the broker
    answered with a successful CONNACK (then it is closed again)."""
    connected = threading.Event()
    c = mqtt_client(host, port, client_id, ca=tls[0], cert=tls[1], key=tls[2])
    c.on_connect = lambda client, u, f, reason, props: (
        connected.set() if not reason.is_failure else None)
    try:
        c.reconnect()
        deadline = time.monotonic() + 5
        while not connected.is_set() and time.monotonic() < deadline:
            if c.loop(0.05) != 0:  # the broker closed the connection
                break
    except OSError:  # ssl.SSLError included: the handshake was refused
        pass
    if connected.is_set():
        c.disconnect()
    else:
        c.socket() and c.socket().close()  # type: ignore[union-attr]
    return connected.is_set()


def close(client: Any) -> None:
    mqtt_close(client)
