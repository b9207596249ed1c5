"""Settings files: a YAML file plus `--a.b=value` overrides, read into nested frozen dataclasses
(and the text of one command-line flag, read as its field's type).

This is the edge of the program: plain data comes in, a checked config object goes out, and every
mistake is reported with the dotted key, the file line where known, and what would have been valid.
YAML is read by `safe_yaml.py` (the YAML 1.2 core schema, with bounded nesting and aliases); the
dataclasses themselves are in `settings.py`, `data/source.py` and `experiment/sections.py`.

Longer than 300 lines: each way a value can be wrong (type, key, line, choice) gets its own message."""

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import yaml

from tuneforge.errors import SettingError, TuneforgeError
from tuneforge.safe_yaml import MAX_BYTES, load_yaml, safe_load

NULLS = ("", "~", "null", "Null", "NULL")


class _Invalid(Exception):
    """A mistake in the data at `path` (dotted keys); the caller adds where it came from."""

    def __init__(self, path: tuple[str, ...], message: str):
        super().__init__(message)
        self.path = path


# ---- reading ---------------------------------------------------------------------------------------------------

def load_config(cls, path: str | Path, overrides: Sequence[str] = ()):
    """Read the YAML file at `path`, apply `overrides` (`a.b=value`) and build a `cls`."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise TuneforgeError(f"{name}: cannot read the config file: {err.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise TuneforgeError(f"{name}: over {MAX_BYTES // 1000:,} kB; a settings file holds a few kB (is it the "
                             "right file?)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise TuneforgeError(f"{name}:{line}: not UTF-8 text (byte {err.start}: {raw[err.start]:#04x}); save the "
                             "file as UTF-8") from None
    data, lines = _read_yaml(text, name)
    data = apply_overrides(data, overrides)
    try:
        return _build(cls, data, (), None)
    except _Invalid as err:
        raise TuneforgeError(f"{_locate(name, lines, overrides, err.path)}{err}") from None


def _read_yaml(text: str, name: str) -> tuple[dict, dict[tuple[str, ...], int]]:
    """The file's data (an empty file is refused) and the line of each dotted key."""
    data, node = load_yaml(text, name)
    if data is None:
        raise TuneforgeError(f"{name}: the file is empty (no settings); copy the demo's experiment "
                             "(tuneforge/experiment/demo.yaml) as a start")
    if not isinstance(data, dict):
        raise TuneforgeError(f"{name}: expected a mapping of settings at the top, got {_show(data)}")
    return data, _key_lines(node, (), name)


