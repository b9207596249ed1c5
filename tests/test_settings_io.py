import json
import re
import typing
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from tuneforge.adapt.distill import DistillConfig
from tuneforge.adapt.finetune import FinetuneConfig
from tuneforge.settings_io import apply_overrides, from_dict, load_config, parse_text, to_dict
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.prompting import PromptingConfig


@dataclass(frozen=True)
class Inner:
    """A nested section with its own check."""

    rate: float = 0.1
    """A positive rate."""
    name: str = "inner"
    """Free text."""
    steps: int = 3
    """A count."""

    def __post_init__(self):
        if self.rate <= 0:
            raise TuneforgeError(f"rate must be positive, got {self.rate}")


@dataclass(frozen=True)
class Outer:
    """One field of every supported kind."""

    size: int = 1
    """int."""
    ratio: float = 0.5
    """float."""
    label: str = "x"
    """str."""
    flag: bool = False
    """bool."""
    limit: int | None = None
    """Optional int."""
    ids: tuple[int, ...] = (0, 1)
    """Tuple of ints."""
    tags: tuple[str, ...] = ("a",)
    """Tuple of strings."""
    mode: Literal["fast", "slow"] = "fast"
    """Literal."""
    inner: Inner = field(default_factory=Inner)
    """Nested section with the class defaults."""
    tuned: Inner = field(default_factory=lambda: Inner(rate=0.5, name="tuned"))
    """Nested section whose default differs from the class defaults."""
    maybe: Inner | None = None
    """Optional nested section."""


@dataclass(frozen=True)
class Quoted:
    """Annotations as strings, as under `from __future__ import annotations`."""

    count: "int" = 1
    """int."""
    scale: "float | None" = None
    """Optional float."""


@dataclass(frozen=True)
class Required:
    """A field without a default."""

    name: str
    """Must be given."""


@dataclass(frozen=True)
class Experiment:
    """The real configs as sections of one file."""

    name: str = "run"
    """Free text."""
    prompting: PromptingConfig = field(default_factory=PromptingConfig)
    """Prompting section."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """Fine-tuning section."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Distillation section."""


# ---- overrides -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("2e-4", 2e-4), ("1e3", 1000.0), ("1.0e3", 1000.0), ("-1E-2", -0.01), (".5", 0.5), ("0.1", 0.1),
    ("5", 5), ("-3", -3), ("true", True), ("False", False), ("null", None), ("~", None), ("", None),
    ("[0, 1, 5]", [0, 1, 5]), ("{lr: 1}", {"lr": 1}), ("plain", "plain"), ("'5'", "5"),
    ("on", "on"), ("off", "off"), ("yes", "yes"), ("010", "010"), ("0,1,5", "0,1,5"), ("2024-01-01", "2024-01-01"),
    ("a: b", "a: b"), ("[x", "[x"), ("#x", "#x"), ("x=y", "x=y"),
])
def test_override_values(text, value):
    got = apply_overrides({}, [f"key={text}"])["key"]
    assert got == value and type(got) is type(value)


def test_overrides_are_pure_create_sections_and_apply_in_order():
    data = {"a": {"b": 1, "c": 2}, "d": 3}
    got = apply_overrides(data, ["--a.b=10", "x.y.z=plain", "d=4", "d=5"])
    assert got == {"a": {"b": 10, "c": 2}, "d": 5, "x": {"y": {"z": "plain"}}}
    assert data == {"a": {"b": 1, "c": 2}, "d": 3}
    assert apply_overrides(data, []) is not data


@pytest.mark.parametrize("override, message", [
    ("lr", "malformed override 'lr'"),
    ("--lr", "malformed override '--lr'"),
    ("=5", "malformed override '=5'"),
    ("a..b=1", "malformed override 'a..b=1'"),
    ("a.=1", "malformed override 'a.=1'"),
    ("d.e=1", "override 'd.e=1': 'd' is a setting (3), not a section"),
])
def test_bad_overrides(override, message):
    with pytest.raises(TuneforgeError, match="^" + re.escape(message)):
        apply_overrides({"d": 3}, [override])


