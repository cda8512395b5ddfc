"""``bodycam dock web`` and ``bodycam dock web-user``: the custodians' web station and its
accounts (the station itself is in ``station/``)."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

from bodycam.options import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from dock import config as dock_config
from station import accounts
from station.settings import StationSettings
from station.store import Store


def register(dock_sub: Any) -> None:
    d = dock_sub.add_parser(
        "web", help="serve the custodians' web station over HTTPS",
        description="Serve the web station on the dock's archive: activities and playback, "
        "filing by two custodians, work record review, retention and purge, the ledger, the "
        "access log and the yearly review. HTTPS with a certificate from the dock's CA "
        "(trust <dock>/ca/ca.crt in the browsers). Add the first account with `bodycam dock "
        "web-user add NAME --role admin`.")
    d.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every interface; default 127.0.0.1)")
    d.add_argument("--port", type=int, default=8443, help="port (default 8443)")
    d.add_argument("--name", action="append", default=[], metavar="NAME",
                   help="a host name or address browsers use; the certificate names it "
                   "(repeatable)")
    d.set_defaults(func=cmd_web)
    d = dock_sub.add_parser("web-user", help="accounts of the web station",
                            description="Add or list the web station's accounts. Roles: "
                            + ", ".join(accounts.ROLES) + ".")
    users = d.add_subparsers(dest="web_user_action", metavar="ACTION", required=True)
    a = users.add_parser("add", help="add an account (the password is read from stdin with "
                         "--password-stdin, or made and printed once)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", required=True, choices=accounts.ROLES)
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input (first line)")
    a.set_defaults(func=cmd_web_user_add)
    a = users.add_parser("list", help="list the accounts")
    a.set_defaults(func=cmd_web_user_list)


def settings_from(args: argparse.Namespace) -> StationSettings:
    config = dock_config.load(args.config)
    return StationSettings(archive=Path(config.dock.archive), dock_dir=Path(config.dock.dir),
                           dock_id=config.dock.id, upload_hours=config.deadline.upload_hours,
                           dock_every_hours=config.deadline.dock_every_hours,
                           host=getattr(args, "host", "127.0.0.1"),
                           port=getattr(args, "port", 8443),
                           names=tuple(getattr(args, "name", ())))


def cmd_web(args: argparse.Namespace) -> int:
    from station.server import StationServer  # gunicorn only where the station runs

    settings = settings_from(args)
    if not (settings.dock_dir / "keys" / "agency_x25519.pem").is_file():
        print(f"bodycam: no agency key in {settings.dock_dir}/keys: the station decrypts with "
              "it; point [dock] dir in the dock configuration at the dock's directory",
              file=sys.stderr)
        return EXIT_USAGE
    if not 0 < settings.port < 65536:
        print(f"bodycam: --port {settings.port}: 1 to 65535", file=sys.stderr)
        return EXIT_USAGE
    shown = settings.names[0] if settings.names else (
        "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host)

    def ready() -> None:
        print(f"station at https://{shown}:{settings.port}/ (certificate from the dock's CA "
              f"{settings.dock_dir / 'ca' / 'ca.crt'}); archive {settings.archive}", flush=True)

    StationServer(settings, on_ready=ready).run()
    return EXIT_OK


def cmd_web_user_add(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    made = not args.password_stdin
    password = secrets.token_urlsafe(12) if made else sys.stdin.readline().rstrip("\n")
    store = Store(settings.archive)
    try:
        accounts.add_user(store, args.name, args.role, password, "command line")
    except accounts.AccountError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        store.close()
    print(f"added {args.name} ({args.role})" + (f", password: {password}" if made else ""))
    return EXIT_OK


def cmd_web_user_list(args: argparse.Namespace) -> int:
    store = Store(settings_from(args).archive)
    try:
        for name, role, failed, locked in accounts.users(store):
            print(f"{name:<20} {role:<10}" + (" locked" if locked else ""))
    finally:
        store.close()
    return EXIT_OK
