"""The protocol's limits, its error, and the checks every field passes (after h11's ``_util``).

Constructors check their fields with these, and decoders build messages through the
constructors, so a message built wrongly on our side fails where it is built, with the same
message a peer's bad payload would get. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Sequence

# Device ids follow the one rule of firmware_py.evidence.device_ids (reserved names too).
from firmware_py.evidence.device_ids import DEVICE_ID_PATTERN, DEVICE_ID_RE, device_id_problem

# --- limits ---------------------------------------------------------------------------------

FILE_ID_CHARS = 32  # hex digits of SHA-256 kept in the file id (128 bits)

MAX_CONTROL_BYTES = 64 * 1024  # any JSON message but hello and want
MAX_HELLO_BYTES = 256 * 1024  # hello and want carry lists; no bigger than a default chunk,
#                               so a broker limit that lets chunks through lets them through
DEFAULT_CHUNK_BYTES = 256 * 1024  # well under any message_size_limit worth setting
MAX_CHUNK_BYTES = 1024 * 1024  # hard limit: no chunk payload is ever larger
MAX_SIZE = 2**53 - 1  # sizes and offsets stay exact in every JSON implementation
MAX_SECONDS = 1e11  # a time in UTC seconds: year 5138 at most; beyond it is an attack
DEFAULT_WINDOW = 16  # chunks in flight: 4 MiB at the default size
DEFAULT_MAX_RETRIES = 5  # resends at one offset, or restarts of one file, before giving up

FILE_ID_RE = re.compile(r"[0-9a-f]{32}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
REASON_RE = re.compile(r"[a-z_]{0,32}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class ProtocolError(ValueError):
    """Malformed input: a topic, a payload or a call the protocol cannot take.

    ``field`` names what was wrong (``"hello.files[2].sha256"``, ``"topic.offset"``) and
    ``reason`` says how, so a log line is enough to find the fault.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)

    def within(self, outer: str) -> ProtocolError:
        """The same error, its field named from an enclosing message."""
        return ProtocolError(self.reason, f"{outer}.{self.field}" if self.field else outer)


def file_id_of(sha256: str) -> str:
    """The file id for a file whose SHA-256 (lowercase hex) is ``sha256``."""
    return check_sha256(sha256, "sha256")[:FILE_ID_CHARS]


# --- field checks (shared by constructors and decoders) ----------------------------------------
# Constructors check their fields too, so a message built wrongly on our side fails where it
# is built, with the same message a peer's bad payload would get.

def check_int(value: object, name: str, lo: int = 0, hi: int = MAX_SIZE) -> int:
    if type(value) is not int:  # bool is an int to Python, not to the protocol
        raise ProtocolError(f"must be an integer, not {type_name(value)}", name)
    if not lo <= value <= hi:
        raise ProtocolError(f"{value} is outside {lo}..{hi}", name)
    return value


def check_number(value: object, name: str, limit: float = MAX_SECONDS) -> float | int:
    """A number (the time messages' seconds) whose magnitude is at most ``limit``."""
    if type(value) not in (int, float):
        raise ProtocolError(f"must be a number, not {type_name(value)}", name)
    # Compared before any float conversion: a 400-digit JSON integer is an int here, and
    # math.isfinite or float() on it raises OverflowError, which no handler expects.
    if type(value) is int and not -limit <= value <= limit:
        raise ProtocolError(f"is {len(str(abs(value)))} digits long, outside "
                            f"±{limit:.0e}", name)
    if not math.isfinite(value):  # JSON "1e999" parses to inf
        raise ProtocolError("must be finite", name)
    if not -limit <= value <= limit:
        raise ProtocolError(f"{value:.6g} is outside ±{limit:.0e}", name)
    return value


def check_text(value: object, name: str, max_bytes: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"must be a string, not {type_name(value)}", name)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        raise ProtocolError("is not valid Unicode", name) from None
    if size > max_bytes:
        raise ProtocolError(f"is {size} bytes, over {max_bytes}", name)
    if not value and not empty:
        raise ProtocolError("must not be empty", name)
    if CONTROL_RE.search(value):
        raise ProtocolError("must not hold control characters", name)
    return value


def check_path_part(value: object, name: str, max_bytes: int = 255) -> str:
    """One name in a directory: the dock joins it to a path, so nothing may climb out."""
    text = check_text(value, name, max_bytes)
    if "/" in text or "\\" in text:
        raise ProtocolError("must be a bare name, without / or \\", name)
    if text.startswith("."):  # also refuses "." and ".."; evidence names never start so
        raise ProtocolError("must not start with '.'", name)
    return text


def check_pattern(value: object, name: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"must be a string, not {type_name(value)}", name)
    if not pattern.fullmatch(value):
        raise ProtocolError(f"{shorten(value)} is not {what}", name)
    return value


def check_device(value: object, name: str = "device") -> str:
    problem = device_id_problem(value)
    if problem is not None:
        raise ProtocolError(problem, name)
    return value  # type: ignore[return-value]  # a str: device_id_problem checked it


def check_file_id(value: object, name: str = "file_id") -> str:
    return check_pattern(value, name, FILE_ID_RE, "a file id (32 lowercase hex digits)")


def check_sha256(value: object, name: str = "sha256") -> str:
    return check_pattern(value, name, SHA256_RE, "a SHA-256 (64 lowercase hex digits)")


def check_bytes(value: object, name: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ProtocolError(f"must be bytes, not {type_name(value)}", name)


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def shorten(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def detail_text(text: str, limit: int = 1024) -> str:
    """Free text from an edge (an exception message, say) made fit for an ack's detail."""
    clean = CONTROL_RE.sub(" ", str(text))
    return clean.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def json_object(payload: object, what: str, limit: int) -> dict[str, Any]:
    data = check_bytes(payload, what)
    if len(data) > limit:
        raise ProtocolError(f"payload is {len(data)} bytes, over the limit of {limit}", what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload is not UTF-8 (byte {exc.start})", what) from None
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise ProtocolError("payload JSON is nested too deeply", what) from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, huge integers
        raise ProtocolError(f"payload is not acceptable JSON: {exc}", what) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"payload must be a JSON object, not {type_name(obj)}", what)
    return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicate key would let two readers see two different messages (or receipts).
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def get_field(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise ProtocolError("missing", f"{what}.{key}")
    return obj[key]


def build(cls: Any, obj: Mapping[str, Any], what: str, keys: Sequence[str],
          optional: Sequence[str] = ()) -> Any:
    """``cls(**{k: obj[k]})`` with missing keys and bad values named as ``what.key``.

    Unknown keys are ignored, so a later minor revision can add fields without a new prefix;
    a key in ``optional`` (added by such a revision) may be missing: its default applies.
    """
    try:
        return cls(**{key: get_field(obj, key, what) for key in keys
                      if key in obj or key not in optional})
    except ProtocolError as exc:
        if exc.field is not None and exc.field.startswith(f"{what}."):
            raise
        raise exc.within(what) from None


def encode_json(obj: Mapping[str, Any]) -> bytes:
    # The canonical JSON of docs/evidence-format.md 4.2 (sorted keys, no spaces, UTF-8 as
    # is, no NaN), byte for byte what firmware_py.evidence.canonical writes for every
    # value both take, so a receipt body — integers only — is signed over exactly the bytes
    # any reader re-derives. Kept apart on purpose: canonical refuses floats (sealed records
    # carry none), and the time messages carry floats.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")
