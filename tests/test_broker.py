"""The broker as shipped: real Mosquitto with mutual TLS and the shipped ACL, plus the
embedded amqtt demo broker.

Negative ACL checks cannot wait for "nothing" to arrive. Each one is followed by a sentinel
message that the same broker must route *after* the forbidden one (same publisher, or a
publish made only once the forbidden one has visibly been routed elsewhere); once the
sentinel is in, anything the ACL let through would already be there.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import ssl
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import MQTTErrorCode

from dock.broker import ACL, TEMPLATE, EmbeddedBroker, MosquittoBroker, render_config
from dock.pki import CA, CertFiles, create_ca, issue_client, issue_server, load_ca
from sync.mqtt import client

TIMEOUT = 10.0  # upper bound for any single wait; the happy path takes milliseconds

UP = "bodycam/v1/up"
DOWN = "bodycam/v1/down"


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT,
               cond: threading.Condition | None = None) -> bool:
    """Wait until ``predicate()`` holds or ``timeout`` passes; returns the final value."""
    deadline = time.monotonic() + timeout
    if cond is not None:
        with cond:
            return cond.wait_for(predicate, timeout)
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass
class Received:
    topic: str
    payload: bytes


@dataclass
class Peer:
    """A paho client plus what it has seen, for tests that wait on conditions."""

    mqtt: mqtt.Client
    name: str
    messages: list[Received] = field(default_factory=list)
    connects: int = 0
    last_connect_rc: object = None
    subacks: dict[int, list[int]] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)  # re-subscribed on every (re)connect
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe

    def _on_connect(self, c: mqtt.Client, _ud: object, _flags: object, rc: object,
                    _props: object) -> None:
        with self.cond:
            self.last_connect_rc = rc
            if not rc.is_failure:  # type: ignore[attr-defined]
                # Sessions are clean and the test broker keeps no state across restarts.
                for t in self.topics:
                    c.subscribe(t, qos=1)
                self.connects += 1
            self.cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(Received(msg.topic, msg.payload))
            self.cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _ud: object, mid: int, codes: list,
                      _props: object) -> None:
        with self.cond:
            self.subacks[mid] = [int(rc.value) for rc in codes]
            self.cond.notify_all()

    def start(self, connects: int = 1) -> Peer:
        self.mqtt.loop_start()
        assert self.wait_connects(connects), f"{self.name}: no CONNACK ({self.last_connect_rc})"
        return self

    def wait_connects(self, n: int) -> bool:
        return wait_until(lambda: self.connects >= n, cond=self.cond)

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe (also after every reconnect) and return the SUBACK codes."""
        with self.cond:
            self.topics.append(topic)
        _, mid = self.mqtt.subscribe(topic, qos=1)
        assert wait_until(lambda: mid in self.subacks, cond=self.cond), f"no SUBACK for {topic}"
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.mqtt.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)  # PUBACK; says nothing about delivery under 3.1.1
        assert info.is_published(), f"{self.name}: no PUBACK for {topic}"

    def wait_message(self, topic: str) -> Received:
        def found() -> bool:
            return any(m.topic == topic for m in self.messages)
        assert wait_until(found, cond=self.cond), \
            f"{self.name} did not receive {topic}; got {self.received_topics()}"
        return next(m for m in self.messages if m.topic == topic)

    def received_topics(self) -> list[str]:
        with self.cond:
            return [m.topic for m in self.messages]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


# -- PKI ---------------------------------------------------------------------------------


@dataclass
class Enrolment:
    ca: CA
    dock: CertFiles
    devices: dict[str, CertFiles]
    foreign: CertFiles  # a device certificate from a CA the broker does not trust


@pytest.fixture(scope="module")
def enrolment(tmp_path_factory: pytest.TempPathFactory) -> Enrolment:
    root = tmp_path_factory.mktemp("pki")
    ca = create_ca(root / "ca", "bodycam test dock CA")
    other = create_ca(root / "other-ca", "someone else's CA")
    return Enrolment(
        ca=ca,
        dock=issue_client(ca, root / "clients", "dock"),
        devices={d: issue_client(ca, root / "clients", d) for d in ("BC-0001", "BC-0002")},
        foreign=issue_client(other, root / "foreign", "BC-0001"),
    )


