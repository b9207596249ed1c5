"""Every setting of every route is a flag of its command, made from the route's config dataclass: named
after the field, defaulting to the field's value, documented by the field's docstring, and read back
into the same dataclass."""

import argparse
import typing
from dataclasses import fields, is_dataclass

import pytest

from tuneforge import cli
from tuneforge.adapt.distill import DistillConfig
from tuneforge.adapt.finetune import FinetuneConfig
from tuneforge.audit.run import AuditConfig
from tuneforge.batch.job import BatchConfig
from tuneforge.settings import SynonymsConfig
from tuneforge.evaluate.prompting import PromptingConfig
from tuneforge.flags import field_docs, from_args

# What each command's flags must default to, written out here rather than read from the parser.
DEFAULTS = {"prompt": PromptingConfig(), "finetune": FinetuneConfig(), "distill": DistillConfig(),
            "audit": AuditConfig(), "batch": BatchConfig(), "synonyms": SynonymsConfig(), "predict": BatchConfig()}
REQUIRED = {"distill": ["--teacher", "t"], "batch": ["--store", "s.db"], "predict": ["--model", "m", "--inputs", "-"],
            "synonyms": ["--store", "s.db", "--topics", "t.txt"]}  # what a command cannot parse without
RENAMED = {"formats": "--format", "picks": "--pick", "calibrations": "--calibration", "scorings": "--scoring"}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def settings_fields(defaults):
    """(class, name, default) of every field, a nested dataclass's fields flattened as the flags are."""
    hints = typing.get_type_hints(type(defaults))
    for f in fields(defaults):
        value = getattr(defaults, f.name)
        if is_dataclass(hints[f.name]):
            yield from settings_fields(value)
        else:
            yield type(defaults), f.name, value


