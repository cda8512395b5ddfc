"""People and roles: accounts with argon2id password hashes, lockout, sessions.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second
recommended setting): memory-hard, so a stolen station database does not give the
passwords away cheaply. Five wrong passwords in a row lock the account for 15 minutes;
the lock holds even for the right password. A session is a random token in a cookie; the
database keeps only its SHA-256 with the session's CSRF token, so logout (or expiry after
30 idle minutes) ends it at the server, not just in the browser.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from station.store import Store

log = logging.getLogger(__name__)

ROLES = ("custodian", "unit_head", "legal", "admin")
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
IDLE_SECONDS = 30 * 60
MIN_PASSWORD = 10
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")

_hasher = PasswordHasher()


class AccountError(ValueError):
    """A user name, role or password that cannot be accepted; the message says why."""


class LoginRefused(Exception):
    """Wrong name or password, or a locked account; ``locked_until`` when locked."""

    def __init__(self, reason: str, locked_until: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.locked_until = locked_until


@dataclass(frozen=True)
class User:
    name: str
    role: str


@dataclass(frozen=True)
class Session:
    token_hash: str
    user: User
    csrf: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(store: Store, name: str, role: str, password: str, created_by: str) -> User:
    if not NAME.match(name):
        raise AccountError(f"user name {name!r}: 2-32 lower-case letters, digits, '.', '_', '-'")
    if role not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    with store.tx() as db:
        if db.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
            raise AccountError(f"user {name!r} exists already")
        db.execute("INSERT INTO users (name, role, password_hash, failed, created_at, created_by) "
                   "VALUES (?,?,?,0,?,?)", (name, role, _hasher.hash(password), time.time(),
                                            created_by))
    return User(name, role)


def unlock(store: Store, name: str) -> None:
    """The administrator lifts a lockout (after checking who asked)."""
    with store.tx() as db:
        if not db.execute("UPDATE users SET failed=0, locked_until=NULL WHERE name=?",
                          (name,)).rowcount:
            raise AccountError(f"no user {name!r}")


def users(store: Store) -> list[tuple[str, str, int, float | None]]:
    return store.all("SELECT name, role, failed, locked_until FROM users ORDER BY name")


def authenticate(store: Store, name: str, password: str, now: float | None = None) -> User:
    """The user, or LoginRefused. A wrong password counts towards the lockout."""
    now = time.time() if now is None else now
    refused: LoginRefused | None = None
    # The failure is counted in a transaction that commits: the refusal is raised after it.
    with store.tx() as db:
        row = db.execute("SELECT role, password_hash, failed, locked_until FROM users "
                         "WHERE name=?", (name,)).fetchone()
        if row is None:
            # Hash anyway, so an unknown name takes as long as a known one.
            _hasher.hash(password)
            raise LoginRefused("wrong")
        role, stored, failed, locked_until = row
        if locked_until is not None and locked_until > now:
            raise LoginRefused("locked", locked_until)
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            failed = (0 if locked_until is not None else failed) + 1
            lock = now + LOCK_SECONDS if failed >= MAX_FAILURES else None
            db.execute("UPDATE users SET failed=?, locked_until=? WHERE name=?",
                       (0 if lock else failed, lock, name))
            if lock:
                log.warning("account %s locked after %d wrong passwords", name, failed)
            refused = LoginRefused("locked", lock) if lock else LoginRefused("wrong")
        else:
            if _hasher.check_needs_rehash(stored):
                db.execute("UPDATE users SET password_hash=? WHERE name=?",
                           (_hasher.hash(password), name))
            db.execute("UPDATE users SET failed=0, locked_until=NULL WHERE name=?", (name,))
    if refused is not None:
        raise refused
    return User(name, role)


def open_session(store: Store, user: User, remote: str) -> tuple[str, Session]:
    """A new session: the cookie's token (shown once) and the session."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = time.time()
    with store.tx() as db:
        db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?)",
                   (_token_hash(token), user.name, csrf, now, now, remote))
    return token, Session(_token_hash(token), user, csrf)


def find_session(store: Store, token: str | None, now: float | None = None) -> Session | None:
    if not token:
        return None
    now = time.time() if now is None else now
    with store.tx() as db:
        row = db.execute("SELECT s.username, u.role, s.csrf, s.last_seen FROM sessions s "
                         "JOIN users u ON u.name = s.username WHERE s.token_hash=?",
                         (_token_hash(token),)).fetchone()
        if row is None:
            return None
        name, role, csrf, last_seen = row
        if now - last_seen > IDLE_SECONDS:
            db.execute("DELETE FROM sessions WHERE token_hash=?", (_token_hash(token),))
            return None
        db.execute("UPDATE sessions SET last_seen=? WHERE token_hash=?", (now, _token_hash(token)))
    return Session(_token_hash(token), User(name, role), csrf)


def close_session(store: Store, session: Session) -> None:
    with store.tx() as db:
        db.execute("DELETE FROM sessions WHERE token_hash=?", (session.token_hash,))
