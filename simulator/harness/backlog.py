"""A week's backlog on a device, made fast: many small sealed items, for tests and benches.

Each item is what the recorder leaves for one segment — its media file(s), encrypted to the
agency key through ``EncryptingFile``, sealed with the device's ``Sealer`` (manifest and
signature, on the device's chain) — with small bodies, so tens of thousands of files take
seconds. ``durable=False`` skips the fsyncs while making them: what is measured or tested
is the docking, not the making.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

from firmware_py.evidence.evidence_file import EncryptingFile
from firmware_py.evidence.keys import device_identity
from firmware_py.evidence.seal import Sealer, plain_file
from firmware_py.evidence.store import EvidenceStore


def make_backlog(device_root: Path, device: str, *, items: int, files_per_item: int = 1,
                 body_bytes: int = 64, activities: int = 1, durable: bool = False,
                 encrypted: bool = True) -> int:
    """Seal ``items`` items of ``files_per_item`` media files of ``body_bytes`` random bytes
    each into ``activities`` activities of the enrolled device at ``device_root``. Returns
    the number of files waiting (each item: its files, its manifest and its signature).
    ``encrypted=False`` writes the media in the clear (sealed as plain files, as records
    are): ten times quicker to make, and the same to the sync."""
    identity = device_identity(device_root, device)
    store = EvidenceStore(device_root / "evidence", device)
    sealer = Sealer(identity, store)
    quick = nullcontext() if durable else mock.patch("os.fsync", lambda fd: None)
    made = 0
    with quick:
        start = time.time()
        per_activity = -(-items // max(activities, 1))
        activity = None
        for n in range(items):
            if n % per_activity == 0:
                activity = store.open_activity(start + n)  # one second apart: distinct ids
            assert activity is not None
            number = store.next_sequence()
            stored = []
            for k in range(files_per_item):
                suffix = (f".{k}" if files_per_item > 1 else "") + (".ts.bce" if encrypted else ".ts")
                path = store.evidence_path(activity, number, start + n, suffix)
                if not encrypted:
                    path.write_bytes(os.urandom(body_bytes))
                    stored.append(("media", plain_file("media", path)))
                    continue
                media = EncryptingFile(path, identity.agency_public,
                                       {"device": device, "name": path.name, "role": "media"},
                                       durable=durable)
                media.write(os.urandom(body_bytes))
                stored.append(("media", media.close()))
            first = stored[0][1].path
            stem = first.with_name(first.name.split(".")[0])
            sealer.seal("segment", stem, stored,
                        {"activity": activity.id, "officer": None, "file_number": number})
            made += files_per_item + 2
    return made