# ---- from_dict -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    ({}, Outer()),
    ({"size": 7, "ratio": 2, "label": "y", "flag": True, "limit": 3}, Outer(7, 2.0, "y", True, 3)),
    ({"limit": None}, Outer(limit=None)),
    ({"label": 5}, Outer(label="5")),
    ({"label": 2e-4}, Outer(label="0.0002")),
    ({"label": True}, Outer(label="true")),
    ({"ids": [3, 4]}, Outer(ids=(3, 4))),
    ({"ids": (3, 4)}, Outer(ids=(3, 4))),
    ({"ids": 5}, Outer(ids=(5,))),
    ({"ids": "0,1, 5"}, Outer(ids=(0, 1, 5))),
    ({"ids": []}, Outer(ids=())),
    ({"tags": "plain"}, Outer(tags=("plain",))),
    ({"tags": "plain,chat"}, Outer(tags=("plain", "chat"))),
    ({"tags": ["x,y"]}, Outer(tags=("x,y",))),
    ({"mode": "slow"}, Outer(mode="slow")),
    ({"inner": {"steps": 9}}, Outer(inner=Inner(steps=9))),
    ({"tuned": {"steps": 9}}, Outer(tuned=Inner(rate=0.5, name="tuned", steps=9))),
    ({"maybe": {"steps": 2}}, Outer(maybe=Inner(steps=2))),
    ({"maybe": None}, Outer(maybe=None)),
])
def test_from_dict_values(data, expected):
    got = from_dict(Outer, data)
    assert got == expected
    assert type(got.ratio) is float


@pytest.mark.parametrize("data, message", [
    ({"size": True}, "size: expected an integer, got true"),
    ({"size": 1.0}, "size: expected an integer, got 1.0"),
    ({"size": "1"}, "size: expected an integer, got '1'"),
    ({"ratio": False}, "ratio: expected a number, got false"),
    ({"ratio": "fast"}, "ratio: expected a number, got 'fast'"),
    ({"flag": "yes"}, "flag: expected true or false, got 'yes'"),
    ({"flag": 1}, "flag: expected true or false, got 1"),
    ({"label": None}, "label: expected a string, got null"),
    ({"label": [1]}, "label: expected a string, got [1]"),
    ({"limit": "x"}, "limit: expected an integer or null, got 'x'"),
    ({"limit": True}, "limit: expected an integer or null, got true"),
    ({"ids": "0,x"}, "ids: expected a list of integers, got '0,x'"),
    ({"ids": [0, True]}, "ids: expected a list of integers, got [0, true]"),
    ({"ids": "0,,1"}, "ids: expected a list of integers, got an empty item in '0,,1'"),
    ({"ids": None}, "ids: expected a list of integers, got null"),
    ({"mode": "medium"}, "mode: expected one of 'fast', 'slow', got 'medium'"),
    ({"inner": 5}, "inner: expected a mapping of settings, got 5"),
    ({"inner": {"steps": "3"}}, "inner.steps: expected an integer, got '3'"),
    ({"maybe": {"rate": "x"}}, "maybe.rate: expected a number, got 'x'"),
])
def test_wrong_types_name_the_key_the_type_and_the_value(data, message):
    with pytest.raises(TuneforgeError) as err:
        from_dict(Outer, data, "o.yaml: ")
    assert str(err.value) == f"o.yaml: {message}"


@pytest.mark.parametrize("data, message", [
    ({"sise": 1}, "unknown key 'sise'; did you mean 'size'? (known: size, ratio, label, flag, limit, ids, tags, "
                  "mode, inner, tuned, maybe)"),
    ({"zzz": 1}, "unknown key 'zzz' (known: size, ratio, label, flag, limit, ids, tags, mode, inner, tuned, maybe)"),
    ({"inner": {"rat": 1}}, "unknown key 'inner.rat'; did you mean 'rate'? (known: rate, name, steps)"),
    ({"maybe": {"stpes": 1}}, "unknown key 'maybe.stpes'; did you mean 'steps'? (known: rate, name, steps)"),
    ({1: 2}, "unknown key '1' (known: size, ratio, label, flag, limit, ids, tags, mode, inner, tuned, maybe)"),
])
def test_unknown_keys(data, message):
    with pytest.raises(TuneforgeError) as err:
        from_dict(Outer, data)
    assert str(err.value) == message


@pytest.mark.parametrize("cls, data, message", [
    (Outer, {"inner": {"rate": -1}}, "inner: rate must be positive, got -1.0"),
    (Inner, {"rate": 0}, "rate must be positive, got 0.0"),
    (Required, {}, "missing required key 'name'"),
    (Outer, [1], "config: expected a mapping of settings, got [1]"),
])
def test_checks_of_the_dataclass_get_the_dotted_path(cls, data, message):
    with pytest.raises(TuneforgeError) as err:
        from_dict(cls, data)
    assert str(err.value) == message


def test_string_annotations():
    assert from_dict(Quoted, {"count": 2, "scale": 1}) == Quoted(2, 1.0)
    with pytest.raises(TuneforgeError, match=r"^scale: expected a number or null, got 'big'$"):
        from_dict(Quoted, {"scale": "big"})


