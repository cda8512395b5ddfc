"""``bodycam dock …``: the docking station's service and the custodians' commands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bodycam import station_commands
from bodycam.options import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from dock import config as dock_config
from bodycam import copy_commands
from dock import ledger, registry, revocation
from dock.timestamping import Timestamper
from dock.archive import Archive
from dock.broker import WILDCARDS, EmbeddedBroker, MosquittoBroker, connect_host
from dock.enrollment import (EnrolmentError, check_device_id, check_unit, dock_ca, dock_client, dock_key,
                             enroll_device)
from dock.enrolment_server import CodeBook, EnrolmentServer
from dock.service import DeviceProgress, DockService, serve_until
from firmware_py.evidence.keys import check_apart, registered_key


def register(sub: Any) -> None:
    dock = sub.add_parser("dock", help="the docking station: sync service, enrolment, ledger",
                          description="Run the dock service (default), or manage devices.")
    dock.add_argument("--config", type=Path, metavar="FILE",
                      help="dock configuration (default: config/dock.toml)")
    dock.set_defaults(func=cmd_dock_serve, seconds=None, json=False)
    dock_sub = dock.add_subparsers(dest="dock_command", metavar="ACTION")
    d = dock_sub.add_parser("serve", help="run the sync service until interrupted")
    d.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    d.set_defaults(func=cmd_dock_serve)
    d = dock_sub.add_parser(
        "enroll", help="enrol a device whose root the dock can write (everything it needs)",
        description="Enrol a device (R18.3) into DIR, which `bodycam run --root DIR` then uses "
        "as it is: its Ed25519 signing key made there and registered with the agency, the "
        "agency's public key, enrollment.json (id, unit), an MQTT client certificate from the "
        "dock's CA for a key made there, the CA certificate and the dock's receipt key. For a "
        "recorder on the dock's network, use `bodycam dock enroll-code` instead "
        "(docs/enrolment.md).")
    d.add_argument("--device-root", type=Path, required=True, metavar="DIR",
                   help="the recorder's device root")
    d.add_argument("--device-id", required=True, metavar="ID",
                   help="1-32 letters, digits, '_', '-' (not 'dock' or 'incoming')")
    d.add_argument("--unit", required=True, metavar="UNIT", help="the unit it is enrolled to")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dock_enroll)
    d = dock_sub.add_parser(
        "enroll-code", help="a one-time code to enrol a recorder over the dock's network",
        description="Make a one-time enrolment code for DEVICE-ID (single use, expires, burnt "
        "after 5 wrong tries; the dock keeps only its hash). On the recorder, with `bodycam "
        "dock serve` running: bodycam enroll --dock HOST[:PORT] --code CODE --root DIR. The "
        "code also pins the dock's CA. See docs/enrolment.md.")
    d.add_argument("--device-id", required=True, metavar="ID",
                   help="1-32 letters, digits, '_', '-' (not 'dock' or 'incoming')")
    d.add_argument("--unit", required=True, metavar="UNIT", help="the unit it is enrolled to")
    d.add_argument("--valid-minutes", type=float, default=15.0, metavar="M",
                   help="how long the code may be used (default 15)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--quiet", action="store_true",
                   help="print the code alone (for a script: CODE=$(bodycam dock … --quiet))")
    d.set_defaults(func=cmd_dock_enroll_code)
    d = dock_sub.add_parser("assign", help="check a device out to an officer (R4.1)")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("officer", metavar="OFFICER")
    d.set_defaults(func=cmd_dock_assign)
    d = dock_sub.add_parser("release", help="check a device back in (R4.1)")
    d.add_argument("device", metavar="DEVICE")
    d.set_defaults(func=cmd_dock_release)
    d = dock_sub.add_parser("ledger", help="who had which device, when, what was recorded (R4.2)")
    d.add_argument("--csv", action="store_true", help="CSV for export (R4.3)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dock_ledger)
    d = dock_sub.add_parser("overdue", help="evidence not stored in time, devices not docked (R13.4)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dock_overdue)
    _register_withdraw(dock_sub)
    station_commands.register(dock_sub)
    copy_commands.register(dock_sub)
    _register_revoke(dock_sub)
    d = dock_sub.add_parser(
        "clear-claims", help="clear a device's offers whose files never came (a custodian's call)",
        description="Clear what DEVICE offered but never sent: its unconfirmed claims (hellos "
        "never confirmed as a docking by a charging signal or a received file) and the "
        "overdue offers of files that never arrived (of one activity with --activity). "
        "Recorded in the ledger with the reason.")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("--activity", metavar="ACTIVITY")
    d.add_argument("--reason", required=True)
    d.set_defaults(func=cmd_dock_clear_claims)
    _config_after_action(dock_sub)


def _register_withdraw(dock_sub: Any) -> None:
    d = dock_sub.add_parser(
        "withdraw", help="take a device off the enrolled devices (lost, stolen, re-keyed)",
        description="Withdraw an enrolled device: its record moves to "
        "devices/withdrawn/DEVICE-<UTC>.json (its public key stays, so the evidence it sealed "
        "still verifies), the dock ignores whatever it sends from then on, and the broker "
        "started by `bodycam dock serve` gives it no rights. Enrol it again afterwards with "
        "`bodycam dock enroll` (a new key).")
    d.add_argument("device", metavar="DEVICE")
    d.set_defaults(func=cmd_dock_withdraw)


def cmd_dock_withdraw(args: argparse.Namespace) -> int:
    config = dock_config.load(args.config)
    dock_dir = Path(config.dock.dir)
    try:
        moved = registry.withdraw(dock_dir, args.device)
    except registry.RegistryError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"{args.device} withdrawn at {dock_dir}: its record is now {moved} (its key still "
          f"verifies what it sealed); the dock ignores it from now on, and a broker started "
          f"by `bodycam dock serve` from now on refuses it. Enrol it again with "
          f"`bodycam dock enroll`.")
    return EXIT_OK


def _register_revoke(dock_sub: Any) -> None:
    d = dock_sub.add_parser(
        "revoke", help="revoke a stolen or lost device's certificate (CRL), withdraw it",
        description="Revoke every client certificate the dock issued to DEVICE: they go on "
        "the dock CA's revocation list (ca/crl.pem), which the Mosquitto of `bodycam dock "
        "serve` reads — a running one reloads it within a second — so the device is refused "
        "at connect; the device is withdrawn (the dock refuses whatever it sends, its key "
        "still verifies what it sealed), and the revocation goes into the ledger with its "
        "reason.")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("--reason", required=True, help="why (stolen, lost, compromised, …)")
    d.set_defaults(func=cmd_dock_revoke)


def cmd_dock_revoke(args: argparse.Namespace) -> int:
    _, dock_dir, archive = _dock_setup(args)
    try:
        done = revocation.revoke(dock_dir, args.device, args.reason)
        ledger.record_event(archive, args.device, "revoked",
                            f"{done.reason}; certificates {', '.join(done.serials) or 'none'}")
    except (revocation.RevocationError, EnrolmentError) as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        archive.close()
    print(f"{args.device} revoked ({done.reason}): {len(done.serials)} certificate(s) on the "
          f"CRL {dock_dir / revocation.CRL}; {'withdrawn, ' if done.withdrawn else ''}the dock "
          f"refuses it from now on; the broker of a running `bodycam dock serve` reloads the "
          f"CRL within a second and refuses it at connect.")
    return EXIT_OK


def cmd_dock_clear_claims(args: argparse.Namespace) -> int:
    _, _, archive = _dock_setup(args)
    try:
        cleared = archive.clear_claims(args.device, args.activity)
        where = f" of activity {args.activity}" if args.activity else ""
        ledger.record_event(archive, args.device, "claims_cleared",
                            f"{cleared} offers{where} never sent: {args.reason}")
    finally:
        archive.close()
    print(f"{args.device}: {cleared} offers{where} cleared ({args.reason})")
    return EXIT_OK


def _config_after_action(dock_sub: Any) -> None:
    """``--config`` goes before the action or after it: ``bodycam dock --config F serve`` and
    ``bodycam dock serve --config F`` alike. (After the action it must not reset a value
    given before it, hence no default there.)"""
    for action in dock_sub.choices.values():
        action.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                            help="dock configuration (default: config/dock.toml)")


def _dock_setup(args: argparse.Namespace):
    config = dock_config.load(args.config)
    dock_dir = Path(config.dock.dir)
    dock_dir.mkdir(parents=True, exist_ok=True)
    archive = Archive(Path(config.dock.archive), dock_dir, dock_key(dock_dir), config.dock.id)
    return config, dock_dir, archive


def cmd_dock_enroll(args: argparse.Namespace) -> int:
    # Every check before anything is written, at the dock or in the device root.
    config = dock_config.load(args.config)
    check_device_id(args.device_id)
    check_unit(args.unit)
    check_apart(args.device_root, Path(config.dock.dir))
    config, dock_dir, archive = _dock_setup(args)
    archive.close()
    result = enroll_device(args.device_root, dock_dir, args.device_id, args.unit)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"enrolled {result['device']} ({result['unit']}) at {dock_dir}: device key "
              f"{result['device_key_id']}, client certificate {result['mqtt_certificate']}; "
              f"run it with bodycam run --root {args.device_root}")
    return EXIT_OK


def cmd_dock_enroll_code(args: argparse.Namespace) -> int:
    config = dock_config.load(args.config)
    check_device_id(args.device_id)  # before anything is written
    check_unit(args.unit)
    dock_dir = Path(config.dock.dir)
    ca = dock_ca(dock_dir)
    code, expires = CodeBook(dock_dir).issue(args.device_id, args.unit,
                                             ca.cert_path.read_bytes(), args.valid_minutes)
    address = f"{config.enrolment.host}:{config.enrolment.port}"
    until = datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds")
    registered = registered_key(dock_dir, args.device_id)
    if args.json:
        print(json.dumps({"device": args.device_id, "unit": args.unit, "code": str(code),
                          "expires_at": until, "enrolment": address,
                          "already_enrolled_key": registered}, indent=2, ensure_ascii=False))
        return EXIT_OK
    if args.quiet:
        print(code)
        return EXIT_OK
    print(f"enrolment code for {args.device_id} ({args.unit}), single use, valid until {until}:")
    print(f"  {code}")
    print(f"on the recorder, while `bodycam dock serve` runs (enrolment at {address}"
          f"{'' if config.enrolment.enabled else ', now disabled in [enrolment]'}):")
    port = f":{config.enrolment.port}" if config.enrolment.port else "[:PORT]"
    print(f"  bodycam enroll --dock HOST{port} --code {code} --root DIR")
    if registered is not None:
        print(f"note: {args.device_id} is already enrolled with key {registered}: only the "
              "device holding that key can use this code")
    return EXIT_OK


def cmd_dock_assign(args: argparse.Namespace) -> int:
    _, dock_dir, archive = _dock_setup(args)
    if not registry.is_enrolled(dock_dir, args.device):
        archive.close()
        print(f"bodycam: device {args.device} is not enrolled at {dock_dir}: enrol it first "
              f"with `bodycam dock enroll --device-root DIR --device-id {args.device} "
              f"--unit UNIT`", file=sys.stderr)
        return EXIT_PROBLEM
    try:
        ledger.assign(archive, args.device, args.officer)
    except ledger.LedgerError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        archive.close()
    print(f"{args.device} checked out to {args.officer}")
    return EXIT_OK


def cmd_dock_release(args: argparse.Namespace) -> int:
    _, _, archive = _dock_setup(args)
    try:
        officer = ledger.release(archive, args.device)
    except ledger.LedgerError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        archive.close()
    print(f"{args.device} checked in from {officer}")
    return EXIT_OK


def cmd_dock_ledger(args: argparse.Namespace) -> int:
    _, _, archive = _dock_setup(args)
    try:
        if args.csv:
            sys.stdout.write(ledger.csv_text(archive))
        elif args.json:
            print(json.dumps([asdict(r) for r in ledger.rows(archive)], indent=1))
        else:
            for r in ledger.rows(archive):
                print(f"{r.device:<10} {r.officer:<10} out {r.assigned_at}  in {r.released_at or '—':<25} "
                      f"{r.activities} activities, {r.segments} segments, {r.photos} photos, "
                      f"{r.interruptions} interruptions")
            for e in ledger.events(archive):
                print(f"{e.device:<10} {e.event.upper():<10} at {e.at}  {e.detail}")
    finally:
        archive.close()
    return EXIT_OK


def cmd_dock_overdue(args: argparse.Namespace) -> int:
    config, _, archive = _dock_setup(args)
    try:
        found = archive.overdue(config.deadline.upload_hours, time.time(),
                                config.deadline.dock_every_hours)
        claims = archive.unconfirmed_claims()
    finally:
        archive.close()
    if args.json:
        print(json.dumps({**found, "unconfirmed_claims": claims}, indent=1))
    else:
        for a in found["activities"]:
            missing = sum(f["stored_at"] is None for f in a["files"])
            print(f"OVERDUE  {a['device']} activity {a['activity']}: {len(a['files'])} files not "
                  f"stored within {config.deadline.upload_hours:g} h of return ({missing} still missing)")
        for d in found["devices"]:
            print(f"NOT DOCKED  {d['device']} for more than {config.deadline.dock_every_hours:g} h")
        for c in claims:  # a hello never confirmed as a docking: no deadline runs for it
            print(f"UNCONFIRMED  {c['device']} activity {c['activity']}: {c['files']} files "
                  f"offered but never sent, in no confirmed docking (clear with `bodycam dock "
                  f"clear-claims {c['device']}`)")
        if not found["activities"] and not found["devices"]:
            print("nothing overdue")
    return EXIT_PROBLEM if found["activities"] or found["devices"] else EXIT_OK


def progress_printer(every_s: float = 1.0) -> Callable[[DeviceProgress], None]:
    """A custodian's view of the dock: per device at most a line a second while files come
    in (the dock reports after every chunk), and always the line that completes a device."""
    last: dict[str, float] = {}
    finished: dict[str, float] = {}  # device → the session (its start) already reported done

    def show(progress: DeviceProgress) -> None:
        now = time.monotonic()
        done = progress.files > 0 and progress.session_receipts >= progress.files
        if done and finished.get(progress.device) == progress.started:
            return
        if done or now - last.get(progress.device, -every_s) >= every_s:
            last[progress.device] = now
            if done:
                finished[progress.device] = progress.started
            print(progress.line(), flush=True)

    return show


def cmd_dock_serve(args: argparse.Namespace) -> int:
    config, dock_dir, archive = _dock_setup(args)
    archive.close()
    enrolment = None
    if config.enrolment.enabled:  # bound first: a port in use stops the dock before it starts
        try:
            enrolment = EnrolmentServer(
                dock_dir, config.enrolment.host, config.enrolment.port,
                attempts_per_minute=config.enrolment.attempts_per_minute,
                on_event=lambda line: print(line, flush=True))
        except OSError as exc:
            print(f"bodycam: enrolment endpoint cannot listen on {config.enrolment.host}:"
                  f"{config.enrolment.port} ({exc.strerror or exc}); set [enrolment] port, or "
                  "enabled = false, in the dock configuration", file=sys.stderr)
            return EXIT_USAGE
    broker: EmbeddedBroker | MosquittoBroker | None = None
    tls = None
    where = ""
    if config.broker.mode == "embedded":
        broker = EmbeddedBroker(config.broker.host, config.broker.port)
        broker.start()
        host, port = connect_host(config.broker.host), broker.port
        where = (f"devices connect to {_addresses([config.broker.host], port)} over plain MQTT "
                 f"(embedded broker: no TLS, no ACL — demo only)")
    else:
        cert = dock_client(dock_dir)
        if config.broker.mode == "mosquitto":
            broker = MosquittoBroker(dock_ca(dock_dir), dock_dir / "broker",
                                     host=config.broker.host, port=config.broker.port,
                                     names=config.broker.names,
                                     deny=sorted(registry.withdrawn_devices(dock_dir)),
                                     crl=revocation.write_crl(dock_dir))
            broker.start()
            host, port, ca = broker.connect_host, broker.port, broker.ca_file
            dns, ips = broker.names
            reach = [n for n in [*config.broker.names, config.broker.host]
                     if n not in WILDCARDS] or [*dns, *ips]
            where = (f"devices connect to {_addresses(reach, port)} with mutual TLS: the "
                     f"broker's certificate is from the dock's CA {ca} and names "
                     f"{', '.join([*dns, *ips])}")
            if config.broker.host in WILDCARDS:
                print(f"bodycam: warning: the broker listens on {config.broker.host or '0.0.0.0'} "
                      f"(every interface); devices must reach it by one of the certificate's "
                      f"names ({', '.join([*dns, *ips])}) — add the dock's names to broker.names "
                      f"in {args.config or 'config/dock.toml'}", file=sys.stderr, flush=True)
        else:
            host, port, ca = config.broker.host, config.broker.port, dock_ca(dock_dir).cert_path
            where = (f"devices connect to the external broker at {_addresses([host], port)} "
                     f"with mutual TLS (the dock's CA {ca})")
        tls = (ca, cert.cert, cert.key)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = DockService(dock_dir, Path(config.dock.archive), host, port, tls=tls,
                          dock_id=config.dock.id, on_progress=progress_printer(),
                          quota=config.limits.quota())
    if config.timestamp.url:  # an external TSA in place of the unit's own
        service.archive.timestamper = Timestamper(dock_dir, config.timestamp.url)
    service.start()
    through = (f"listening through {config.broker.mode} broker at "
               f"{_addresses([config.broker.host], port)}" if broker is not None
               else "through an external broker")
    print(f"dock {config.dock.id} {through}: {where}; archive {config.dock.archive}", flush=True)
    if enrolment is not None:
        enrolment.start()
        print(f"enrolment over HTTPS at {enrolment.host}:{enrolment.port} "
              "(codes: bodycam dock enroll-code)", flush=True)
    failed = None
    watch = (_revocation_watch(dock_dir, broker) if isinstance(broker, MosquittoBroker)
             else None)
    try:
        failed = serve_until(service, stop, args.seconds, every_poll=watch)
    except KeyboardInterrupt:
        pass
    finally:
        if enrolment is not None:
            enrolment.stop()
        service.stop()
        if broker is not None:
            broker.stop()
    if failed is not None:
        # Exit non-zero, so that the supervisor (systemd's Restart=on-failure) starts the
        # dock again: never a live process that serves no one.
        print(f"bodycam: the dock stopped serving: {failed}; exiting for a restart",
              file=sys.stderr, flush=True)
        return EXIT_PROBLEM
    return EXIT_OK


def _revocation_watch(dock_dir: Path, broker: MosquittoBroker) -> Callable[[], None]:
    """A check for serve's loop: when a device was revoked or withdrawn since the broker
    read its files, render the CRL and ACL again and have the broker reload them — the
    revoked device is refused at its next connect, without a restart."""
    def state() -> tuple[float, ...]:
        paths = [dock_dir / revocation.REVOKED, dock_dir / "devices" / "withdrawn"]
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)

    seen = [state()]

    def check() -> None:
        now = state()
        if now == seen[0]:
            return
        seen[0] = now
        broker.crl = revocation.write_crl(dock_dir)
        broker.deny = tuple(sorted(registry.withdrawn_devices(dock_dir)))
        broker.reload()
        print("revocations or withdrawals changed: the broker reloaded its CRL and ACL",
              flush=True)

    return check


def _addresses(hosts: list[str], port: int) -> str:
    return " or ".join(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)