def _key_lines(node, prefix: tuple[str, ...], name: str) -> dict[tuple[str, ...], int]:
    """1-based line of every mapping key under `node`; a key given twice is an error (YAML keeps the last)."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path, line = (*prefix, str(key_node.value)), key_node.start_mark.line + 1
            if path in lines:
                raise TuneforgeError(f"{name}:{line}: duplicate key '{'.'.join(path)}' (also at line {lines[path]})")
            lines[path] = line
            lines.update(_key_lines(value_node, path, name))
    return lines


def _locate(name: str, lines: dict, overrides: Sequence[str], path: tuple[str, ...]) -> str:
    """Error prefix: the override that set `path`, else the file and line of `path` or of its section, else
    an override inside the section (a section's own check cannot say which of its keys is at fault)."""
    split = [(text, _split_override(text)[0]) for text in reversed(overrides)]
    for text, keys in split:
        if path[:len(keys)] == keys:
            return f"{text}: "
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return f"{name}:{lines[path[:n]]}: "
    for text, keys in split:
        if path and keys[:len(path)] == path:
            return f"{text}: "
    return f"{name}: "


# ---- overrides -------------------------------------------------------------------------------------------------

def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """A copy of `data` with each `a.b.c=value` (or `--a.b.c=value`) set; sections are created as needed."""
    data = dict(data)
    for text in overrides:
        keys, value = _split_override(text)
        data = _set(data, keys, _parse_value(value), text)
    return data


def _split_override(text: str) -> tuple[tuple[str, ...], str]:
    """`--a.b=1` -> (("a", "b"), "1")."""
    key, eq, value = text.removeprefix("--").partition("=")
    keys = tuple(key.strip().split("."))
    if not eq or not all(keys):
        raise TuneforgeError(f"malformed override {text!r}: write it as section.key=value, e.g. finetune.lr=2e-4")
    return keys, value


def _set(data: dict, keys: tuple[str, ...], value, text: str) -> dict:
    """A copy of `data` with `value` at `keys`; untouched sections are shared, never changed."""
    head, rest = keys[0], keys[1:]
    if not rest:
        return {**data, head: value}
    section = data.get(head, {})
    if section is None:  # a section switched off (`full: null`) comes back on with its defaults
        section = {}
    if not isinstance(section, dict):
        raise TuneforgeError(f"override {text!r}: {head!r} is a setting ({_show(section)}), not a section")
    return {**data, head: _set(section, rest, value, text)}


def _parse_value(text: str):
    """YAML meaning of an override's value; text that YAML would mangle (`a: b`, `[x`, `#x`) stays text.
    A value YAML reads but no setting could hold (aliases expanding past the limits) is refused."""
    try:
        value, _ = safe_load(text, f"the value {_cut(repr(text))}")
    except yaml.YAMLError:
        return text
    if (isinstance(value, dict) and "{" not in text) or (value is None and text.strip() not in NULLS):
        return text
    return value


# ---- building --------------------------------------------------------------------------------------------------

def from_dict(cls, data: dict, where: str = ""):
    """Build the frozen dataclass `cls` from plain data, checking keys and types; `where` prefixes errors."""
    try:
        return _build(cls, data, (), None)
    except _Invalid as err:
        raise TuneforgeError(f"{where}{err}") from None


def parse_text(hint, text: str):
    """The value of the annotation `hint` that one command-line flag's `text` spells: `5`, `2e-4`,
    `null` (for `X | None`), `0,1,5` (a tuple); text settings take the text as typed. A `ValueError`
    says what was expected."""
    listed = typing.get_origin(hint) is tuple
    if not text.strip() and any(typing.get_origin(h) is tuple for h in (hint, *typing.get_args(hint))):
        return ()  # an empty list, which the setting's own check refuses where it needs items (not null)
    value = text if hint is str or listed else _parse_value(text)
    try:
        return _convert(hint, value, ())
    except _Invalid:
        item = typing.get_args(hint)[0] if listed else None
        expected = f"comma-separated {_PLURAL.get(item, _describe(item))}" if listed else _describe(hint)
        raise ValueError(f"expected {expected}, got {text!r}") from None


def to_dict(obj) -> dict:
    """Plain JSON/YAML-ready data of a config dataclass (tuples become lists); `from_dict` reads it back."""
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj) if f.init}


def _plain(value):
    if is_dataclass(value):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _build(cls, data, path: tuple[str, ...], base):
    """`cls(**data)` after checking every key; missing keys come from `base` (an instance) or the defaults."""
    if not isinstance(data, dict):
        raise _Invalid(path, f"{_dotted(path) or 'config'}: expected a mapping of settings, got {_show(data)}")
    known = {f.name: f for f in fields(cls) if f.init}
    for key in data:
        if key not in known:
            raise _Invalid((*path, str(key)), _unknown(path, str(key), list(known)))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in known.items():
        default = getattr(base, name) if base is not None else _default(f)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], (*path, name), default)
        elif base is not None:
            kwargs[name] = default
        elif default is MISSING:
            raise _Invalid(path, f"missing required key '{_dotted((*path, name))}'")
    try:
        return cls(**kwargs)
    except SettingError as err:  # names its field: located at the field's own line or override
        raise _Invalid((*path, err.key), f"{_dotted(path)}.{err}" if path else str(err)) from None
    except TuneforgeError as err:
        raise _Invalid(path, f"{_dotted(path)}: {err}" if path else str(err)) from None


