"""The canonical JSON of the evidence format (docs/evidence-format.md 4.2): the bytes a
seal, a file header or a receipt body is signed or hashed over.

RFC 8785 (JCS) for the values used here. The audit log's lines are encoded in
``firmware_py.evidence.audit`` by an encoder of their own, on purpose: they carry floats
(times, offsets) and any value as text (``default=str``), which this encoding refuses, and
end with a newline; their hash chain is over those line bytes, so changing either encoding
would break every log or seal already written.
"""

from __future__ import annotations

import json

# The ``prev`` of the first link of a hash chain — the audit log's and the seals' alike.
GENESIS = "0" * 64


def canonical(obj: object) -> bytes:
    """RFC 8785 (JCS) for the values used here: objects, arrays, strings, integers, bools,
    null — sorted keys, no whitespace, UTF-8. Floats are kept out of sealed records."""
    _no_floats(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _no_floats(obj: object) -> None:
    # Python and RFC 8785 write some floats differently: sealed records carry none.
    if isinstance(obj, float):
        raise ValueError(f"a float ({obj!r}) in a record to be sealed; use an integer unit")
    if isinstance(obj, dict):
        for value in obj.values():
            _no_floats(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _no_floats(value)
