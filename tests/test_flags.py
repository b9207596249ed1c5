"""Flags made from a dataclass: names, types, defaults and help come from its fields; nested
dataclasses are flattened; `from_args` builds the dataclass back."""

import argparse
from dataclasses import dataclass, field

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.flags import add_settings, field_docs, from_args


@dataclass(frozen=True)
class Inner:
    steps: int = 3
    """Steps to take."""
    rate: float | None = None
    """Rate; None picks one."""


@dataclass(frozen=True)
class Outer:
    shots: tuple[int, ...] = (0, 1)
    """Shot counts,
    over two lines."""
    name_of_thing: str = "a"
    """A name with 100% coverage."""
    loud: bool = False
    """Say more."""
    cache: bool = True
    """Keep a cache."""
    inner: Inner = field(default_factory=Inner)
    """The inner settings."""

    def __post_init__(self):
        if self.name_of_thing == "bad":
            raise TuneforgeError("name_of_thing may not be 'bad'")


@dataclass(frozen=True)
class Child(Outer):
    name_of_thing: str = "b"
    extra: int = 0
    """Only the child has it."""


def parser_for(defaults, **kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_settings(p, defaults, "settings", **kw)
    return p


def test_field_docs_read_the_string_under_each_field_on_one_line():
    assert field_docs(Outer) == {"shots": "Shot counts, over two lines.", "name_of_thing": "A name with 100% coverage.",
                                 "loud": "Say more.", "cache": "Keep a cache.", "inner": "The inner settings."}


def test_a_subclass_keeps_the_docstring_of_a_field_it_only_redefaults():
    docs = field_docs(Child)
    assert docs["name_of_thing"] == "A name with 100% coverage." and docs["extra"] == "Only the child has it."


def test_no_flags_give_the_defaults_and_flags_set_fields():
    p = parser_for(Outer())
    assert from_args(p.parse_args([])) == Outer()
    args = p.parse_args(["--shots", "5, 6", "--name-of-thing", "z", "--loud", "--no-cache", "--steps", "9",
                         "--rate", "0.5"])
    assert from_args(args) == Outer(shots=(5, 6), name_of_thing="z", loud=True, cache=False,
                                    inner=Inner(steps=9, rate=0.5))
    assert from_args(p.parse_args(["--rate", "null"])).inner.rate is None


def test_defaults_come_from_the_instance_given():
    p = parser_for(Outer(shots=(3,), inner=Inner(steps=7)))
    assert from_args(p.parse_args([])) == Outer(shots=(3,), inner=Inner(steps=7))


def test_help_is_the_docstring_then_how_to_type_it():
    helps = {a.dest: a.help % {} for a in parser_for(Outer())._actions}
    assert helps["shots"] == "Shot counts, over two lines. (comma-separated, default: 0,1)"
    assert helps["name_of_thing"] == "A name with 100% coverage. (default: a)"
    assert helps["rate"] == "Rate; None picks one."
    assert helps["loud"] == "Say more."


def test_a_renamed_flag_keeps_its_field():
    p = parser_for(Outer(), flags={"name_of_thing": "--name"})
    assert from_args(p.parse_args(["--name", "q"])).name_of_thing == "q"


@pytest.mark.parametrize("argv, words", [
    (["--steps", "2.5"], ["--steps", "expected an integer, got '2.5'"]),
    (["--shots", "1,x"], ["--shots", "expected comma-separated integers, got '1,x'"]),
    (["--rate", "fast"], ["--rate", "expected a number or null, got 'fast'"]),
])
def test_a_value_of_the_wrong_type_names_the_flag(argv, words):
    with pytest.raises(argparse.ArgumentError) as e:
        parser_for(Outer()).parse_args(argv)
    for word in words:
        assert word in str(e.value)


def test_the_dataclass_checks_the_values():
    with pytest.raises(TuneforgeError, match="may not be 'bad'"):
        from_args(parser_for(Outer()).parse_args(["--name-of-thing", "bad"]))