def _default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _unknown(path: tuple[str, ...], key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{_dotted((*path, key))}'{hint} (known: {', '.join(known)})"


def _convert(hint, value, path: tuple[str, ...], default=MISSING):
    """`value` as an instance of the annotation `hint`, or `_Invalid` naming the key, the type and the value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"{_dotted(path)}: unsupported annotation {hint} (only `X | None` unions)")
        scalar = not is_dataclass(inner[0]) and typing.get_origin(inner[0]) is not tuple
        if value is not None and scalar and not _fits(inner[0], value):
            raise _mismatch(hint, value, path)
        return None if value is None else _convert(inner[0], value, path, default)
    if is_dataclass(hint):
        return _build(hint, value, path, default if is_dataclass(default) else None)
    if origin is tuple:
        return _tuple(hint, value, path)
    if _fits(hint, value):
        return _SCALARS.get(hint, lambda v: v)(value)
    raise _mismatch(hint, value, path)


def _mismatch(hint, value, path: tuple[str, ...]) -> _Invalid:
    return _Invalid(path, f"{_dotted(path)}: expected {_describe(hint)}, got {_show(value)}")


def _fits(hint, value) -> bool:
    """Whether the scalar `value` is valid for `hint`: a bool is never a number, a number is also text."""
    if typing.get_origin(hint) is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if hint is float:
        return type(value) in (int, float)
    if hint is str:
        return type(value) in (str, int, float, bool)
    if hint in (int, bool):
        return type(value) is hint
    raise TypeError(f"unsupported config annotation {hint!r}")


# A string setting takes any text: `--name=5` and `--name=true` reach it as YAML's 5 and true.
_SCALARS = {float: float, str: lambda v: _show(v) if isinstance(v, bool) else str(v)}


def _tuple(hint, value, path: tuple[str, ...]) -> tuple:
    """A list, a single scalar (a 1-tuple) or comma-separated text (`0,1,5`, as the CLI spells it)."""
    item, more = (typing.get_args(hint) + (None, None))[:2]
    if more is not Ellipsis:
        raise TypeError(f"{_dotted(path)}: unsupported annotation {hint} (only `tuple[T, ...]`)")
    items = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",")]
        if not all(items):
            raise _Invalid(path, f"{_dotted(path)}: expected {_describe(hint)}, got an empty item in {value!r}")
        items = items if item is str else [_parse_value(p) for p in items]
    try:
        return tuple(_convert(item, v, path) for v in items)
    except _Invalid:
        raise _mismatch(hint, value, path) from None


def _describe(hint) -> str:
    """Human words for an annotation: `a number`, `a list of integers`, `one of 'a', 'b'`, ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or null"
    if origin is tuple:
        return f"a list of {_PLURAL.get(args[0], _describe(args[0]))}"
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if is_dataclass(hint):
        return "a mapping of settings"
    return _SINGULAR.get(hint, str(hint))


_SINGULAR = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


SHOWN = 80
"""Longest quote of a value in a message (a list shows its first items, then how many there are)."""


def _show(value) -> str:
    """A value as the user wrote it: YAML spellings for booleans and null, quotes around text; cut to
    about `SHOWN` characters, so a message about a huge value stays one readable line."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        more = f", ... ({len(value):,} items)" if len(value) > 5 else ""
        return _cut("[" + ", ".join(_show(v) for v in value[:5]) + more + "]")
    if isinstance(value, dict):
        return _cut("{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in list(value.items())[:5]) +
                    (f", ... ({len(value):,} keys)" if len(value) > 5 else "") + "}")
    if isinstance(value, str) and len(value) > SHOWN:
        return repr(value[:SHOWN]) + f"... ({len(value):,} characters)"
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= 2 * SHOWN else text[:2 * SHOWN] + "..."


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)
