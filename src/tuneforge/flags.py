"""Command-line flags made from a settings dataclass, so each setting is declared once, in its dataclass.

A field becomes a flag named after it (`lora_r` -> `--lora-r`), read as its annotation (`0,1,5` for a
tuple, `null` for `X | None`; a `bool` is a switch), defaulting to its value and documented by the
docstring under it. A nested dataclass's fields are flattened (distillation's `training.epochs` is
`--epochs`), so their names must not collide. `from_args` builds the dataclass back from the parsed
arguments, and its `__post_init__` checks the values."""

import argparse
import ast
import inspect
import textwrap
import typing
from dataclasses import fields, is_dataclass
from functools import cache

from tuneforge.settings_io import parse_text


def add_settings(parser: argparse.ArgumentParser, defaults, title: str, flags: dict[str, str] | None = None, *,
                 key: str = "settings") -> None:
    """A flag under the group `title` for every field of the dataclass instance `defaults`, which
    gives the defaults; `flags` names a field's flag otherwise (`{"formats": "--format"}`). `key`
    tells apart several dataclasses on one parser (`from_args(args, key)`)."""
    parser.set_defaults(**{key: defaults})
    _add_fields(parser, parser.add_argument_group(title), defaults, flags or {})


def from_args(args: argparse.Namespace, key: str = "settings"):
    """The settings `add_settings` declared under `key`, with the values parsed into `args`."""
    return _build(type(getattr(args, key)), args)


def _build(cls, args: argparse.Namespace):
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _build(hints[f.name], args) if is_dataclass(hints[f.name]) else getattr(args, f.name)
                  for f in fields(cls) if f.init})


def _add_fields(parser, group, defaults, flags: dict[str, str]) -> None:
    cls = type(defaults)
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in (f for f in fields(cls) if f.init):
        hint, value, doc = hints[f.name], getattr(defaults, f.name), docs.get(f.name, "")
        if is_dataclass(hint):  # argparse groups do not nest: a group of its own
            _add_fields(parser, parser.add_argument_group(f.name, doc), value, flags)
        else:
            _add_flag(group, f.name, hint, value, doc, flags.get(f.name, "--" + f.name.replace("_", "-")))


def _add_flag(group, name: str, hint, default, doc: str, flag: str) -> None:
    doc = doc.replace("%", "%%")  # argparse formats help with %(...)s
    if hint is bool:
        flag = flag if not default else "--no-" + flag.removeprefix("--")
        group.add_argument(flag, dest=name, action="store_false" if default else "store_true", default=default,
                           help=doc)
        return
    group.add_argument(flag, dest=name, type=_reader(hint), default=default, help=doc + _shown(hint, default),
                       metavar=flag.removeprefix("--").replace("-", "_").upper())


def _reader(hint):
    """argparse's `type`: the flag's text as `hint`, or one line naming the flag and what was expected."""
    def read(text: str):
        try:
            return parse_text(hint, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return read


def _shown(hint, default) -> str:
    """What the help adds to the docstring: how to type a list, and the default as it is typed."""
    listed = "comma-separated" if typing.get_origin(hint) is tuple else ""
    spelled = "" if default is None else "default: " + (",".join(map(str, default)) if listed else str(default))
    words = ", ".join(w for w in (listed, spelled) if w).replace("%", "%%")
    return f" ({words})" if words else ""


@cache
def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of the dataclass `cls` (a subclass's own winning), on one line."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for stmt, after in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs
