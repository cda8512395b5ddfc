"""MQTT brokers for dock sync.

Two brokers, for two situations:

* :class:`MosquittoBroker` runs the real ``mosquitto`` binary with the shipped
  configuration (``config/mosquitto/mosquitto.conf.template`` and ``config/mosquitto/acl``):
  mutual TLS, the certificate CN as the MQTT username, and per-device topic ACLs. It is what
  production runs and what the tests run against.
* :class:`EmbeddedBroker` runs amqtt in a background thread. It exists so that the demo
  needs nothing installed. It has **no TLS, no authentication and no ACL** (anonymous
  clients may publish and subscribe anywhere) and speaks MQTT 3.1.1 only; never use it
  for real evidence.

Clients reach either through :func:`sync.mqtt.client`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import ipaddress
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import TracebackType

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from dock.pki import CA, CertFiles, issue_client, issue_server, write_crl

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config" / "mosquitto"
#: The shipped broker configuration template and ACL.
TEMPLATE = CONFIG_DIR / "mosquitto.conf.template"
ACL = CONFIG_DIR / "acl"

#: Chunks are at most 1 MiB; the limit leaves ample room so a chunk is never dropped.
MESSAGE_SIZE_LIMIT = 8 * 1024 * 1024

#: CN of the certificate the broker wrapper uses to check that the TLS listener is up.
#: The ACL grants it nothing beyond what any device gets under its own (unused) prefix.
PROBE_COMMON_NAME = "broker-probe"

_POLL_INTERVAL = 0.02  # between readiness checks; bounded by start_timeout overall
_PORT_ATTEMPTS = 3  # a free port can be taken by someone else before the broker binds it


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    The port is released before returning, so another process may take it before the
    caller binds it; the brokers below retry with a fresh port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_ACL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as dock.pki's client CNs

#: A server certificate this close to its end is issued anew when the broker starts.
RENEW_BEFORE = dt.timedelta(days=30)

#: Addresses that mean "every interface": a listener there is reached by some other name.
WILDCARDS = ("0.0.0.0", "::", "")


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a listener bound to ``host``."""
    if host in WILDCARDS:
        return "::1" if host == "::" else "127.0.0.1"
    return host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_names(host: str, names: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses the broker's certificate must carry: ``localhost`` and
    ``127.0.0.1`` always, the configured ``names`` (told apart by whether they parse as an
    IP address), and the listen address when it is a concrete IP (not a wildcard)."""
    dns: list[str] = ["localhost"]
    ips: list[str] = ["127.0.0.1"]
    for name in [*names, host]:
        if name in WILDCARDS:
            continue
        if _is_ip(name):
            text = str(ipaddress.ip_address(name))
            if text not in ips:
                ips.append(text)
        elif name.lower() not in dns:
            dns.append(name.lower())
    return dns, ips


def certificate_names(path: Path) -> tuple[list[str], list[str]] | None:
    """The DNS names and IP addresses a certificate file carries; None when it is unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    return ([n.lower() for n in san.get_values_for_type(x509.DNSName)],
            [str(a) for a in san.get_values_for_type(x509.IPAddress)])


def mosquitto_binary() -> str:
    """Path of the ``mosquitto`` executable (``/usr/sbin`` is often not on a user's PATH)."""
    found = (shutil.which("mosquitto")
             or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin"))
    if not found:
        raise FileNotFoundError("mosquitto not found on PATH or in /usr/sbin "
                                "(Debian: apt-get install mosquitto)")
    return found


def render_config(template: Path | str, port: int, ca: Path, cert: Path, key: Path,
                  acl: Path, *, bind_address: str = "127.0.0.1",
                  persistence_dir: Path | None = None,
                  message_size_limit: int = MESSAGE_SIZE_LIMIT,
                  user: str | None = None, crl: Path | None = None) -> str:
    """Fill in the broker configuration template and return the configuration text.

    ``template`` is the template's path (a :class:`~pathlib.Path`) or its text (a ``str``).
    ``ca``/``cert``/``key`` are the CA certificate clients are verified against and the
    broker's server certificate and key. ``persistence_dir`` enables Mosquitto persistence
    there; ``None`` disables it. ``user`` is the account Mosquitto drops to when started
    as root; by default the current user, so a broker we start can read keys we wrote 0600.
    ``crl`` is the CA's revocation list (PEM) for ``crlfile``; without it nothing is revoked.
    """
    text = template.read_text() if isinstance(template, Path) else template
    values = {
        "port": str(port),
        "bind_address": bind_address,
        "cafile": str(Path(ca).resolve()),
        "certfile": str(Path(cert).resolve()),
        "keyfile": str(Path(key).resolve()),
        "acl_file": str(Path(acl).resolve()),
        "message_size_limit": str(message_size_limit),
        "user": user or pwd.getpwuid(os.geteuid()).pw_name,
    }
    if persistence_dir is not None:
        values["persistence_location"] = str(Path(persistence_dir).resolve())
    if crl is not None:
        values["crlfile"] = str(Path(crl).resolve())
    for name, value in values.items():
        # Mosquitto's config is line based and splits on spaces: such a value would
        # silently become a different option or a truncated path.
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{name} {value!r} cannot be written into a mosquitto.conf")
    crlfile = values.pop("crlfile", None)
    values["crl"] = (f"crlfile {crlfile}" if crlfile is not None
                     else "# crlfile: none given, no certificate is revoked")
    location = values.pop("persistence_location", None)
    # Mosquitto joins the location and file name verbatim: it needs the trailing slash.
    values["persistence"] = ("persistence false" if location is None
                             else f"persistence true\npersistence_location {location}/")
    return Template(text).substitute(values)


class MosquittoBroker:
    """A private Mosquitto instance on a loopback port, configured from the shipped files.

    On start it issues the broker's server certificate (and a probe client certificate)
    from ``ca`` into ``workdir``, copies the ACL there, renders ``mosquitto.conf`` and runs
    ``mosquitto -c`` until :meth:`stop`. :meth:`start` returns once a TLS client with a
    certificate from ``ca`` completes a handshake, so the broker is usable at that point.

    Everything Mosquitto logs is kept in ``workdir/mosquitto.log`` (see :attr:`log`) so a
    failing test can show what the broker saw. Use as a context manager; if ``workdir``
    was not given, a temporary directory is created and removed on exit.
    """

    def __init__(self, ca: CA, workdir: Path | str | None = None, *, port: int = 0,
                 host: str = "127.0.0.1", names: Sequence[str] = (),
                 deny: Sequence[str] = (), template: Path = TEMPLATE, acl: Path = ACL,
                 binary: str | None = None, persistence: bool = False,
                 start_timeout: float = 10.0, crl: Path | None = None) -> None:
        self.ca = ca
        #: The revocation list the broker reads (``crlfile``, copied into the work directory
        #: at each start and reload); None: an empty one from ``ca``, so the shipped
        #: configuration always has one.
        self.crl = Path(crl) if crl is not None else None
        self.host = host  # the listen address (``0.0.0.0``: every interface)
        #: What the server certificate names (DNS names, IP addresses): see server_names.
        self.names = server_names(host, names)
        #: Client names (device ids) the ACL gives no rights at all: withdrawn devices.
        self.deny = tuple(deny)
        for name in self.deny:
            if not _ACL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} cannot be written into an ACL")
        self.port = port
        self.template = template
        self.acl_source = acl
        self.binary = binary or mosquitto_binary()
        self.persistence = persistence
        self.start_timeout = start_timeout
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix="bodycam-mosquitto-"))
        self._auto_port = port == 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: CertFiles | None = None
        self._probe: CertFiles | None = None
        self._final_log: str | None = None

    # -- files ----------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients use to verify the broker."""
        return self.ca.cert_path

    @property
    def log(self) -> str:
        """Everything the broker has logged so far (across restarts)."""
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches the broker (loopback for a wildcard)."""
        return connect_host(self.host)

    @property
    def server_cert(self) -> Path:
        return self.workdir / "tls" / "server.crt"

    def _server_certificate(self, tls: Path) -> CertFiles:
        """The broker's certificate: the one in ``tls/`` while it names everything wanted
        and comes from this CA, else a new one."""
        files = CertFiles(tls / "server.crt", tls / "server.key")
        have = certificate_names(files.cert)
        if have is not None and files.key.exists():
            dns, ips = self.names
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            fresh = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > RENEW_BEFORE
            if set(dns) <= set(have[0]) and set(ips) <= set(have[1]) and fresh:
                try:
                    cert.verify_directly_issued_by(self.ca.certificate)
                    return files
                except (ValueError, TypeError, InvalidSignature):  # another CA's
                    pass
            log.info("server certificate %s lacks a name or is not this CA's: issuing anew",
                     files.cert)
        return issue_server(self.ca, tls, hostnames=self.names[0], ips=self.names[1])

    def _prepare(self) -> None:
        tls = self.workdir / "tls"
        if self._server is None:
            self._server = self._server_certificate(tls)
            self._probe = issue_client(self.ca, tls, PROBE_COMMON_NAME)
        # A copy, so the running broker does not change under an edit of the shipped file.
        acl = self.acl_source.read_text()
        if self.deny:
            # Mosquitto checks a user's denials before any pattern grants: these clients
            # may connect (their certificates stay valid: no CRL reload without a restart)
            # but neither publish nor subscribe anything.
            acl += ("\n# Withdrawn devices (bodycam dock withdraw): no rights at all.\n"
                    + "".join(f"user {name}\ntopic deny #\ntopic deny $SYS/#\n"
                              for name in self.deny))
        (self.workdir / "acl").write_text(acl)
        persistence_dir = self.workdir / "persistence" if self.persistence else None
        if persistence_dir is not None:
            persistence_dir.mkdir(exist_ok=True)
        # The broker reads its CRL from one path for its whole life (a reload re-reads that
        # file, it does not switch to another): a copy of the one given, or an empty one.
        crl = tls / "crl.pem"
        if self.crl is None:
            write_crl(self.ca, crl, [])
        else:
            tmp = crl.with_name(".crl.pem.tmp")
            shutil.copyfile(self.crl, tmp)
            os.replace(tmp, crl)
        self.conf_path.write_text(render_config(
            self.template, self.port, self.ca.cert_path, self._server.cert, self._server.key,
            self.workdir / "acl", bind_address=self.host, persistence_dir=persistence_dir,
            crl=crl))

    # -- lifecycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start Mosquitto and wait until it accepts TLS connections."""
        if self.running:
            raise RuntimeError("broker already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self.port == 0:
                self.port = free_port(self.host)
            self._prepare()
            try:
                self._spawn_and_wait()
                return
            except _PortTaken:
                if not self._auto_port or attempt == _PORT_ATTEMPTS:
                    raise RuntimeError(f"port {self.port} is in use\n{self._log_tail()}")
                log.warning("port %d was taken before mosquitto bound it; retrying", self.port)
                self.port = 0

    def _spawn_and_wait(self) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            # The child keeps its own descriptor; ours can be closed right away.
            self._proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)],
                                          stdin=subprocess.DEVNULL, stdout=log_file,
                                          stderr=subprocess.STDOUT)
        log.info("started mosquitto pid %d on %s:%d", self._proc.pid, self.host, self.port)
        try:
            self._wait_ready(log_offset)
        except BaseException:
            self.stop()  # never leave a half-started broker behind
            raise

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                if "Address already in use" in self.log[log_offset:]:
                    raise _PortTaken()
                raise RuntimeError(f"mosquitto exited with status {code} during start\n"
                                   f"{self._log_tail()}")
            if self._probe_tls():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not accept TLS on {self.host}:{self.port} "
                                   f"within {self.start_timeout} s\n{self._log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def _probe_tls(self) -> bool:
        """True once a mutually authenticated TLS handshake with the listener succeeds."""
        assert self._probe is not None
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        ctx.load_cert_chain(str(self._probe.cert), str(self._probe.key))
        # TLS 1.2 makes the server's verdict on our certificate part of the handshake; under
        # 1.3 a rejected client certificate only shows after the handshake has "succeeded".
        # (A template restricted to tlsv1.3 would therefore fail this probe loudly.)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            with socket.create_connection((self.connect_host, self.port), timeout=1.0) as raw, \
                    ctx.wrap_socket(raw, server_hostname=self.connect_host) as tls:
                # A clean close_notify keeps an OpenSSL "unexpected eof" out of the log;
                # whether the broker answers it in kind does not matter.
                try:
                    tls.unwrap()
                except OSError:  # includes ssl.SSLError
                    pass
                return True
        except ssl.SSLError as exc:
            # The listener is up but refuses us: a configuration error, not a slow start.
            raise RuntimeError(f"mosquitto rejected the probe TLS handshake: {exc}\n"
                               f"{self._log_tail()}") from exc
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``). Files are kept."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto pid %d ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()
        log.info("mosquitto pid %d stopped (status %s)", proc.pid, proc.returncode)

    def reload(self) -> None:
        """Render the configuration, ACL and revocation list again (``deny``, ``crl`` as
        they are now) and have the running broker read them (SIGHUP): a certificate put on
        the CRL is refused at its next connect, a device denied loses its rights at its next
        publish — without dropping anyone else's connection."""
        if not self.running:
            raise RuntimeError("broker not running")
        for name in self.deny:
            if not _ACL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} cannot be written into an ACL")
        self._prepare()
        assert self._proc is not None
        offset = len(self.log)
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + self.start_timeout
        while "Reloading config" not in self.log[offset:]:  # its answer to the signal
            if time.monotonic() > deadline or not self.running:
                raise RuntimeError(f"mosquitto did not reload its configuration\n"
                                   f"{self._log_tail()}")
            time.sleep(_POLL_INTERVAL)
        log.info("mosquitto pid %d reloaded its configuration", self._proc.pid)

    def restart(self) -> None:
        """Stop and start again on the same port; connected clients see a dropped link."""
        self.stop()
        # The port is fixed now: clients are configured with it and must find it again.
        self._auto_port = False
        self.start()

    def close(self) -> None:
        """Stop the broker and remove the temporary work directory if we created it."""
        self.stop()
        if self._owns_workdir and self.workdir.exists():
            self._final_log = self.log  # keep it readable for a test's failure report
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ will not run: remove the temporary directory here
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<MosquittoBroker {self.host}:{self.port} {state}>"