# ---- the real configs ------------------------------------------------------------------------------------------

def test_real_configs_build_and_nested_defaults_come_from_the_parent():
    got = from_dict(DistillConfig, {"layers": 7, "training": {"epochs": 2}})
    assert got == DistillConfig(layers=7, training=FinetuneConfig(method="full", epochs=2, lr=3e-4))
    assert from_dict(PromptingConfig, {"shots": "0,2", "formats": "plain,chat", "picks": "random"}) == (
        PromptingConfig(shots=(0, 2), formats=("plain", "chat"), picks=("random",)))
    assert from_dict(FinetuneConfig, {"lr": 1, "lora_targets": "q_proj"}) == FinetuneConfig(
        lr=1.0, lora_targets=("q_proj",))


@pytest.mark.parametrize("cls, data, message", [
    (DistillConfig, {"training": {"epochs": "two"}}, "training.epochs: expected an integer, got 'two'"),
    (DistillConfig, {"training": {"lrr": 1}}, "unknown key 'training.lrr'; did you mean 'lr'?"),
    (DistillConfig, {"training": {"epochs": 0}}, "training: epochs must be positive, got 0"),
    (DistillConfig, {"training": {"method": "lora"}}, "the student trains every weight (method full)"),
    (DistillConfig, {"layers": True}, "layers: expected an integer or null, got true"),
    (FinetuneConfig, {"lr": "fast"}, "lr: expected a number or null, got 'fast'"),
    (PromptingConfig, {"shots": [0, -1]}, "shots must be non-negative integers, got [0, -1]"),
])
def test_real_config_errors(cls, data, message):
    with pytest.raises(TuneforgeError) as err:
        from_dict(cls, data)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("obj", [
    Outer(7, 2.5, "y", True, 3, (4,), ("p", "q"), "slow", Inner(steps=1), Inner(rate=9.0), Inner(name="m")),
    DistillConfig(layers=3, training=FinetuneConfig(method="full", lr=None)),
    FinetuneConfig(lr=2e-4, lora_targets=("q_proj",), autocast="off"),
    PromptingConfig(shots=(0, 2), formats=("chat",)),
    Experiment(),
])
def test_round_trip_through_plain_data_and_yaml(obj, tmp_path):
    data = to_dict(obj)
    assert json.loads(json.dumps(data)) == data  # plain data: lists, not tuples
    assert from_dict(type(obj), data) == obj
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    assert load_config(type(obj), tmp_path / "c.yaml") == obj


def test_to_dict_writes_tuples_as_lists_and_sections_as_dicts():
    data = to_dict(DistillConfig())
    assert data["training"]["lora_targets"] == list(FinetuneConfig().lora_targets)
    assert data["training"]["method"] == "full" and data["layers"] is None


# ---- load_config -----------------------------------------------------------------------------------------------

EXPERIMENT = """\
name: demo
prompting:
  shots: [0, 1, 5]
finetune:
  lr: 2e-4
  autocast: off
  epochs: 1e3
"""


@pytest.fixture
def experiment(tmp_path):
    def write(text: str):
        path = tmp_path / "experiment.yaml"
        path.write_text(text)
        return path
    return write


def test_load_config_reads_yaml_numbers_as_numbers_and_off_as_text(experiment):
    got = load_config(Experiment, experiment(EXPERIMENT.replace("1e3", "3")))
    assert got.finetune.lr == 2e-4 and got.finetune.autocast == "off" and got.finetune.epochs == 3
    assert got.prompting.shots == (0, 1, 5) and got.name == "demo"


def test_load_config_applies_overrides_and_creates_sections(experiment):
    got = load_config(Experiment, experiment(EXPERIMENT.replace("1e3", "3")), [
        "--finetune.lr=1e-3", "--distill.training.epochs=2", "prompting.shots=0,2", "name=5"])
    assert got.finetune.lr == 1e-3 and got.prompting.shots == (0, 2) and got.name == "5"
    assert got.distill.training == FinetuneConfig(method="full", epochs=2, lr=3e-4)
    with pytest.raises(TuneforgeError, match="the file is empty"):
        load_config(Experiment, experiment("# only a comment\n"))