def parse(command: str, *argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args([command, *REQUIRED.get(command, []), *argv])


def test_every_command_with_settings_is_checked_here():
    with_settings = {name for name, p in commands().items() if p.get_default("settings") is not None}
    assert with_settings == set(DEFAULTS)
    walked = {cls for d in DEFAULTS.values() for cls, _, _ in settings_fields(d)}
    assert walked == {PromptingConfig, FinetuneConfig, DistillConfig, AuditConfig, BatchConfig, SynonymsConfig}


@pytest.mark.parametrize("command", sorted(DEFAULTS))
def test_each_field_has_a_flag_with_its_default_and_its_docstring(command):
    actions = {a.dest: a for a in commands()[command]._actions}
    for cls, name, default in settings_fields(DEFAULTS[command]):
        assert name in actions, f"{command}: {cls.__name__}.{name} has no flag"
        action, doc = actions[name], field_docs(cls).get(name)
        flag = RENAMED.get(name, "--" + name.replace("_", "-"))
        assert action.option_strings == [flag], (command, name)
        assert action.default == default, (command, name)
        assert doc, f"{cls.__name__}.{name} has no docstring"
        assert action.help.replace("%%", "%").startswith(doc), (command, name)


@pytest.mark.parametrize("command", sorted(DEFAULTS))
def test_no_flags_build_the_defaults(command):
    assert from_args(parse(command)) == DEFAULTS[command]


@pytest.mark.parametrize("command", sorted(DEFAULTS))
def test_each_default_typed_as_a_flag_reads_back_as_itself(command):
    for _, name, default in settings_fields(DEFAULTS[command]):
        if default is None or isinstance(default, bool):
            continue
        text = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        args = parse(command, RENAMED.get(name, "--" + name.replace("_", "-")), text)
        assert getattr(args, name) == default, (command, name, text)


@pytest.mark.parametrize("command, argv, expected", [
    ("prompt", ["--shots", "0,5", "--format", "plain,chat", "--pick", "first"],
     {"shots": (0, 5), "formats": ("plain", "chat"), "picks": ("first",)}),
    ("prompt", ["--max-new-tokens", "8", "--calibration", "none,content-free", "--scoring", "per-char", "--score-all"],
     {"max_new_tokens": 8, "calibrations": ("none", "content-free"), "scorings": ("per-char",), "score_all": True}),
    ("finetune", ["--lora-targets", "q_proj, v_proj", "--lr", "2e-4"],
     {"lora_targets": ("q_proj", "v_proj"), "lr": 2e-4}),
    ("finetune", ["--max-grad-norm", "0.5", "--max-length", "128", "--merge"],
     {"max_grad_norm": 0.5, "max_length": 128, "merge": True}),
    ("distill", ["--layers", "3", "--epochs", "2", "--lr", "null"],
     {"layers": 3, "training.epochs": 2, "training.lr": None, "training.method": "full"}),
    ("audit", ["--batch-size", "4", "--max-gap", "0.1", "--shots", "1"],
     {"batch_size": 4, "max_gap": 0.1, "shots": (1,)}),
    ("batch", ["--max-input-tokens", "64", "--shots", "2"], {"max_input_tokens": 64, "shots": 2}),
    ("synonyms", ["--shots", "1", "--commit-every", "8"], {"shots": 1, "commit_every": 8}),
])
def test_flags_set_their_fields(command, argv, expected):
    config = from_args(parse(command, *argv))
    for path, value in expected.items():
        got = config
        for key in path.split("."):
            got = getattr(got, key)
        assert got == value, path


@pytest.mark.parametrize("argv, expected", [
    (["finetune", "--epochs", "x"], ["argument --epochs", "an integer", "'x'"]),
    (["prompt", "--shots", "0,a"], ["argument --shots", "integers", "'0,a'"]),
    (["audit", "--max-gap", "high"], ["argument --max-gap", "a number or null", "'high'"]),
    (["finetune", "--lora-targets", "q_proj,,v_proj"], ["argument --lora-targets", "'q_proj,,v_proj'"]),
    (["finetune", "--epochs", "0"], ["tuneforge: error:", "epochs must be positive, got 0"]),
    (["distill", "--teacher", "t", "--method", "lora"], ["tuneforge: error:", "method full"]),
    (["audit", "--batch-size", "0"], ["tuneforge: error:", "batch size"]),
])
def test_a_bad_value_exits_2_with_one_line(argv, expected, capsys, monkeypatch):
    monkeypatch.setattr(cli, "quiet_libraries", lambda: None)  # leaves this process's warnings and logging alone
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse's own checks
        status = e.code
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    for part in expected:
        assert part in err, (part, err)


# The task data is declared once (`data/source.TaskSource`); each command that reads task data takes
# every field of it as a flag, and the Python API verbs take it whole.
TASK_COMMANDS = {"prompt": "fruit", "finetune": "fruit", "distill": "fruit", "audit": "bias-demo"}


@pytest.mark.parametrize("command", sorted(TASK_COMMANDS))
def test_every_task_data_field_is_a_flag_of_each_command_that_reads_data(command):
    from tuneforge.data.source import TASK_FLAGS, TaskSource

    actions = {a.dest: a for a in commands()[command]._actions}
    for f in fields(TaskSource):
        flag = TASK_FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        assert actions[f.name].option_strings == [flag], (command, f.name)
        assert actions[f.name].help.startswith(field_docs(TaskSource)[f.name][:40]), (command, f.name)
    args = parse(command, "--train", "a.csv", "--test", "b.csv", "--dev-fraction", "0.3", "--split-seed", "7",
                 "--input-field", "message", "--targets", "list")
    assert from_args(args, "task_source") == TaskSource(name=TASK_COMMANDS[command], train="a.csv", test="b.csv",
                                                        dev_fraction=0.3, split_seed=7, input_field="message",
                                                        targets="list")


def test_the_api_verbs_and_the_experiment_take_the_one_task_declaration():
    import inspect

    from tuneforge import api
    from tuneforge.data.source import TaskSource
    from tuneforge.experiment.sections import ExperimentConfig

    names = {f.name for f in fields(TaskSource)} - {"name"}
    for verb in (api.prompt, api.finetune, api.distill, api.audit):
        assert not names & set(inspect.signature(verb).parameters), verb.__name__
    assert typing.get_type_hints(ExperimentConfig)["task"] is TaskSource


@pytest.mark.parametrize("argv, expected", [
    (["prompt", "--dev-fraction", "1"], "dev_fraction must be in [0, 1), got 1"),
    (["finetune", "--targets", "labels"], "targets must be text or list, not 'labels'"),
    (["audit", "--split-seed", "-1"], "split_seed must be between 0 and"),
])
def test_a_bad_task_data_flag_exits_2_with_one_line(argv, expected, capsys, monkeypatch):
    monkeypatch.setattr(cli, "quiet_libraries", lambda: None)
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