def test_ca_and_certificates_are_fit_for_mutual_tls(enrolment: Enrolment,
                                                   tmp_path: Path) -> None:
    ca = load_ca(enrolment.ca.dir)
    assert ca.certificate == enrolment.ca.certificate
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    server = issue_server(ca, tmp_path, hostnames=["localhost", "dock.local"],
                          ips=["127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "dock.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(ca.certificate)

    device = x509.load_pem_x509_certificate(enrolment.devices["BC-0001"].cert.read_bytes())
    assert device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "BC-0001"
    eku = device.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not device.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert device.serial_number != cert.serial_number

    for key in (ca.key_path, server.key, enrolment.devices["BC-0001"].key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        create_ca(enrolment.ca.dir)
    for bad in ("BC/0001", "BC+", "#", "", "a b"):
        with pytest.raises(ValueError):
            issue_client(ca, tmp_path, bad)


def test_shipped_config_renders_completely(enrolment: Enrolment, tmp_path: Path) -> None:
    text = render_config(TEMPLATE, 18883, enrolment.ca.cert_path, tmp_path / "s.crt",
                         tmp_path / "s.key", ACL, persistence_dir=tmp_path / "db")
    directives = {line.split()[0]: line.split(None, 1)[1:]
                  for line in text.splitlines() if line and not line.startswith("#")}
    assert directives["listener"] == ["18883 127.0.0.1"]
    for name, value in [("require_certificate", "true"), ("use_identity_as_username", "true"),
                        ("allow_anonymous", "false"), ("persistence", "true")]:
        assert directives[name] == [value]
    assert int(directives["message_size_limit"][0]) > 1024 * 1024 + 64 * 1024
    assert directives["persistence_location"] == [f"{(tmp_path / 'db').resolve()}/"]
    assert "$" not in text.replace("$SYS", "")
    with pytest.raises(ValueError):
        render_config(TEMPLATE, 1, Path("/a b/ca.crt"), Path("s"), Path("k"), ACL)


# -- Mosquitto, mutual TLS, ACL ----------------------------------------------------------


@pytest.fixture(scope="module")
def mosquitto(enrolment: Enrolment, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(enrolment.ca, tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def broker(mosquitto: MosquittoBroker) -> Iterator[MosquittoBroker]:
    """The module's broker; its log for this test is printed, so a failure report shows it."""
    start = len(mosquitto.log)
    yield mosquitto
    print(f"--- mosquitto log during this test ---\n{mosquitto.log[start:]}")


@pytest.fixture
def peers(broker: MosquittoBroker, enrolment: Enrolment) -> Iterator[Callable[[str], Peer]]:
    """Connect a client by certificate CN ("dock" or a device id); all closed afterwards."""
    made: list[Peer] = []

    def connect(cn: str) -> Peer:
        files = enrolment.dock if cn == "dock" else enrolment.devices[cn]
        c = client(broker.host, broker.port, f"{cn}-{len(made)}", ca=broker.ca_file,
                   cert=files.cert, key=files.key)
        peer = Peer(c, cn)
        made.append(peer)
        return peer.start()

    yield connect
    for p in made:
        p.close()


@pytest.mark.req("R14.1")
def test_device_and_dock_exchange_messages_over_mutual_tls(
        peers: Callable[[str], Peer], broker: MosquittoBroker) -> None:
    dock, device = peers("dock"), peers("BC-0001")
    assert dock.subscribe(f"{UP}/+/#") == [1]
    assert device.subscribe(f"{DOWN}/BC-0001/#") == [1]

    device.publish(f"{UP}/BC-0001/hello", b"hello dock")
    assert dock.wait_message(f"{UP}/BC-0001/hello").payload == b"hello dock"

    dock.publish(f"{DOWN}/BC-0001/receipt/x", b"receipt")
    assert device.wait_message(f"{DOWN}/BC-0001/receipt/x").payload == b"receipt"
    # The username and the client id are the certificate's CN, not the id the client asked
    # for (BC-0001-1): use_username_as_clientid (issue 14).
    assert re.search(r"as BC-0001 \(.*u'BC-0001'\)", broker.log), broker.log
    assert "as BC-0001-1 " not in broker.log


def test_device_cannot_write_outside_its_own_up_prefix(peers: Callable[[str], Peer]) -> None:
    dock, intruder = peers("dock"), peers("BC-0002")
    dock.subscribe("bodycam/#")
    forbidden = [f"{UP}/BC-0001/hello",              # impersonating another device
                 f"{DOWN}/BC-0001/receipt/forged",   # forging a receipt for another device
                 f"{DOWN}/BC-0002/receipt/forged",   # ... or for itself
                 f"{UP}/BC-00021/hello"]             # a prefix that merely starts the same
    for topic in forbidden:
        intruder.publish(topic, b"forged")          # acknowledged, then dropped by the ACL
    # Same publisher, QoS 1: Mosquitto routes in order, so the sentinel arrives last.
    intruder.publish(f"{UP}/BC-0002/sentinel", b"")
    dock.wait_message(f"{UP}/BC-0002/sentinel")
    assert dock.received_topics() == [f"{UP}/BC-0002/sentinel"]


def test_device_cannot_read_another_devices_topics(peers: Callable[[str], Peer]) -> None:
    dock, owner, snoop = peers("dock"), peers("BC-0001"), peers("BC-0002")
    dock.subscribe(f"{UP}/#")
    owner.subscribe(f"{DOWN}/BC-0001/#")
    snoop.subscribe(f"{DOWN}/BC-0002/#")
    for topic in (f"{DOWN}/BC-0001/#", f"{UP}/#", "#"):
        snoop.subscribe(topic)  # SUBACK code varies by version; what matters is delivery

    owner.publish(f"{UP}/BC-0001/chunk", b"evidence")
    dock.wait_message(f"{UP}/BC-0001/chunk")
    dock.publish(f"{DOWN}/BC-0001/receipt/x", b"receipt for BC-0001")
    owner.wait_message(f"{DOWN}/BC-0001/receipt/x")  # control: the messages were routed
    # Both were routed before the dock publishes this; a leak would reach snoop first.
    dock.publish(f"{DOWN}/BC-0002/sentinel", b"")
    snoop.wait_message(f"{DOWN}/BC-0002/sentinel")
    assert set(snoop.received_topics()) == {f"{DOWN}/BC-0002/sentinel"}


@pytest.mark.req("R14.1")
@pytest.mark.parametrize("credentials", ["none", "foreign-ca", "plain-tcp"])
def test_clients_without_a_certificate_from_the_dock_ca_are_refused(
        broker: MosquittoBroker, enrolment: Enrolment, credentials: str) -> None:
    kwargs: dict[str, Path] = {  # type: ignore[assignment]  # picked from a table
        "none": {"ca": broker.ca_file},
        "foreign-ca": {"ca": broker.ca_file, "cert": enrolment.foreign.cert,
                       "key": enrolment.foreign.key},
        "plain-tcp": {},
    }[credentials]
    client_id = f"refused-{credentials}"
    c = client(broker.host, broker.port, client_id, **kwargs)
    outcome: list[object] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: outcome.append(rc)
    try:
        # Under TLS 1.3 the server's verdict on the client certificate arrives after the
        # client's side of the handshake, so the refusal may show on connect or first read.
        rc = c.reconnect()
        deadline = time.monotonic() + TIMEOUT
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not outcome \
                and time.monotonic() < deadline:
            rc = c.loop(timeout=0.05)
    except (OSError, ssl.SSLError):
        pass  # refused during the handshake
    finally:
        c.disconnect()
    assert not any(not rc.is_failure for rc in outcome), f"connected: {outcome}"
    assert f"as {client_id}" not in broker.log


def test_clients_reconnect_after_broker_restart(enrolment: Enrolment, tmp_path: Path) -> None:
    with MosquittoBroker(enrolment.ca, tmp_path) as broker:
        def peer(cn: str) -> Peer:
            files = enrolment.dock if cn == "dock" else enrolment.devices[cn]
            return Peer(client(broker.host, broker.port, cn, ca=broker.ca_file,
                               cert=files.cert, key=files.key), cn).start()

        dock, device = peer("dock"), peer("BC-0001")
        try:
            dock.subscribe(f"{UP}/#")
            port = broker.port
            broker.restart()
            assert broker.port == port
            # paho reconnects on its own (backoff starts at 1 s); on_connect resubscribes.
            assert dock.wait_connects(2) and device.wait_connects(2), broker.log
            assert wait_until(lambda: len(dock.subacks) >= 2, cond=dock.cond)
            device.publish(f"{UP}/BC-0001/after-restart", b"resumed")
            assert dock.wait_message(f"{UP}/BC-0001/after-restart").payload == b"resumed"
        finally:
            dock.close()
            device.close()


# -- embedded demo broker ----------------------------------------------------------------


def test_embedded_broker_round_trip_with_large_payload() -> None:
    payload = os.urandom(512 * 1024)
    with EmbeddedBroker() as broker:
        sub = Peer(client(broker.host, broker.port, "demo-dock"), "demo-dock").start()
        pub = Peer(client(broker.host, broker.port, "demo-device"), "demo-device").start()
        try:
            assert sub.subscribe(f"{UP}/#") == [1]
            pub.publish(f"{UP}/BC-0001/small", b"hi")
            pub.publish(f"{UP}/BC-0001/chunk", payload)
            assert sub.wait_message(f"{UP}/BC-0001/small").payload == b"hi"
            got = sub.wait_message(f"{UP}/BC-0001/chunk").payload
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        finally:
            sub.close()
            pub.close()


def test_embedded_broker_stops_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    threads_before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            broker = EmbeddedBroker()
            broker.start()
            # A client still connected when the broker stops is the awkward case.
            peer = Peer(client(broker.host, broker.port, "lingering"), "lingering").start()
            peer.subscribe("x/#")
            broker.stop()
            peer.close()
            broker.stop()  # idempotent
            gc.collect()  # surfaces ResourceWarnings for sockets left unclosed
    assert not broker.running
    leaked = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not leaked, leaked
    assert not [str(w.message) for w in caught], [str(w.message) for w in caught]
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
