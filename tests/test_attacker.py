"""The dock treats every device as a possible attacker (issue 14).

Each test runs against the real Mosquitto with the shipped mutual TLS and ACL (the
``broker`` fixture) and ``DockService`` on it; the attacker is a second enrolled device —
a stolen recorder, its certificate and signing key in the attacker's hands — and a third
party, the well-behaved ``WITNESS`` device, docks and gets its receipts while the attack
runs and after it. Every test ends with the archive byte for byte what was receipted.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from attack_rig import ATTACKER, WITNESS, Rig, close
from dock import conflicts
from firmware_py.evidence.canonical import canonical
from firmware_py.evidence.keys import device_key
from firmware_py.evidence.seal import MANIFEST, SIGNATURE
from sync import protocol as p


@pytest.fixture
def rig(tmp_path, broker):
    made = Rig(tmp_path, broker)
    try:
        yield made
    finally:
        made.close()


def in_background(work) -> tuple[threading.Thread, list]:
    """Run ``work()`` in a thread; its result (or exception) lands in the list."""
    out: list = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # shown by the test that joins it
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def joined(thread: threading.Thread, out: list):
    thread.join(60)
    assert out and not isinstance(out[0], BaseException), out
    return out[0]


def forged_file(rig: Rig, activity: str, name: str, data: bytes, kind: str,
                manifest: str | None) -> tuple[p.FileOffer, Path]:
    path = rig.tmp / "forged-evidence" / activity / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    offer = p.FileOffer.of(name=name, activity=activity, size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), manifest=manifest, kind=kind)
    return offer, path


def verify_archive(rig: Rig, device: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bodycam", "verify",
                           str(rig.archive_dir / device), "--trust", str(rig.dock_dir)],
                          capture_output=True, text=True)


# --- 1. archived evidence is never overwritten ---------------------------------------------------

@pytest.mark.req("R18.1", "R13.2")
def test_archived_evidence_is_never_replaced_and_every_attempt_is_kept_aside(rig):
    rig.seal(ATTACKER, items=2)
    first = rig.sync(ATTACKER)
    assert first.done and not first.failed
    # An unsealed file of the kinds no seal covers on arrival: the activity log, an audit
    # snapshot — the attacker's own, receipted as unverified.
    folder = rig.archive_dir / ATTACKER
    activity = sorted(d.name for d in folder.iterdir() if d.is_dir())[0]
    unsealed = [forged_file(rig, activity, "activity.jsonl", b'{"seq":1}\n', "activity_log", None),
                forged_file(rig, "audit", "audit-000001-000004.jsonl", b'{"seq":4}\n', "audit_log",
                            None)]
    assert len(rig.forged_sync(unsealed).receipted) == 2
    rig.witness_docks()
    before = rig.archived()
    assert verify_archive(rig, ATTACKER).returncode == 0

    # The stolen device's attack: every archived name again with other bytes, and — with
    # the device's own signing key — a second, validly signed manifest for a chain position
    # that is taken, sealing replacement footage.
    names = sorted((rig.archive_dir / path) for path in before if path.startswith(ATTACKER))
    attack = []
    for path in names:
        kind = ("signature" if path.name.endswith(SIGNATURE) else
                "manifest" if path.name.endswith(MANIFEST) else "other")
        data = path.read_bytes()
        other = (hashlib.sha512(data).digest() if kind == "signature"
                 else data.replace(b"{", b"{ ", 1) if kind == "manifest" else data + b"forged")
        attack.append(forged_file(rig, path.parent.name, path.name, other, kind,
                                  path.name if kind in ("signature", "manifest") else None))
    original = next(path for path in names if path.name.endswith(MANIFEST))
    body = json.loads(original.read_bytes())
    replacement = b"replacement footage" * 50
    body["files"][0].update(stored_sha256=hashlib.sha256(replacement).hexdigest(),
                            stored_bytes=len(replacement), name="fake_000001.ts")
    manifest = canonical(body)
    signature = device_key(rig.roots[ATTACKER]).sign(manifest)  # the stolen key signs it
    fork = "fake_000001" + MANIFEST
    attack += [forged_file(rig, original.parent.name, "fake_000001" + SIGNATURE, signature,
                           "signature", fork),
               forged_file(rig, original.parent.name, fork, manifest, "manifest", fork)]

    # The witness docks while the attack runs.
    rig.seal(WITNESS)
    thread, out = in_background(lambda: rig.sync(WITNESS))
    refused = rig.forged_sync(attack)
    during = joined(thread, out)
    assert during.done and not during.failed and len(during.receipted) == 3

    # Nothing of the attack was receipted but the signature whose manifest never arrived;
    # each attempt on an archived name was refused with its reason.
    assert refused.receipted == ["fake_000001" + SIGNATURE]
    reasons = dict(refused.failed)
    assert len(reasons) == len(attack) - 1
    assert sum("write-once" in r for r in reasons.values()) == len(names)
    assert any("sealed already" in r for r in reasons.values())
    after = rig.archived()
    assert {k: after[k] for k in before} == before, "receipted evidence changed"
    # Kept aside, each with what it collided with, and bodycam verify shows them.
    kept = conflicts.conflicts(rig.archive_dir, ATTACKER)
    assert len(kept) == len(names) + 1
    assert all((rig.archive_dir / c.bytes_path).is_file() for c in kept)
    proc = verify_archive(rig, ATTACKER)
    assert proc.returncode == 1
    assert proc.stdout.count("CONFLICT") == len(kept), proc.stdout
    assert "ALTERED" not in proc.stdout and "NOT VALID" in proc.stdout
    # Sending the very bytes archived already is no conflict: the same receipt comes back.
    again = forged_file(rig, original.parent.name, original.name, original.read_bytes(),
                        "manifest", original.name)
    assert rig.forged_sync([again]).receipted == [original.name]
    rig.witness_docks()
    rig.assert_serving()


# --- 2. no message stops the dock for everyone -----------------------------------------------------

def big_number_requests() -> list[tuple[str, bytes]]:
    topic = p.time_request_topic(ATTACKER)
    return [(topic, b'{"t1": 1' + b"0" * 400 + b"}"), (topic, b'{"t1": -1' + b"0" * 400 + b"}"),
            (topic, b'{"t1": 1e400}'), (topic, b'{"t1": 1e300}'),
            (topic, b'{"t1": 9' * 1 + b"9" * 5000 + b"}")]


def reannounced(data: bytes) -> list[tuple[str, bytes]]:
    """The sequence that ended the archive thread: a file announced and sent, a second hello
    and an init that call the same file id another file, and the fin."""
    first = p.FileOffer.of(name="a.ts", activity="20261129T003000Z", size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), manifest=None, kind="media")
    second = p.FileOffer(first.file_id, "b.ts", first.activity, first.size, first.sha256, None,
                         "media")
    out = [(p.hello_topic(ATTACKER), p.Hello(ATTACKER, "x", None, (first,)).encode()),
           (first.topic(ATTACKER), first.encode())]
    for offset in range(0, len(data), 1000):
        chunk = p.Chunk.of(first.file_id, offset, data[offset:offset + 1000])
        out.append((chunk.topic(ATTACKER), chunk.encode()))
    fin = p.Fin(first.file_id, first.size, first.sha256)
    return out + [(p.hello_topic(ATTACKER), p.Hello(ATTACKER, "x", None, (second,)).encode()),
                  (second.topic(ATTACKER), second.encode()),
                  (fin.topic(ATTACKER), fin.encode())]


def test_no_message_stops_the_dock_for_the_other_devices(rig):
    rig.witness_docks()
    before = rig.archived()
    attacker = rig.raw()
    try:
        rig.seal(WITNESS, items=2)
        thread, out = in_background(lambda: rig.sync(WITNESS))
        rig.send(attacker, big_number_requests() + reannounced(b"x" * 5000))
        during = joined(thread, out)
        rig.quiet()
    finally:
        close(attacker)
    assert during.done and not during.failed and len(during.receipted) == 6
    rig.assert_serving()
    refused = [reason for topic, reason in rig.dock.invalid if "/time/req" in topic]
    assert len(refused) == 5 and all(r.startswith("time_request") for r in refused), refused
    assert any("digits long" in r for r in refused)
    after = rig.archived()
    assert {k: after[k] for k in before} == before
    assert not any(path.startswith(f"{ATTACKER}/") for path in after), "a.ts never completed"
    rig.witness_docks()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_thread_is_detected_and_dock_serve_exits_non_zero(rig):
    from dock.service import serve_until

    rig.witness_docks()
    assert serve_until(rig.dock, threading.Event(), 0.05, poll_s=0.01) is None

    class Crash(BaseException):  # what no guard catches: a bug, not device input
        pass

    def crash(*args, **kwargs):
        raise Crash()

    rig.dock._flush = crash
    attacker = rig.raw()
    try:
        rig.send(attacker, [(p.hello_topic(ATTACKER), p.Hello(ATTACKER, "x", None, ()).encode())])
        rig.dock._worker.join(10)
    finally:
        close(attacker)
    assert "archive thread" in (rig.dock.failure() or "")
    assert "archive thread" in (serve_until(rig.dock, threading.Event(), 5, poll_s=0.01) or "")


# --- 3. client ids are the certificates' ----------------------------------------------------------

def test_a_device_cannot_take_over_another_client_id_or_the_docks(rig, broker):
    rig.witness_docks()
    rig.seal(WITNESS, items=3)
    thread, out = in_background(lambda: rig.sync(WITNESS))
    for n in range(15):  # reconnecting in a loop under the others' ids
        for client_id in (WITNESS, f"dock-{rig.dock.dock_id}", "dock"):
            assert rig.connect_once(ATTACKER, client_id)
    during = joined(thread, out)
    assert during.done and not during.failed and len(during.receipted) == 9
    log = broker.log
    # Every one of the attacker's connections was given its own CN as client id...
    assert len(re.findall(rf"as {ATTACKER} \(", log)) == 45
    assert f"as {WITNESS} (" in log and "already connected" not in log.replace(
        f"Client {ATTACKER} already connected", "")
    # ...and the dock's own session was never taken over.
    assert len(re.findall(r"New client connected from \S+ as dock \(", log)) == 1
    rig.assert_serving()
    rig.witness_docks()


# --- 6. revocation ---------------------------------------------------------------------------------

@pytest.mark.req("R18.3")
def test_a_revoked_device_is_refused_by_the_dock_at_once_and_by_the_broker_at_connect(
        rig, broker, capsys):
    from bodycam.cli import main
    from dock import ledger
    from dock.archive import Archive
    from dock.enrollment import dock_key

    rig.seal(ATTACKER)
    assert len(rig.sync(ATTACKER).receipted) == 3
    rig.witness_docks()
    before = rig.archived()
    capsys.readouterr()
    assert main(["dock", "revoke", ATTACKER, "--reason", "stolen from vehicle",
                 "--config", str(rig.conf)]) == 0
    assert "1 certificate(s) on the CRL" in capsys.readouterr().out
    # The running broker read its CRL at start: the stolen device still connects, and the
    # dock refuses whatever it sends.
    rig.seal(ATTACKER)
    refused = rig.sync(ATTACKER, timeout=4)
    assert not refused.receipted
    assert any(f"{ATTACKER} is withdrawn" in reason for _, reason in rig.dock.invalid)
    rig.witness_docks()
    # The broker reads the dock's CRL again (SIGHUP: what `bodycam dock serve` does when a
    # revocation appears), no restart: refused at the TLS handshake, its certificate revoked.
    broker.crl = rig.dock_dir / "ca" / "crl.pem"
    broker.reload()
    assert not rig.connect_once(ATTACKER)
    assert "revoked" in broker.log.lower()
    assert rig.connect_once(WITNESS)
    rig.witness_docks()
    after = rig.archived()
    assert {k: after[k] for k in before} == before
    assert not any(k.startswith(ATTACKER) for k in set(after) - set(before))
    archive = Archive(rig.archive_dir, rig.dock_dir, dock_key(rig.dock_dir), "dock")
    try:
        (event,) = ledger.events(archive, ATTACKER)
    finally:
        archive.close()
    assert event.event == "revoked" and "stolen from vehicle" in event.detail
    # The CRL is the CA's, and openssl (an independent check) finds the serial on it.
    out = subprocess.run(["openssl", "crl", "-in", str(broker.crl), "-noout", "-text"],
                         capture_output=True, text=True, check=True).stdout
    (serial,) = [line.split("-")[-1][:-4] for line in
                 map(str, (rig.dock_dir / "ca" / "issued").glob(f"{ATTACKER}-*.pem"))]
    assert serial.upper().lstrip("0") in out.replace(" ", "").upper()


# --- 4. disk exhaustion -----------------------------------------------------------------------------

def test_quotas_refuse_what_would_exhaust_the_disk_and_abandoned_partials_expire(tmp_path, broker):
    import sqlite3
    import time

    from dock.quota import Quota

    free = {"bytes": 10 << 30}
    clock = {"offset": 0.0}
    quota = Quota(max_file_bytes=1 << 30, device_open_files=16, device_bytes_in_flight=100_000,
                  reserve_bytes=1 << 30, partial_expiry_s=3600, free=lambda path: free["bytes"])
    rig = Rig(tmp_path, broker, quota=quota, now=lambda: time.time() + clock["offset"])
    attacker = rig.raw()
    try:
        rig.witness_docks()
        before = rig.archived()

        def init(size: int, n: int) -> tuple[str, bytes]:
            offer = p.FileOffer.of(name=f"f{n}.ts", activity="20261129T003000Z", size=size,
                                   sha256=hashlib.sha256(b"%d" % n).hexdigest(), manifest=None,
                                   kind="media")
            return offer.topic(ATTACKER), offer.encode()

        huge, too_much = init(2**53 - 1, 0), init(200_000, 1)
        opened = [init(1000, n) for n in range(2, 20)]
        chunk = p.Chunk.of(json.loads(opened[0][1])["file_id"], 0, b"x" * 500)
        rig.seal(WITNESS, items=2)
        thread, out = in_background(lambda: rig.sync(WITNESS))
        rig.send(attacker, [huge, too_much, *opened, (chunk.topic(ATTACKER), chunk.encode())])
        during = joined(thread, out)
        rig.quiet()
        assert during.done and not during.failed and len(during.receipted) == 6
        db = sqlite3.connect(rig.archive_dir / "index.sqlite")
        incoming = db.execute("SELECT name, size FROM files WHERE device=? AND state='incoming'",
                              (ATTACKER,)).fetchall()
        assert sorted(incoming) == sorted((f"f{n}.ts", 1000) for n in range(2, 18))  # 16 open
        assert rig.dock.progress[ATTACKER].rejected == 4  # huge, too much, the 17th and 18th
        parts = list((rig.archive_dir / "incoming" / ATTACKER).glob("*.part"))
        assert len(parts) == 16 and sum(p_.stat().st_size for p_ in parts) == 500

        # Below the reserve of free space no one's new files are taken; the devices keep them.
        free["bytes"] = 1 << 30
        made = rig.seal(WITNESS)
        refused = rig.sync(WITNESS, timeout=10)
        assert not refused.receipted and len(refused.failed) == made
        assert all("keeps" in why for _, why in refused.failed), refused.failed
        assert len([f for f in (rig.roots[WITNESS] / "evidence").rglob("*.ts*")]) >= 1
        free["bytes"] = 10 << 30
        assert len(rig.sync(WITNESS).receipted) == made

        # A week later (the dock's clock), the abandoned partial files are removed, logged.
        clock["offset"] = 3601.0
        rig.witness_docks()  # any message wakes the archive thread
        rig.quiet()
        assert sorted(fid for device, fid in rig.dock.expired if device == ATTACKER) == sorted(
            json.loads(payload)["file_id"] for _, payload in opened[:16])
        assert db.execute("SELECT COUNT(*) FROM files WHERE state='incoming'").fetchone()[0] == 0
        assert not list((rig.archive_dir / "incoming" / ATTACKER).glob("*.part"))
        db.close()
        after = rig.archived()
        assert {k: after[k] for k in before} == before
        rig.assert_serving()
    finally:
        close(attacker)
        rig.close()


# --- 5. reserved and bad ids ----------------------------------------------------------------------

BAD_IDS = ["../../x", "BC.0004", "B" * 40, "incoming", "Incoming", "DOCK", "dock",
           "broker-probe", "a/b", "x+", "#", ""]


@pytest.mark.req("R18.3")
def test_one_device_id_rule_everywhere_and_nothing_written_for_a_bad_one(rig, capsys):
    from bodycam.cli import main
    from dock import pki
    from dock.enrollment import dock_ca
    from firmware_py.evidence import keys
    from sync.credentials import device_keys

    listing = sorted(str(q) for q in rig.tmp.rglob("*"))
    for bad in BAD_IDS:
        root = rig.tmp / "bad-root"
        code = main(["dock", "enroll", "--config", str(rig.conf), "--device-root", str(root),
                     "--device-id", bad, "--unit", "Brigade"])
        assert code == 2, bad
        assert "device id" in capsys.readouterr().err
        with pytest.raises(keys.KeyFileError, match="device id"):  # the simulator's way in
            keys.enroll(root, rig.dock_dir, bad, "Brigade")
        with pytest.raises(p.ProtocolError):
            p.parse_topic(f"bodycam/v1/up/{bad}/hello")
    assert sorted(str(q) for q in rig.tmp.rglob("*")) == listing, "a refused id wrote something"
    assert not (rig.tmp / "x.json").exists()  # dock/devices/../../x.json
    csr = device_keys(rig.tmp / "csr-root").csr("dock")
    for bad in ("dock", "incoming", "BC.0004"):  # no certificate for a reserved or bad name
        with pytest.raises(ValueError, match="common name"):
            pki.issue_client_from_csr(dock_ca(rig.dock_dir), csr, bad)
    # On the wire: the attacker cannot write under a reserved name or another device's
    # (the ACL drops it), and whatever reaches the dock names its own device.
    before = rig.archived()
    attacker = rig.raw()
    try:
        hello = p.Hello(ATTACKER, "x", None, ()).encode()
        rig.send(attacker, [("bodycam/v1/up/incoming/hello", hello),
                            (f"bodycam/v1/up/{WITNESS}/hello", hello),
                            (p.hello_topic(ATTACKER), hello)])
        rig.witness_docks()
        rig.quiet()
    finally:
        close(attacker)
    assert set(rig.dock.progress) == {ATTACKER, WITNESS}
    after = rig.archived()
    assert {k: after[k] for k in before} == before


# --- 7. claims ------------------------------------------------------------------------------------

@pytest.mark.req("R13.4")
def test_invented_offers_are_claims_not_overdue_dockings_and_a_custodian_clears_them(rig, capsys):
    import sqlite3
    import time

    from bodycam.cli import main

    invented = tuple(p.FileOffer.of(name=f"n{n}.ts", activity=f"2026112{n % 3}T000000Z",
                                    size=1000 + n, sha256=hashlib.sha256(b"%d" % n).hexdigest(),
                                    manifest=None, kind="media") for n in range(600))
    attacker = rig.raw()
    try:
        rig.seal(WITNESS)
        thread, out = in_background(lambda: rig.sync(WITNESS))
        rig.send(attacker, [(p.hello_topic(ATTACKER),
                             p.Hello(ATTACKER, "x", 50, invented[:300]).encode()),
                            (p.hello_topic(ATTACKER),
                             p.Hello(ATTACKER, "x", 50, invented[300:], page=1).encode())])
        assert len(joined(thread, out).receipted) == 3
        rig.quiet()
    finally:
        close(attacker)
    db = sqlite3.connect(rig.archive_dir / "index.sqlite")
    dockings = dict(db.execute("SELECT device, COUNT(*) FROM dockings GROUP BY device"))
    assert dockings == {WITNESS: 1}, "a hello without charging or a file is no docking"
    # Two days on: the witness's docking is all stored, the attacker's claims are no overdue
    # activities — they are listed apart, as unconfirmed claims.
    from dock.archive import Archive
    from dock.enrollment import dock_key
    archive = Archive(rig.archive_dir, rig.dock_dir, dock_key(rig.dock_dir), "dock")
    try:
        late = archive.overdue(24, time.time() + 2 * 86400, 72)
        assert late["activities"] == []
        claims = archive.unconfirmed_claims()
    finally:
        archive.close()
    assert {c["device"] for c in claims} == {ATTACKER} and sum(c["files"] for c in claims) == 600
    capsys.readouterr()
    main(["dock", "overdue", "--config", str(rig.conf)])
    assert capsys.readouterr().out.count(f"UNCONFIRMED  {ATTACKER}") == 3
    assert main(["dock", "clear-claims", ATTACKER, "--reason", "device stolen; offers invented",
                 "--config", str(rig.conf)]) == 0
    assert "600 offers cleared" in capsys.readouterr().out
    assert main(["dock", "overdue", "--config", str(rig.conf)]) == 0
    assert "UNCONFIRMED" not in capsys.readouterr().out
    main(["dock", "ledger", "--config", str(rig.conf)])
    assert "CLAIMS_CLEARED" in capsys.readouterr().out
    # A charging device's hello is a docking even before any file arrives.
    rig.seal(WITNESS)
    assert len(rig.sync(WITNESS, charging=True).receipted) == 3
    assert db.execute("SELECT COUNT(*) FROM dockings WHERE device=?", (WITNESS,)).fetchone()[0] == 2
    db.close()


@pytest.mark.req("R7.4")
def test_the_device_takes_its_time_only_from_an_answer_the_dock_signed(rig):
    from types import SimpleNamespace

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from dock.enrollment import dock_key
    from firmware_py.evidence import audit
    from device.clock import DeviceClock
    from sync.device_sync import DeviceSync

    assert rig.witness_docks().clock_offset_s is not None  # the dock's signed answer, taken
    root = rig.roots[WITNESS]
    log = audit.AuditLog(root / "audit.jsonl", DeviceClock(), durable=False)
    rig.seal(WITNESS)
    session = DeviceSync(root, WITNESS, rig.broker.host, rig.broker.port,
                         evidence=root / "evidence", audit_log=root / "audit.jsonl",
                         correct_above_s=0.5, tls=rig.tls(WITNESS), audit=log)
    session.uploader.start()
    topic = p.time_response_topic(WITNESS)

    def answer(t1: float, key, signed_for: str = WITNESS, dock_time: float = 5e9) -> None:
        session.uploader.request_time(t1)
        unsigned = p.TimeResponse(t1, dock_time, dock_time)
        signature = key.sign(unsigned.signed_bytes(signed_for)) if key else b""
        response = p.TimeResponse(t1, dock_time, dock_time, signature)
        session._on_message(None, None, SimpleNamespace(topic=topic, payload=response.encode()))

    # Whoever can publish on the broker (not the dock) cannot set the device's clock: an
    # answer signed by another key, one the dock signed for another device, an unsigned one.
    answer(1000.0, Ed25519PrivateKey.generate())
    answer(1001.0, dock_key(rig.dock_dir), signed_for=ATTACKER)
    answer(1002.0, None)
    assert session.result.clock_offset_s is None
    answer(1003.0, dock_key(rig.dock_dir), dock_time=1003.0)
    assert session.result.clock_offset_s is not None and abs(session.result.clock_offset_s) < 1e10
    log.close()
    refused = [e for e in audit.read(root / "audit.jsonl") if e["kind"] == "dock_time_refused"]
    assert len(refused) == 3


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dock_serve_exits_non_zero_when_its_archive_thread_has_ended(tmp_path, monkeypatch,
                                                                     capsys):
    """`bodycam dock serve` (Mosquitto, the shipped TLS and ACL) whose archive thread a bug
    ends: it exits non-zero at once for its supervisor to restart it, not at --seconds."""
    import time

    from bodycam.cli import main
    from dock.enrollment import enroll_device
    from dock.service import DockService
    from sync.credentials import device_sync_files
    from sync.mqtt import client as mqtt_client

    class Bug(BaseException):  # what no guard catches
        pass

    def bug(self, *args, **kwargs):
        raise Bug()

    monkeypatch.setattr(DockService, "_handle", bug)
    conf = tmp_path / "dock.toml"
    conf.write_text(f'[dock]\ndir = "{tmp_path / "dock"}"\narchive = "{tmp_path / "archive"}"\n'
                    '[broker]\nmode = "mosquitto"\n[enrolment]\nenabled = false\n')
    enroll_device(tmp_path / "dev", tmp_path / "dock", WITNESS, "Brigade")
    files = device_sync_files(tmp_path / "dev", WITNESS)

    def device() -> None:  # once the dock is up, a hello: the bug ends the archive thread
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = capsys.readouterr().out
            match = re.search(r"127\.0\.0\.1:(\d+)", out)
            if match:
                c = mqtt_client("127.0.0.1", int(match.group(1)), WITNESS, ca=files.ca,
                                cert=files.cert, key=files.key)
                c.loop_start()
                c.publish(p.hello_topic(WITNESS), p.Hello(WITNESS, "x", None, ()).encode(),
                          qos=1).wait_for_publish(10)
                close(c)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=device, daemon=True)
    thread.start()
    started = time.monotonic()
    assert main(["dock", "serve", "--config", str(conf), "--seconds", "60"]) == 1
    assert time.monotonic() - started < 30
    assert "the archive thread" in capsys.readouterr().err


@pytest.mark.req("R18.3")
def test_dock_serve_has_its_broker_refuse_a_device_revoked_while_it_runs(tmp_path, capsys):
    """`bodycam dock revoke` while `bodycam dock serve` runs Mosquitto: serve notices, renders
    the CRL and ACL again and has the broker reload them; the device is refused at its next
    connect, no restart."""
    import os
    import signal
    import time

    from attack_rig import connect_once
    from bodycam.cli import main
    from dock.enrollment import enroll_device
    from sync.credentials import device_sync_files

    conf = tmp_path / "dock.toml"
    conf.write_text(f'[dock]\ndir = "{tmp_path / "dock"}"\narchive = "{tmp_path / "archive"}"\n'
                    '[broker]\nmode = "mosquitto"\n[enrolment]\nenabled = false\n')
    for device in (ATTACKER, WITNESS):
        enroll_device(tmp_path / device, tmp_path / "dock", device, "Brigade")
    tls = {}
    for d in (ATTACKER, WITNESS):
        files = device_sync_files(tmp_path / d, d)
        tls[d] = (files.ca, files.cert, files.key)
    seen: dict[str, object] = {}

    def custodian_and_devices() -> None:
        try:
            deadline = time.monotonic() + 30
            while "port" not in seen and time.monotonic() < deadline:
                match = re.search(r"127\.0\.0\.1:(\d+)", capsys.readouterr().out)
                if match:
                    seen["port"] = int(match.group(1))
                time.sleep(0.05)
            port = int(seen["port"])
            seen["before"] = connect_once("127.0.0.1", port, tls[ATTACKER], ATTACKER)
            seen["revoke"] = main(["dock", "revoke", ATTACKER, "--reason", "stolen",
                                   "--config", str(conf)])
            while time.monotonic() < deadline:
                if not connect_once("127.0.0.1", port, tls[ATTACKER], ATTACKER):
                    seen["refused_after_s"] = time.monotonic()
                    break
                time.sleep(0.2)
            seen["witness"] = connect_once("127.0.0.1", port, tls[WITNESS], WITNESS)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # serve's own way to stop

    thread = threading.Thread(target=custodian_and_devices, daemon=True)
    thread.start()
    assert main(["dock", "serve", "--config", str(conf), "--seconds", "60"]) == 0
    thread.join(10)
    assert seen["before"] is True and seen["revoke"] == 0, seen
    assert "refused_after_s" in seen, "the revoked device still connects"
    assert seen["witness"] is True