@pytest.mark.parametrize("text, overrides, message", [
    (EXPERIMENT, [], "experiment.yaml:7: finetune.epochs: expected an integer, got 1000.0"),
    (EXPERIMENT + "  lrr: 1\n", [], "experiment.yaml:8: unknown key 'finetune.lrr'; did you mean 'lr'?"),
    (EXPERIMENT + "bogus: 1\n", [], "experiment.yaml:8: unknown key 'bogus'"),
    (EXPERIMENT.replace("[0, 1, 5]", "[0, -1]"), [], "experiment.yaml:2: prompting: shots must be non-negative"),
    (EXPERIMENT, ["--finetune.epochs=two"], "--finetune.epochs=two: finetune.epochs: expected an integer, got 'two'"),
    (EXPERIMENT, ["finetune.epochs=2", "finetune.lrr=1"], "finetune.lrr=1: unknown key 'finetune.lrr'"),
    ("name: a\n", ["finetune.epochs=2", "--finetune.lr=-1"], "--finetune.lr=-1: finetune: learning rate must be"),
    (EXPERIMENT, ["--finetune.epochs=2", "finetune.lr=-1"], "experiment.yaml:4: finetune: learning rate must be"),
    (EXPERIMENT, ["finetune.epochs=2", "distill.kd=x"], "distill.kd=x: distill: unknown --kd 'x'"),
    (EXPERIMENT + "  lr: 1\n", [], "experiment.yaml:8: duplicate key 'finetune.lr' (also at line 5)"),
    ("name: a\nfinetune:\n  lr: 1e-4\n epochs: 2\n", [],
     "experiment.yaml:4: invalid YAML: expected <block end>, but found '<block mapping start>' "
     "(while parsing a block mapping from line 1)"),
    ("finetune:\n  lora_targets: [a, b\n  epochs: 2\n", [], "experiment.yaml:3: invalid YAML: expected ',' or ']'"),
    ("a: b: c\n", [], "experiment.yaml:1: invalid YAML: mapping values are not allowed here"),
    ("- 1\n- 2\n", [], "experiment.yaml: expected a mapping of settings at the top, got [1, 2]"),
])
def test_load_config_errors_point_at_the_line_or_the_override(experiment, text, overrides, message):
    with pytest.raises(TuneforgeError) as err:
        load_config(Experiment, experiment(text), overrides)
    assert str(err.value).startswith(message.replace("experiment.yaml", str(experiment(text))))


def test_load_config_missing_file(tmp_path):
    with pytest.raises(TuneforgeError, match=r"nope\.yaml: cannot read the config file: No such file"):
        load_config(Experiment, tmp_path / "nope.yaml")


def test_an_override_switches_a_null_section_back_on():
    from tuneforge.experiment.sections import ExperimentConfig

    data = apply_overrides({"full": None, "lora": {"epochs": 2}}, ["full.epochs=2"])
    assert data == {"full": {"epochs": 2}, "lora": {"epochs": 2}}
    config = from_dict(ExperimentConfig, data)
    assert config.full.method == "full" and config.full.epochs == 2