class LoopbackMosquitto(MosquittoBroker):
    """Mosquitto for the demo on one machine: loopback only, no TLS, anonymous clients —
    the same trust as :class:`EmbeddedBroker`, a hundred times its speed. The rest of the
    configuration (message size limit, no Nagle, logging) is the shipped one's."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 workdir: Path | str | None = None, binary: str | None = None,
                 start_timeout: float = 10.0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("a broker without TLS or ACL listens on loopback only")
        super().__init__(None, workdir, port=port, host=host,  # type: ignore[arg-type]
                         binary=binary, start_timeout=start_timeout)

    def _prepare(self) -> None:
        self.conf_path.write_text("\n".join([
            "per_listener_settings false",
            "allow_anonymous true",
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "persistence false",
            f"message_size_limit {MESSAGE_SIZE_LIMIT}",
            "set_tcp_nodelay true",
            "max_queued_messages 0",  # a slow subscriber's QoS 1 messages are kept, not dropped
            "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
            "connection_messages true",
            f"listener {self.port} {self.host}", "protocol mqtt", ""]))

    @property
    def ca_file(self) -> Path:
        raise AttributeError("a loopback demo broker has no TLS")

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                if "Address already in use" in self.log[log_offset:]:
                    raise _PortTaken()
                raise RuntimeError(f"mosquitto exited with status {self._proc.returncode} "
                                   f"during start\n{self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not listen on {self.host}:{self.port} "
                                   f"within {self.start_timeout} s\n{self._log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<LoopbackMosquitto {self.host}:{self.port} {state}>"


DEMO_BROKER_ENV = "BODYCAM_DEMO_BROKER"


def local_broker(host: str = "127.0.0.1", port: int = 0) -> LoopbackMosquitto | EmbeddedBroker:
    """The demo's broker on this machine: Mosquitto on loopback when it is installed (the
    demo's docking then runs at hundreds of MB/s), amqtt in a thread when it is not (a few
    MB/s, nothing to install). Neither has TLS or an ACL. Not started.
    ``BODYCAM_DEMO_BROKER=amqtt`` in the environment picks amqtt even when Mosquitto is
    there (to measure or test the fallback)."""
    if os.environ.get(DEMO_BROKER_ENV, "").strip().lower() == "amqtt":
        return EmbeddedBroker(host, port)
    try:
        return LoopbackMosquitto(host, port)
    except FileNotFoundError:
        log.info("mosquitto is not installed: the demo uses the embedded amqtt broker")
        return EmbeddedBroker(host, port)


class _PortTaken(Exception):
    """Mosquitto could not bind the chosen port."""


@dataclass
class _EmbeddedState:
    """What the broker thread hands back to the thread that started it."""

    loop: asyncio.AbstractEventLoop | None = None
    stop_event: asyncio.Event | None = None
    error: BaseException | None = None


SHUTDOWN_GRACE_S = 3.0  # the embedded broker's own shutdown, before its tasks are cancelled


class EmbeddedBroker:
    """The zero-install demo broker: amqtt on its own asyncio loop in a background thread.

    **Demo only.** Plain TCP, MQTT 3.1.1, anonymous clients allowed, no ACL: any client can
    read and write every topic, and nothing is encrypted. Production and the test suite use
    :class:`MosquittoBroker`.

    :meth:`start` returns once the listener is bound; :meth:`stop` shuts amqtt down, lets
    ``asyncio.run`` cancel whatever tasks remain and close the loop, and joins the thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 start_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self._auto_port = port == 0
        self._thread: threading.Thread | None = None
        self._state = _EmbeddedState()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the broker thread and wait until the listener accepts connections."""
        if self.running:
            raise RuntimeError("broker already running")
        # A device checks that its dock is reachable with a bare TCP connection before it
        # starts a session; amqtt logs each such probe as an ERROR. Its own failures still
        # surface through ``start`` and the clients.
        logging.getLogger("amqtt.broker").setLevel(logging.CRITICAL)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self.port == 0:
                self.port = free_port(self.host)
            try:
                self._start_once()
                log.info("embedded amqtt broker listening on %s:%d (no TLS, no ACL: demo only)",
                         self.host, self.port)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or not self._auto_port \
                        or attempt == _PORT_ATTEMPTS:
                    raise
                log.warning("port %d was taken before amqtt bound it; retrying", self.port)
                self.port = 0

    def _start_once(self) -> None:
        ready = threading.Event()
        self._state = _EmbeddedState()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        name=f"amqtt-broker-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(self.start_timeout):
            self.stop()
            raise TimeoutError(f"amqtt did not start within {self.start_timeout} s")
        if self._state.error is not None:
            self._thread.join(self.start_timeout)
            self._thread = None
            error = self._state.error
            # amqtt wraps the bind failure; surface the OSError so start() can retry.
            cause = error.__cause__
            raise cause if isinstance(cause, OSError) else error

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # reported to start() rather than lost in the thread
            if not ready.is_set():
                self._state.error = exc
                ready.set()
            else:
                log.exception("embedded broker thread failed")

    async def _serve(self, ready: threading.Event) -> None:
        # Imported here: amqtt pulls in a sizeable dependency tree that only the demo needs.
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only anonymous auth: the default set adds a $SYS publisher and a per-packet
            # logger, which would cost throughput and keep extra timers alive.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        self._state.loop = asyncio.get_running_loop()
        self._state.stop_event = asyncio.Event()
        ready.set()
        try:
            await self._state.stop_event.wait()
        finally:
            try:
                # amqtt can wait for ever on a client cut off mid-message; give it a few
                # seconds, then asyncio.run cancels what is left and closes the loop.
                await asyncio.wait_for(broker.shutdown(), SHUTDOWN_GRACE_S)
            except asyncio.TimeoutError:
                log.warning("amqtt did not shut down within %g s; cancelling its tasks",
                            SHUTDOWN_GRACE_S)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and join its thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_event = self._state.loop, self._state.stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"embedded broker thread did not stop within {timeout} s")
        log.info("embedded amqtt broker on %s:%d stopped", self.host, self.port)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self.host}:{self.port} {state}>"
