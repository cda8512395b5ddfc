"""Hostile configuration files (issue 7): one line naming the key, exit code 2, nothing else.

The shipped ``device.toml`` and ``policy.toml`` are read, changed in one place and written
back as TOML: an unknown key slipped into any table (a section, a matter, a phrase, a
reason), any value of any type given to any setting, or bytes that are not TOML at all.
Properties: loading either succeeds with every value inside what its setting allows, or
raises ``ConfigError`` whose one-line message starts with the file and names the key (or,
for a rule over several keys, the table holding it); nothing else is ever raised; the
command line prints that one line and exits 2 before anything starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
import tomllib
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from hypothesis import given
from hypothesis import strategies as st

from firmware_py import config as cfg
from bodycam.cli import main
from hostile import examples

SCALARS = (int, float, str, bool)
FILES = {"device": (cfg.CONFIG_DIR / "device.toml", cfg.DeviceConfig),
         "policy": (cfg.CONFIG_DIR / "policy.toml", cfg.PolicyConfig)}


# --- a small TOML writer (tomllib only reads) --------------------------------------------------

def toml_string(text: str) -> str:
    # JSON's escapes are TOML's, but TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(table: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """Tables as [headers]; everything else, arrays of tables too, inline."""
    lines = [f"[{'.'.join(toml_key(k) for k in path)}]"] if path else []
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()
              if not isinstance(v, dict)]
    text = "\n".join(lines) + "\n"
    for key, value in table.items():
        if isinstance(value, dict):
            text += toml_document(value, path + (key,))
    return text


# --- where settings live ------------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    """A table whose keys a dataclass fixes: where it sits in the document, how errors name
    its keys (``build``'s prefix) and the dataclass."""

    path: tuple[str | int, ...]
    prefix: str
    cls: type


def tables(cls: type, data: dict[str, Any], path: tuple[str | int, ...] = (),
           prefix: str = "") -> list[Table]:
    found = [Table(path, prefix, cls)]
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            continue
        kind, value = hints[f.name], data[f.name]
        origin, args = get_origin(kind), get_args(kind)
        if is_dataclass(kind):
            found += tables(kind, value, path + (f.name,), f"{prefix}{f.name}.")
        elif origin is tuple and args and is_dataclass(args[0]):
            for i, item in enumerate(value):
                found += tables(args[0], item, path + (f.name, i), f"{prefix}{f.name}[{i}].")
        elif origin is dict and len(args) == 2 and is_dataclass(args[1]):
            for name, item in value.items():
                found += tables(args[1], item, path + (f.name, name),
                                f"{prefix}{f.name}.{name}.")
    return found


def scalar_settings(table: Table) -> list[str]:
    """Keys of single values or lists of single values (the others are tables)."""
    hints = get_type_hints(table.cls)
    out = []
    for f in fields(table.cls):
        kind = hints[f.name]
        args = get_args(kind)
        if kind in SCALARS or (get_origin(kind) is tuple and args and args[0] in SCALARS):
            out.append(f.name)
    return out


def shipped(which: str) -> dict[str, Any]:
    return tomllib.loads(FILES[which][0].read_text())


def at(document: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    for part in path:
        document = document[part]  # type: ignore[index]
    return document


def load(which: str, text: str | bytes) -> cfg.Config:
    """Load ``text`` as the device or policy file (the other one as shipped)."""
    with tempfile.TemporaryDirectory(prefix="bodycam-hostile-") as scratch:
        path = Path(scratch) / f"{which}.toml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return cfg.load(path) if which == "device" else cfg.load(policy_path=path)


def load_error(which: str, text: str | bytes) -> cfg.ConfigError | None:
    try:
        load(which, text)
    except cfg.ConfigError as exc:
        assert len(str(exc).splitlines()) == 1, f"not one line: {str(exc)!r}"
        assert str(exc).startswith(str(Path(tempfile.gettempdir())))  # names the file
        return exc
    return None


# --- strategies ---------------------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
toml_values = st.recursive(
    st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | texts
    | st.datetimes(timezones=st.just(timezone.utc)) | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=2),
    max_leaves=5)
bare_keys = st.from_regex(r"\A[a-z_][a-z0-9_]{0,12}\Z")
# What breaks range and type checks most often, drawn as often as everything else together.
edge_values = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0, -1, 2**63 - 1, 1e308,
                               "", " ", "0", True, False, [], [math.nan], {}])