@pytest.mark.parametrize("hint, text, expected", [
    (int, "5", 5),
    (int, "-1", -1),
    (float, "2e-4", 2e-4),
    (float, "3", 3.0),
    (str, "5", "5"),  # text settings take the text as typed
    (str, "null", "null"),
    (int | None, "null", None),
    (float | None, "0.25", 0.25),
    (bool, "true", True),
    (tuple[int, ...], "0, 1,5", (0, 1, 5)),
    (tuple[int, ...], "7", (7,)),
    (tuple[str, ...], "q_proj, v_proj", ("q_proj", "v_proj")),
    (Literal["fast", "slow"], "slow", "slow"),
])
def test_parse_text_reads_a_flag_as_its_annotation(hint, text, expected):
    value = parse_text(hint, text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("hint, text, message", [
    (int, "1.5", "expected an integer, got '1.5'"),
    (int, "true", "expected an integer, got 'true'"),
    (float, "fast", "expected a number, got 'fast'"),
    (int | None, "none", "expected an integer or null, got 'none'"),
    (tuple[int, ...], "0,a", "expected comma-separated integers, got '0,a'"),
    (tuple[str, ...], "a,,b", "expected comma-separated strings, got 'a,,b'"),
    (Literal["fast", "slow"], "medium", "expected one of 'fast', 'slow', got 'medium'"),
])
def test_parse_text_says_what_was_expected(hint, text, message):
    with pytest.raises(ValueError) as e:
        parse_text(hint, text)
    assert str(e.value) == message


# ---- texts that are not settings at all, and numbers no setting can take ------------------------------------

def _laughs(levels: int) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: *l{levels - 1}\n"


@pytest.mark.parametrize("text, message", [
    (_laughs(9), ":5: this holds more than 10,000 values with its aliases expanded"),  # l4: 9^5 values
    ("name: &a [*a]\n", ":1: an alias here refers to a value that contains it"),
    ("name: x\nprompting: {shots: &s [1, [2, *s]]}\n", ":2: an alias here refers to a value that contains it"),
    ("name: " + "[" * 33 + "]" * 33 + "\n", ":1: lists and mappings nested more than 32 levels deep"),
    ("name: x\nprompting:\n  seed: " + "1" * 31 + "\n", ":3: invalid YAML: an integer of 31 digits"),
])
def test_yaml_that_would_eat_memory_or_recurse_is_refused_before_it_is_built(experiment, text, message):
    path = experiment(text)
    with pytest.raises(TuneforgeError) as err:
        load_config(Experiment, path)
    assert str(err.value).startswith(f"{path}{message}")


def test_shared_aliases_within_the_limit_are_settings_as_usual(experiment):
    text = "name: x\nfinetune: &ft {lr: 1.0e-3, epochs: 2}\ndistill: {training: *ft}\n"
    got = load_config(Experiment, experiment(text))
    assert got.finetune.lr == got.distill.training.lr == 1e-3 and got.distill.training.epochs == 2
    with pytest.raises(TuneforgeError, match="unknown key 'l0'"):  # 2 x 9^2 values: within 10,000, and read
        load_config(Experiment, experiment(_laughs(3)))


def test_a_long_value_is_quoted_short(experiment):
    path = experiment("name: [" + ", ".join(f"item{i}" for i in range(3000)) + "]\n")
    with pytest.raises(TuneforgeError) as err:
        load_config(Experiment, path)
    assert str(err.value) == (f"{path}:1: name: expected a string, got ['item0', 'item1', 'item2', 'item3', 'item4', "
                              "... (3,000 items)]")
    with pytest.raises(TuneforgeError) as err:
        from_dict(Experiment, {"name": "x" * 10_000, "prompting": {"shots": "y" * 10_000}})
    assert len(str(err.value)) < 200 and "(10,000 characters)" in str(err.value)


def test_a_file_not_in_utf8_names_its_line_and_a_bom_is_read_as_nothing(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"name: x\nprompting:\n  formats: [caf\xe9]\n")
    with pytest.raises(TuneforgeError, match=r"x\.yaml:3: not UTF-8 text \(byte 34: 0xe9\)"):
        load_config(Experiment, path)
    path.write_bytes(b"\xef\xbb\xbfname: bom\n")
    assert load_config(Experiment, path).name == "bom"


def test_an_override_that_is_an_alias_bomb_is_refused():
    with pytest.raises(TuneforgeError, match="contains it"):
        apply_overrides({}, ["name=&a [*a]"])


def _numeric_fields():
    """(config class, field) for every int or float setting of every config dataclass."""
    import dataclasses

    from tuneforge.experiment import sections as experiment
    from tuneforge import settings

    classes = {c for m in (settings, experiment) for c in vars(m).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == m.__name__}
    for cls in sorted(classes, key=lambda c: c.__name__):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            parts = {a for h in (hint, *typing.get_args(hint)) for a in (h, *typing.get_args(h))}
            if parts & {int, float} and bool not in parts:
                yield cls, f.name


@pytest.mark.parametrize("cls, name", list(_numeric_fields()), ids=lambda v: getattr(v, "__name__", v))
def test_every_numeric_setting_has_a_finite_range_checked_by_its_dataclass(cls, name):
    assert name in cls.RANGES, f"{cls.__name__}.{name} has no range"
    low, high = cls.RANGES[name]
    listed = "tuple" in str(typing.get_type_hints(cls)[name])
    for bad in (float("inf"), float("nan"), high * 10 + 1, low - 1):
        value = (bad,) if listed else bad
        with pytest.raises(TuneforgeError):  # the range, or a field's own older check in its own words
            cls(**{name: value})


@pytest.mark.parametrize("data, message", [
    ({"finetune": {"lrs": [1e-4, float("inf")]}}, "finetune.lrs must each be between 1e-12 and 1, got inf"),
    ({"finetune": {"seed": -1}}, "finetune.seed must be between 0 and 4,294,967,295, got -1"),
    ({"finetune": {"grad_accum": 100_000}}, "finetune.grad_accum must be between 1 and 1,024, got 100,000"),
    ({"distill": {"temperature": float("nan")}}, "distill.temperature must be between 0 and 100, got nan"),
])
def test_a_setting_out_of_range_is_named_with_its_range(data, message):
    with pytest.raises(TuneforgeError) as err:
        from_dict(Experiment, {"name": "x", **data})
    assert str(err.value) == message
