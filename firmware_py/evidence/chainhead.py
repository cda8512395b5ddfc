"""Signed chain heads: what makes removing the newest items of a chain visible (R18.1).

The chain of manifests shows an item removed from its middle, but nothing points at the
newest items, so an archive whose last items were deleted still links up. At every
docking the device therefore signs its chain head — the sequence number and SHA-256 of
the last manifest it sealed, with the time — into ``evidence/chain/`` as
``<device>_<YYYYMMDDTHHMMSSZ>_<sequence>.chainhead.json`` (canonical JSON) and
``….chainhead.sig`` (64 raw Ed25519 bytes), which go to the dock like any evidence file
and are kept beside the evidence. A verifier takes the highest sequence any valid head
names: the evidence must reach it, and the manifest there must hash to the head.
(docs/evidence-format.md, section 7.)
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from device.clock import Timestamp
from firmware_py.evidence.canonical import GENESIS, canonical
from firmware_py.evidence.keys import DeviceIdentity, EnrolledDevice
from firmware_py.evidence.seal import time_record
from firmware_py.evidence.store import READ_ONLY, utc_compact, write_atomic
from firmware_py.paths import DEVICE_STATE

log = logging.getLogger(__name__)

FORMAT = "bodycam-chainhead/1"
FOLDER = "chain"  # under the evidence directory, and under the device's folder at the dock
SUFFIX = ".chainhead.json"
SIGNATURE = ".chainhead.sig"
TOKEN = ".chainhead.tsr"  # the dock's RFC 3161 time-stamp token over the head's bytes


@dataclass(frozen=True)
class ChainHead:
    """One signed chain head, checked."""

    path: Path
    device: str
    sequence: int
    head: str  # SHA-256 hex of the manifest at ``sequence`` (genesis when 0)
    utc_ms: int


def head_body(identity: DeviceIdentity, sequence: int, head: str,
              at: Timestamp) -> dict[str, Any]:
    return {"format": FORMAT, "device": identity.device, "unit": identity.unit,
            "signing_key": identity.key_id, "sequence": sequence, "head": head,
            "at": time_record(at)}


def read_state_head(evidence: Path) -> tuple[int, str]:
    """The device's committed chain head from the evidence store's state file."""
    state = json.loads((Path(evidence) / DEVICE_STATE).read_text())
    sequence, head = state.get("chain_sequence", 0), state.get("chain_head", GENESIS)
    if type(sequence) is not int or sequence < 0 or not isinstance(head, str) or len(head) != 64:
        raise ValueError(f"{DEVICE_STATE}: no usable chain head")
    return sequence, head


def write_chain_head(evidence: Path, identity: DeviceIdentity, at: Timestamp) -> Path | None:
    """Sign the device's present chain head into ``evidence/chain/``; the path of the head,
    or None when the device has no readable chain state (nothing sealed yet is state too:
    a fresh device has none, and says nothing)."""
    try:
        sequence, head = read_state_head(evidence)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("chain head not signed: %s", exc)
        return None
    body = canonical(head_body(identity, sequence, head, at))
    folder = Path(evidence) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{identity.device}_{utc_compact(at.utc)}_{sequence:06d}"
    n = 1
    while (folder / (stem + SUFFIX)).exists():  # two dockings in one second
        n += 1
        stem = f"{identity.device}_{utc_compact(at.utc)}_{sequence:06d}-{n}"
    # The signature first: a head without its signature would be refused at the dock.
    write_atomic(folder / (stem + SIGNATURE), identity.signing_key.sign(body), mode=READ_ONLY)
    write_atomic(folder / (stem + SUFFIX), body, mode=READ_ONLY)
    return folder / (stem + SUFFIX)


def check_chain_head(data: bytes, signature: bytes | None,
                     registry: dict[str, EnrolledDevice]) -> tuple[dict[str, Any] | None, str | None]:
    """A head's body when it is canonical and signed by its device's enrolled key, else
    None and what is wrong."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None, "chain head is not JSON"
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        return None, "chain head has no known format"
    try:
        if canonical(body) != data:
            return None, "chain head is not in canonical form (edited)"
    except ValueError:
        return None, "chain head holds a float (edited)"
    sequence, head = body.get("sequence"), body.get("head")
    if type(sequence) is not int or sequence < 0 or not isinstance(head, str) or len(head) != 64:
        return None, "chain head has no usable sequence and head"
    signer = registry.get(str(body.get("signing_key")))
    if signer is None or signer.device != body.get("device"):
        return None, f"chain head signed by key {body.get('signing_key')}, not enrolled to " \
                     f"{body.get('device')!r}"
    if signature is None:
        return None, "chain head signature missing"
    try:
        signer.public_key.verify(signature, data)
    except InvalidSignature:
        return None, "chain head signature does not match"
    return body, None


def find_heads(paths: list[Path], registry: dict[str, EnrolledDevice]
               ) -> tuple[list[ChainHead], list[str]]:
    """Every valid chain head under ``paths``, and a problem per head that is not valid."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found.update(path.rglob(f"*{SUFFIX}"))
        elif path.name.endswith(SUFFIX):
            found.add(path)
    heads, problems = [], []
    for path in sorted(found):
        sig = path.with_name(path.name[: -len(SUFFIX)] + SIGNATURE)
        body, problem = check_chain_head(path.read_bytes(),
                                         sig.read_bytes() if sig.exists() else None, registry)
        if body is None:
            problems.append(f"{path.name}: {problem}")
            continue
        at = body.get("at") if isinstance(body.get("at"), dict) else {}
        heads.append(ChainHead(path, str(body["device"]), body["sequence"], body["head"],
                               int(at.get("utc_ms") or 0)))
    return heads, problems


def latest(heads: list[ChainHead]) -> dict[str, ChainHead]:
    """Per device, the head naming the highest sequence (the newest claim of its chain)."""
    best: dict[str, ChainHead] = {}
    for head in heads:
        known = best.get(head.device)
        if known is None or (head.sequence, head.utc_ms) > (known.sequence, known.utc_ms):
            best[head.device] = head
    return best


def check_token(head: Path, ca_file: Path) -> tuple[str | None, str | None]:
    """The RFC 3161 token beside a chain head, checked by ``openssl ts -verify`` against
    the TSA's CA: the time it gives, or None and what is wrong."""
    token = Path(head).with_name(Path(head).name[: -len(SUFFIX)] + TOKEN)
    if not token.exists():
        return None, f"{Path(head).name}: no time-stamp token"
    try:
        checked = subprocess.run(["openssl", "ts", "-verify", "-data", str(head), "-in",
                                  str(token), "-CAfile", str(ca_file)],
                                 capture_output=True, text=True, timeout=30)
        if checked.returncode != 0:
            return None, f"{token.name}: does not verify ({checked.stderr.strip()[-200:]})"
        text = subprocess.run(["openssl", "ts", "-reply", "-in", str(token), "-text"],
                              capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        return None, f"{token.name}: openssl is needed to check it"
    for line in text.splitlines():
        if line.startswith("Time stamp:"):
            return line.split(":", 1)[1].strip(), None
    return None, f"{token.name}: no time in the token"