@st.composite
def with_unknown_key(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(which file, its text with one unknown key added somewhere, the key's table's prefix
    in error messages, the key)."""
    which = draw(st.sampled_from(sorted(FILES)))
    document = shipped(which)
    table = draw(st.sampled_from(tables(FILES[which][1], document)))
    known = {f.name for f in fields(table.cls)}
    key = draw(bare_keys.filter(lambda k: k not in known) | texts.filter(lambda k: k not in known))
    at(document, table.path)[key] = draw(toml_values)
    return which, toml_document(document), table.prefix, key


@st.composite
def with_any_value(draw: st.DrawFn) -> tuple[str, str, Table, str]:
    """(which file, its text with one setting given any value, the setting's table, key)."""
    which = draw(st.sampled_from(sorted(FILES)))
    document = shipped(which)
    table = draw(st.sampled_from([t for t in tables(FILES[which][1], document)
                                  if scalar_settings(t)]))
    key = draw(st.sampled_from(scalar_settings(table)))
    at(document, table.path)[key] = draw(edge_values | toml_values)
    return which, toml_document(document), table, key


# --- properties ---------------------------------------------------------------------------------

def test_the_writer_round_trips_the_shipped_files() -> None:
    for which in FILES:
        assert tomllib.loads(toml_document(shipped(which))) == shipped(which)
        assert load_error(which, toml_document(shipped(which))) is None


@examples(80)
@given(with_unknown_key())
def test_an_unknown_key_anywhere_is_named(case: tuple[str, str, str, str]) -> None:
    which, text, prefix, key = case
    error = load_error(which, text)
    assert error is not None and "unknown key" in str(error)
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        assert error.key == prefix + key and f": {prefix}{key}: unknown key" in str(error)
    else:  # quoted as in TOML, so an empty or odd key still shows, on one line
        assert error.key.startswith(prefix + '"') and error.key.endswith('"')
        if key.isprintable() and not set(key) & set('"\\'):
            assert f'{prefix}"{key}": unknown key' in str(error)


def allowed(value: Any, kind: type, meta: dict[str, Any]) -> bool:
    """Whether a loaded value is one its setting allows."""
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        return False
    if meta.get("choices") is not None and value not in meta["choices"]:
        return False
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and not lo <= value) or (hi is not None and not value <= hi):
        return False  # NaN is neither above nor below anything: refused here
    return meta.get("pattern") is None or re.fullmatch(meta["pattern"], value) is not None


@examples(150)
@given(with_any_value())
def test_any_value_for_any_setting_is_allowed_or_named(
        case: tuple[str, str, Table, str]) -> None:
    which, text, table, key = case
    try:
        config = load(which, text)
    except cfg.ConfigError as error:
        assert len(str(error).splitlines()) == 1
        named = f"{table.prefix}{key}"
        # A rule over several keys names the table holding them (buttons, reasons).
        assert error.key == named or error.key.startswith(named + "[") or \
            named.startswith(error.key + ".") or named.startswith(error.key + "["), \
            (error.key, named)
        return
    loaded: Any = getattr(config, which)
    for part in table.path:
        loaded = loaded[part] if isinstance(part, int) or isinstance(loaded, dict) \
            else getattr(loaded, part)
    value = getattr(loaded, key)
    f = next(f for f in fields(table.cls) if f.name == key)
    kind = get_type_hints(table.cls)[key]
    items = value if isinstance(value, tuple) else (value,)
    kind = get_args(kind)[0] if get_origin(kind) is tuple else kind
    assert all(allowed(item, kind, dict(f.metadata)) for item in items), (key, value)


@examples(80)
@given(st.sampled_from(sorted(FILES)), st.one_of(
    st.binary(max_size=200),
    st.builds(lambda text, junk, at_: text[:at_] + junk + text[at_:],
              st.sampled_from([toml_document(shipped(w)).encode() for w in sorted(FILES)]),
              st.binary(min_size=1, max_size=8), st.integers(0, 3000))))
def test_bytes_that_are_not_toml_are_one_clear_line(which: str, data: bytes) -> None:
    try:
        tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        error = load_error(which, data)  # one line, naming the file
        assert error is not None and error.key == "" and "not valid TOML" in str(error)
    else:
        load_error(which, data)  # TOML, maybe not a configuration: still one line if wrong


@examples(15)
@given(st.one_of(with_unknown_key().map(lambda c: (c[0], c[1])),
                 with_any_value().map(lambda c: (c[0], c[1]))))
def test_command_line_prints_one_line_and_exits_2_before_starting(
        case: tuple[str, str]) -> None:
    which, text = case
    if load_error(which, text) is None:
        return  # a valid file would start a self-check
    with tempfile.TemporaryDirectory(prefix="bodycam-hostile-") as scratch:
        path = Path(scratch) / f"{which}.toml"
        path.write_text(text)
        out = Path(scratch) / "device"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["selfcheck", "--config" if which == "device" else "--policy",
                         str(path), "--out", str(out)])
        assert code == 2 and not out.exists(), "the self-check started"
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "configuration error" in lines[0] and str(path) in lines[0]
