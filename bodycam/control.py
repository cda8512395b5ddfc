"""Hands on a simulated recorder run by hand: its buttons and its dock, from the keyboard
or from a control socket (what tests and scripts use).

Commands, one a line::

    press BUTTON            record, photo or marker: a short press
    long_press BUTTON       held past the long-press time (ends an activity, marks an incident)
    hold BUTTON SECONDS     held that long
    dock | undock           into the dock (external power, the dock's network) and out
    fault KIND [VALUE]      a fault of the simulated hardware (gnss_lost [s], battery_drain %, …)
    recover PART            camera, microphone or gnss works again
    status                  what the recorder is doing, as one line of JSON

A line holding a JSON object is read as a scenario's ``[[event]]`` table without ``at``.
Every command is checked as a scenario event is (``simulator.harness.scenario.live_event``)
and answered with one line: ``ok …``, ``error …`` or the status. Commands are carried out
on the recorder's own loop, between two frames, never from the socket's thread.

The socket is a Unix domain socket, readable and writable by its owner only: whoever may
press the officer's buttons is whoever runs the recorder.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import stat
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, TextIO

from simulator.harness.scenario import ScenarioError, ScenarioEvent, live_event

log = logging.getLogger(__name__)

MAX_LINE = 1024  # bytes; a longer line is refused, and the connection closed
REPLY_TIMEOUT_S = 30.0
# Single keys at a terminal: lower case a short press, upper case a long one.
KEYS = {"r": "press record", "R": "long_press record", "p": "press photo",
        "P": "long_press photo", "m": "press marker", "M": "long_press marker",
        "d": "dock", "u": "undock", "s": "status"}
KEY_HELP = ("keys: r/R record (short/long), p/P photo, m/M marker, d dock, u undock, "
            "s status, q quit")
FAULT_VALUE = {"gnss_lost": "duration", "clock_jump": "seconds", "battery_drain": "percent",
               "storage_fill": "mb"}


class CommandError(ValueError):
    """A command that cannot be carried out, in one line."""


def parse_command(line: str) -> dict[str, Any] | str:
    """A command line as a scenario event table, or ``"status"``."""
    text = line.strip()
    if not text:
        raise CommandError("empty command")
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"not a JSON object: {exc}") from None
        if not isinstance(raw, dict):
            raise CommandError("not a JSON object")
        return raw
    words = text.split()
    verb, args = words[0], words[1:]
    if verb == "status" and not args:
        return "status"
    if verb in ("press", "long_press") and len(args) == 1:
        return {"action": verb, "button": args[0]}
    if verb == "hold" and len(args) == 2:
        return {"action": "hold", "button": args[0], "seconds": _number(args[1])}
    if verb in ("dock", "undock") and not args:
        return {"action": verb}
    if verb == "recover" and len(args) == 1:
        return {"action": "recover", "part": args[0]}
    if verb == "fault" and len(args) in (1, 2):
        raw: dict[str, Any] = {"action": "fault", "kind": args[0]}
        if len(args) == 2:
            if args[0] not in FAULT_VALUE:
                raise CommandError(f"fault {args[0]} takes no value")
            raw[FAULT_VALUE[args[0]]] = _number(args[1])
        return raw
    raise CommandError(f"not a command: {text[:80]!r} (press|long_press BUTTON, hold BUTTON "
                       "SECONDS, dock, undock, fault KIND [VALUE], recover PART, status)")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"{text[:40]!r} is not a number") from None


class Control:
    """Commands handed from other threads to the recorder's loop, each with its answer."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, Future[str]]] = queue.Queue()

    def submit(self, line: str, timeout: float = REPLY_TIMEOUT_S) -> str:
        """Carry out ``line`` on the recorder's loop; its one-line answer."""
        answer: Future[str] = Future()
        self._queue.put((line, answer))
        try:
            return answer.result(timeout)
        except TimeoutError:
            return "error the recorder did not take the command in time"

    def drain(self, apply: Callable[[ScenarioEvent], None],
              status: Callable[[], dict[str, Any]]) -> None:
        """On the recorder's loop: carry out what has come in."""
        while True:
            try:
                line, answer = self._queue.get_nowait()
            except queue.Empty:
                return
            answer.set_result(self._carry_out(line, apply, status))

    @staticmethod
    def _carry_out(line: str, apply: Callable[[ScenarioEvent], None],
                   status: Callable[[], dict[str, Any]]) -> str:
        try:
            command = parse_command(line)
            if command == "status":
                return json.dumps(status(), separators=(",", ":"), default=str)
            event = live_event(command)
            apply(event)
        except (CommandError, ScenarioError, ValueError) as exc:
            return f"error {exc}"
        return f"ok {event.describe()}"


class ControlSocket:
    """A Unix socket whose lines go to ``control``; one thread per connection."""

    def __init__(self, path: Path, control: Control) -> None:
        self.path = Path(path)
        self._control = control
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise CommandError(f"{self.path}: exists and is not a socket; not replacing it")
            self.path.unlink()  # left by a recorder that did not stop cleanly
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created owner-only, never briefly open
        try:
            self._server.bind(str(self.path))
        finally:
            os.umask(old_umask)
        self._server.listen(4)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="control-socket", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="control-connection",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while not self._closed.is_set():
                line = reader.readline(MAX_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_LINE:
                    conn.sendall(b"error line longer than %d bytes\n" % MAX_LINE)
                    return
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    conn.sendall(b"error not UTF-8\n")
                    continue
                reply = self._control.submit(text)
                try:
                    conn.sendall(reply.encode() + b"\n")
                except OSError:
                    return

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class Keyboard:
    """Single keys at a terminal, as commands; ``q`` (or end of input) sets ``quit``."""

    def __init__(self, control: Control, quit: threading.Event,
                 stream: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
        self._control, self._quit = control, quit
        self._stream, self._out = stream, out
        self._saved: Any = None
        self._thread = threading.Thread(target=self._read, name="keyboard", daemon=True)

    def start(self) -> None:
        import termios
        import tty

        fd = self._stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)  # keys arrive one by one, Ctrl-C still interrupts
        print(KEY_HELP, file=self._out, flush=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._quit.is_set():
            key = self._stream.read(1)
            if key in ("", "q"):
                self._quit.set()
                return
            command = KEYS.get(key)
            if command is not None:
                print(f"[{key}] {self._control.submit(command)}", file=self._out, flush=True)

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self._stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


def send(path: Path, lines: list[str], timeout: float = REPLY_TIMEOUT_S) -> list[str]:
    """Send ``lines`` to the control socket at ``path``; the answers, one per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with sock.makefile("r", encoding="utf-8") as reader:
            answers = []
            for line in lines:
                sock.sendall(line.encode() + b"\n")
                answers.append(reader.readline().strip())
            return answers


def reached(status: dict[str, Any], goal: str) -> bool:
    """Whether ``status`` shows ``goal``: a state (ready, recording, docked, …) or
    ``synced`` (a sync session has ended since docking and none runs)."""
    if goal == "synced":
        return bool(status.get("sync_sessions")) and not status.get("syncing")
    return status.get("state") == goal
