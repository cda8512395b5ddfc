"""The paho-mqtt client factory both ends of dock sync use (the device and the dock).

:func:`client` builds a paho-mqtt 2.x client (callback API version 2) aimed at a broker —
Mosquitto with mutual TLS, or the embedded demo broker without (``dock.broker``). It lives
apart from the brokers so that the device's side of sync never imports the dock's.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

MQTTv311 = MQTTProtocolVersion.MQTTv311
MQTTv5 = MQTTProtocolVersion.MQTTv5


def client(host: str, port: int, client_id: str, *, ca: Path | str | None = None,
           cert: Path | str | None = None, key: Path | str | None = None,
           protocol: MQTTProtocolVersion = MQTTv311, keepalive: int = 30,
           clean_session: bool | None = None) -> mqtt.Client:
    """Make a paho-mqtt 2.x client (callback API version 2) aimed at ``host:port``.

    With ``ca`` the connection uses TLS and verifies the broker against that CA certificate
    (hostname included); ``cert``/``key`` add the client certificate whose CN is the
    device id. The client is returned unconnected with its destination recorded
    (``connect_async``): set callbacks, then ``loop_start()`` connects and keeps
    reconnecting in the background, or ``reconnect()`` connects synchronously.
    """
    if (cert is None) != (key is None):
        raise ValueError("cert and key go together")
    if cert is not None and ca is None:
        raise ValueError("a client certificate needs the CA to verify the broker with")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                    clean_session=clean_session)
    c.enable_logger(logging.getLogger(f"{__name__}.paho.{client_id}"))
    if ca is not None:
        c.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None,
                  keyfile=str(key) if key else None, cert_reqs=ssl.CERT_REQUIRED)
    # A dock sync session should resume quickly after a broker restart or a re-dock; the
    # default 120 s ceiling would leave a docked device idle for minutes.
    c.reconnect_delay_set(min_delay=1, max_delay=10)
    c.on_socket_open = _no_delay
    c.connect_async(host, port, keepalive)
    return c


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Send small messages at once. The protocol answers every chunk with a small ack:
    with Nagle's algorithm on, an ack waits for the TCP acknowledgement of the one before,
    which the receiver delays by up to 40 ms — and the window stalls that long."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (a test double, a Unix socket)
        pass


def close(c: mqtt.Client) -> None:
    """Stop a client started with ``loop_start()`` and end its connection cleanly.

    The network thread is stopped first (it finishes what is queued and in flight), then
    the DISCONNECT is written on this thread. The other order — ``disconnect()``, then
    ``loop_stop()`` — lets paho's thread close the socket after the DISCONNECT and go round
    its loop once more before it sees that it should stop, and it then logs "Client is not
    connected" as an ERROR at the end of a run that went well.
    """
    # loop_stop() only sets paho's stop flag and joins its thread, which sits in select()
    # for up to a second (loop_forever's timeout) before it sees the flag: every session
    # ended up to a second late. Setting the flag and waking the select through paho's own
    # wake-up socket (what publish() writes to) ends it at once; without them (another
    # paho), loop_stop() still ends it, a little later.
    c._thread_terminate = True
    wake = getattr(c, "_sockpairW", None)
    if wake is not None:
        try:
            wake.send(b"0")
        except OSError:
            pass
    c.loop_stop()
    c.disconnect()  # no network thread now: paho writes the DISCONNECT here and closes
