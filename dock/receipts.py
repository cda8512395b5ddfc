"""The dock's receipts as files beside the evidence, and the archive made read-only.

Each archived file ``<device>/<activity>/<name>`` gets ``<name>.receipt.json`` — the receipt
body in canonical JSON, exactly the bytes the dock signed — and ``<name>.receipt.sig``, the
64-byte Ed25519 signature of the dock's receipt key (``keys/dock_ed25519.pub.pem``), so
``openssl pkeyutl -verify -rawin`` checks a receipt over the stored text, without the
index. Evidence, receipts and chain heads are 0444 once archived
(docs/evidence-format.md, section 7).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from firmware_py.evidence.canonical import canonical
from firmware_py.evidence.store import READ_ONLY, write_atomic

RECEIPT = ".receipt.json"
RECEIPT_SIG = ".receipt.sig"


def receipt_paths(target: Path) -> tuple[Path, Path]:
    return target.with_name(target.name + RECEIPT), target.with_name(target.name + RECEIPT_SIG)


def file_receipt(target: Path, body: dict[str, Any], signature: bytes, *,
                 durable: bool = True) -> list[Path]:
    """Make ``target`` read-only and write its receipt and signature beside it; returns the
    files written. With ``durable=False`` they are not fsynced: the caller makes them
    durable with the rest of its round (``Archive.commit_completed``).

    A receipt already there (the dock asked again after a crash) is left as it is: the
    first receipt of a file is the one the device was given."""
    os.chmod(target, READ_ONLY)
    data, sig = receipt_paths(target)
    if data.exists() and sig.exists():
        return []
    write_atomic(sig, signature, mode=READ_ONLY, durable=durable)
    write_atomic(data, canonical(body), mode=READ_ONLY, durable=durable)
    return [sig, data]


def read_receipt(target: Path) -> tuple[dict[str, Any], bytes] | None:
    """The receipt filed beside ``target`` (body, signature), or None if there is none."""
    data, sig = receipt_paths(target)
    try:
        return json.loads(data.read_bytes()), sig.read_bytes()
    except (OSError, ValueError):
        return None
