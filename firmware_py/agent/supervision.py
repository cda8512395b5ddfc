"""The agent under systemd's supervision: readiness and the watchdog, told from its loop.

systemd starts the recorder as a ``Type=notify`` service with ``WatchdogSec``: it waits for
``READY=1`` before the service counts as started, and kills and restarts it (``Restart=
always``) when ``WATCHDOG=1`` does not come at least once per watchdog interval. Both go as
datagrams to the unix socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` in the
abstract namespace) — the sd_notify protocol, a few lines, written here rather than added
as a dependency. ``WATCHDOG_USEC`` gives the interval and ``WATCHDOG_PID`` the process it
is meant for.

The agent's loop calls ``ServiceNotifier.alive`` after every step, and the notifier pings
at most twice per interval (systemd's advice), so a loop that hangs — a step that never
returns — stops the pings, and systemd restarts the recorder. A process not started by
systemd (no ``NOTIFY_SOCKET``) gets a notifier that does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

log = logging.getLogger(__name__)


@dataclass
class ServiceNotifier:
    """sd_notify messages to ``address`` (None: not supervised, nothing is sent)."""

    address: str | None
    watchdog_s: float | None = None  # systemd's watchdog interval; None: no watchdog
    monotonic: Callable[[], float] = time.monotonic
    _next_ping: float = field(default=0.0, repr=False)
    _socket: socket.socket | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "ServiceNotifier":
        """The notifier systemd's variables describe; variables it set for another process
        (``WATCHDOG_PID``) or that do not parse leave the watchdog off, logged."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec:
            if pid and pid != str(os.getpid()):
                log.info("watchdog is for process %s, not this one (%d)", pid, os.getpid())
            elif usec.isdigit() and int(usec) > 0:
                watchdog_s = int(usec) / 1e6
            else:
                log.warning("WATCHDOG_USEC=%r is not a positive number of µs: no watchdog", usec)
        return cls(address, watchdog_s)

    @property
    def supervised(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one sd_notify message (``KEY=value`` lines); False if it could not go."""
        if self.address is None:
            return False
        target = self.address
        if target.startswith("@"):  # the abstract namespace: a leading NUL byte
            target = "\0" + target[1:]
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never wait for systemd: a full queue drops this message (logged) rather
                # than stall the loop it comes from.
                self._socket.setblocking(False)
            self._socket.sendto(message.encode("utf-8"), target)
            return True
        except OSError as exc:  # systemd gone or the socket replaced: the agent goes on
            log.warning("sd_notify %r to %s failed: %s", message.split("\n")[0], self.address, exc)
            return False

    def ready(self, status: str = "") -> None:
        """The recorder is up: its loop runs (systemd then counts the service started)."""
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
        self._next_ping = 0.0

    def alive(self) -> None:
        """One pass of the loop is done: ping the watchdog if half an interval has passed."""
        if self.watchdog_s is None or self.address is None:
            return
        now = self.monotonic()
        if now >= self._next_ping:
            self.notify("WATCHDOG=1")
            self._next_ping = now + self.watchdog_s / 2

    def status(self, text: str) -> None:
        """A line for ``systemctl status``."""
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
