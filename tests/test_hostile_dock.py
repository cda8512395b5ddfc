"""Hostile input against a running dock (issue 14): whatever a device sends, the dock goes on.

A stolen device (``BC-ATK``, enrolled, its certificate in the attacker's hands) publishes
random topics under its own prefix — the only ones the shipped ACL lets it write — with
random payloads, and messages of the protocol with random fields (huge numbers, wrong
types, chunks anywhere, fins of any size, the same file id as another file), through the
real Mosquitto with mutual TLS to a running ``DockService``. After each example the dock's
threads are alive (``DockService.failure``), every receipted file is byte for byte what its
receipt says, and a well-behaved device (``BC-OK``) still completes a transfer.

The dock runs for the whole module (one broker, one dock: examples take a second, not a
broker start each); ``make fuzz`` (bench/fuzz.py) runs these properties for longer.
Properties take no pytest fixtures, so the fuzz run calls them as plain functions.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from attack_rig import ATTACKER, Rig, close
from hostile import examples
from sync import protocol as p

_RIG: list[Any] = []


def running() -> Rig:
    """The module's broker, dock and devices, started on first use, stopped at exit."""
    if not _RIG:
        from dock.broker import MosquittoBroker
        from dock.enrollment import dock_ca

        tmp = Path(tempfile.mkdtemp(prefix="bodycam-hostile-dock-"))
        broker = MosquittoBroker(dock_ca(tmp / "dock"), tmp / "broker")
        broker.start()
        rig = Rig(tmp, broker)
        attacker = rig.raw()
        _RIG[:] = [rig, attacker]

        def stop() -> None:
            close(attacker)
            rig.close()
            broker.close()
            shutil.rmtree(tmp, ignore_errors=True)

        atexit.register(stop)
    return _RIG[0]


FILE_IDS = ["0" * 32, "f" * 32, hashlib.sha256(b"x").hexdigest()[:32]]
UP = f"bodycam/v1/up/{ATTACKER}"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from([2**53, 2**63, -1, 10**400, 1e308]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@st.composite
def offers(draw: st.DrawFn) -> p.FileOffer:
    data = draw(st.binary(min_size=0, max_size=3000))
    name = draw(st.sampled_from(["a.ts", "b.ts", "x.manifest.json", "x.manifest.sig",
                                 "activity.jsonl"]))
    return p.FileOffer.of(name=name, activity=draw(st.sampled_from(["20261129T003000Z", "audit"])),
                          size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                          manifest=draw(st.none() | st.just("x.manifest.json")),
                          kind=draw(st.sampled_from(["media", "manifest", "signature"])))


@st.composite
def protocol_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A message of the protocol, its fields drawn at random (valid or not)."""
    offer = draw(offers())
    kind = draw(st.sampled_from(["hello", "init", "chunk", "fin", "time"]))
    if kind == "hello":
        message: Any = p.Hello(ATTACKER, "x", None, (offer,), page=draw(st.integers(0, 3)))
        topic = message.topic(ATTACKER)
    elif kind == "init":
        message, topic = offer, offer.topic(ATTACKER)
    elif kind == "chunk":
        data = draw(st.binary(max_size=2000))
        chunk = p.Chunk.of(draw(st.sampled_from([offer.file_id, *FILE_IDS])),
                           draw(st.integers(0, 5000)), data)
        return chunk.topic(ATTACKER), chunk.encode()
    elif kind == "fin":
        message = p.Fin(offer.file_id, draw(st.integers(0, 2**53 - 1)), offer.sha256)
        topic = message.topic(ATTACKER)
    else:  # t1 of any size: a 400-digit integer once ended paho's network thread
        t1 = draw(st.floats() | st.integers() | st.integers(-10**500, 10**500) | json_values)
        return p.time_request_topic(ATTACKER), json.dumps({"t1": t1}, default=str).encode()
    body = message.to_json()
    if draw(st.booleans()) and body:  # one member replaced by anything at all
        body[draw(st.sampled_from(sorted(body)))] = draw(json_values)
    return topic, json.dumps(body, default=str).encode()


topic_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="+#"),
                     max_size=60)
random_topics = st.one_of(
    st.sampled_from(["hello", "init", "fin", "time/req", "time", "chunk", "want", "ack"])
    .flatmap(lambda kind: st.tuples(st.just(kind), st.lists(
        st.sampled_from(FILE_IDS) | st.integers(0, 2**70).map(str) | topic_text, max_size=3)))
    .map(lambda t: "/".join([UP, t[0], *t[1]])),
    topic_text.map(lambda rest: f"{UP}/{rest}"))
random_payloads = st.one_of(st.binary(max_size=3000), json_values.map(
    lambda v: json.dumps(v, default=str).encode()))
messages = st.lists(st.one_of(protocol_messages(), st.tuples(random_topics, random_payloads)),
                    min_size=8, max_size=25)


@examples(5)
@given(messages)
def test_nothing_a_device_sends_stops_the_dock_serving_the_others(sent: list[tuple[str, bytes]]) -> None:
    rig = running()
    rig.send(_RIG[1], sent)
    rig.quiet(0.2)
    rig.assert_serving()
    rig.archived()  # every receipted file is what its receipt says
    rig.witness_docks()
    rig.assert_serving()
