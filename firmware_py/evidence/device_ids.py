"""Device ids: the one rule every part checks an id against, before anything is written.

A device id becomes a file name in the dock's register (``devices/<id>.json``), the CN of
the device's client certificate (and so its MQTT user name and client id), a level of every
topic it may use (the ACL's ``%u``), and a folder of the archive (``<archive>/<id>/``).
Enrolment, certificates, the sync protocol and the archive all check ids here, so an id one
of them takes the others take too — and none of them ever takes a path.

The rule: 1-32 characters of A-Z a-z 0-9 ``_`` ``-``, starting with a letter or digit (no
``.``, ``/`` or ``\\``: never a path; no ``+`` ``#``: never an MQTT wildcard); and not a
reserved name, compared without case so that no file system or broker folds one into
another: ``dock`` (the dock's own certificate, the ACL's readwrite user), ``incoming`` (the
archive's staging folder beside the device folders) and ``broker-probe`` (the certificate
the broker wrapper checks its listener with).
"""

from __future__ import annotations

import re

DEVICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
RESERVED_DEVICE_IDS = frozenset({"dock", "incoming", "broker-probe"})
RULE = "1-32 letters, digits, '_' and '-', starting with a letter or digit"


def device_id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a device id, or None for a good one."""
    if not isinstance(value, str):
        return f"must be a string, not {'null' if value is None else type(value).__name__}"
    if not DEVICE_ID_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"{shown!r} is not a device id ({RULE})"
    if value.lower() in RESERVED_DEVICE_IDS:
        return f"{value!r} is a reserved name at the dock, not a device id"
    return None


def check_device_id(value: object) -> str:
    """``value`` if it is a device id; ValueError naming the problem otherwise."""
    problem = device_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    assert isinstance(value, str)
    return value
