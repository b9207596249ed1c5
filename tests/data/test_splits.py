"""Splits: seeded (stratified for label tasks) or given as files; the built-in tasks; `infer_kind`."""

import json
from collections import Counter
from pathlib import Path

import pytest

from tuneforge.data.splits import MAX_CARVED_DEV, MAX_LABELS, Task, carve_dev, infer_kind, load_task, split_examples
from tuneforge.data.tasks import Example, TaskInfo, builtin_path, builtin_tasks, read_examples
from tuneforge.errors import TuneforgeError

FRACTIONS = (0.6, 0.1, 0.3)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_examples(n: int, n_labels: int = 4) -> list[Example]:
    return [Example(input=f"item {i}", target=f"label{i % n_labels}", id=f"ex-{i}") for i in range(n)]


def ids(examples) -> list[str]:
    return [ex.id for ex in examples]


# ---------------------------------------------------------------- seeded splits


@pytest.mark.parametrize("stratify", [False, True])
def test_seeded_split_is_deterministic(stratify):
    examples = make_examples(100)
    a = split_examples(examples, seed=3, fractions=FRACTIONS, stratify=stratify)
    b = split_examples(examples, seed=3, fractions=FRACTIONS, stratify=stratify)
    assert {k: ids(v) for k, v in a.items()} == {k: ids(v) for k, v in b.items()}


@pytest.mark.parametrize("stratify", [False, True])
def test_different_seed_gives_different_split(stratify):
    examples = make_examples(100)
    a = split_examples(examples, seed=0, fractions=FRACTIONS, stratify=stratify)
    b = split_examples(examples, seed=1, fractions=FRACTIONS, stratify=stratify)
    assert ids(a["test"]) != ids(b["test"])


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 245])
def test_splits_are_disjoint_and_cover_everything(stratify, n):
    examples = make_examples(n)
    out = split_examples(examples, seed=5, fractions=FRACTIONS, stratify=stratify)
    train, dev, test = (set(ids(out[s])) for s in ("train", "dev", "test"))
    assert not train & dev and not train & test and not dev & test
    assert train | dev | test == set(ids(examples))
    assert len(out["train"]) + len(out["dev"]) + len(out["test"]) == n


def test_split_keeps_file_order_inside_each_split():
    examples = make_examples(60)
    order = {ex.id: i for i, ex in enumerate(examples)}
    out = split_examples(examples, seed=2, fractions=FRACTIONS, stratify=True)
    for split in out.values():
        positions = [order[ex.id] for ex in split]
        assert positions == sorted(positions)


def test_split_sizes_follow_fractions():
    out = split_examples(make_examples(100), seed=0, fractions=FRACTIONS, stratify=False)
    assert (len(out["train"]), len(out["dev"]), len(out["test"])) == (60, 10, 30)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.1, 0.2), (1.2, -0.2, 0.0), (0.5, 0.25, 0.25, 0.0)])
def test_bad_fractions(fractions):
    with pytest.raises(TuneforgeError, match="fractions"):
        split_examples(make_examples(10), seed=0, fractions=fractions, stratify=False)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_stratified_fruit_has_every_label_in_train(seed):
    task = load_task("fruit", seed=seed)
    all_labels = {ex.target for ex in read_examples(builtin_path("fruit"))}
    assert {ex.target for ex in task.train} == all_labels
    assert set(task.labels) == all_labels


def test_load_task_seed_changes_the_split():
    a, b = load_task("fruit", seed=0), load_task("fruit", seed=1)
    assert ids(a.test) != ids(b.test)
    assert ids(load_task("fruit", seed=0).test) == ids(a.test)


# ---------------------------------------------------------------- Task


def test_labels_come_from_train_and_dev_only():
    info = TaskInfo(name="t", kind="labels", instruction=None, source="test")
    task = Task(
        info=info,
        train=[Example("a", "drupe", "1"), Example("b", "pome", "2")],
        dev=[Example("c", "berry", "3")],
        test=[Example("d", "hesperidium", "4"), Example("e", "drupe", "5")],
    )
    assert task.labels == ["berry", "drupe", "pome"]
    assert "hesperidium" not in task.labels


@pytest.mark.parametrize("kind, targets, label_set, metric", [
    ("labels", "text", ["drupe", "pome"], "accuracy"),
    ("generate", "text", None, "exact_match"),  # an open task's answers are generated, not ranked
    ("generate", "list", None, "list_f1"),  # ... and scored as sets of terms when its targets are lists
    ("labels", "list", ["drupe", "pome"], "accuracy"),  # a label is one label, whatever the declaration
])
def test_what_a_task_kind_means_for_prediction_and_scoring(kind, targets, label_set, metric):
    info = TaskInfo(name="t", kind=kind, instruction=None, source="test", targets=targets)
    task = Task(info=info, train=[Example("a", "drupe", "1"), Example("b", "pome", "2"), Example("c", "pome", "3")],
                dev=[], test=[Example("d", "drupe", "4")])
    assert (task.label_set, task.metric) == (label_set, metric)
    assert task.sizes() == {"train": 3, "dev": 0, "test": 1}


def test_task_split_by_name():
    task = load_task("fruit")
    assert task.split("train") is task.train
    assert task.split("dev") is task.dev
    assert task.split("test") is task.test
    with pytest.raises(TuneforgeError, match="validation"):
        task.split("validation")


# ---------------------------------------------------------------- split files


@pytest.fixture
def split_files(tmp_path):
    train = write_jsonl(tmp_path / "mytrain.jsonl", [
        {"id": f"tr{i}", "input": f"item {i}", "target": ["a", "b"][i % 2]} for i in range(10)
    ])
    dev = write_jsonl(tmp_path / "mydev.jsonl", [{"id": "dv0", "input": "dev item", "target": "c"}])
    test = write_jsonl(tmp_path / "mytest.jsonl", [
        {"id": f"te{i}", "input": f"test item {i}", "target": ["a", "b", "zzz"][i % 3]} for i in range(6)
    ])
    return train, dev, test


def test_load_task_from_split_files(split_files):
    train, dev, test = split_files
    task = load_task(train=train, dev=dev, test=test)
    assert ids(task.train) == [f"tr{i}" for i in range(10)]
    assert ids(task.dev) == ["dv0"]
    assert ids(task.test) == [f"te{i}" for i in range(6)]
    assert task.info.name == "mytrain"
    assert task.info.kind == "labels"  # inferred from train+dev
    assert task.labels == ["a", "b", "c"]  # 'zzz' only in test
    assert str(train) in task.info.source and str(test) in task.info.source


def test_train_and_test_without_dev_carve_a_stratified_dev_from_train(split_files):
    train, _, test = split_files
    task = load_task(train=train, test=test)
    assert len(task.train) + len(task.dev) == 10 and len(task.test) == 6
    assert {ex.target for ex in task.dev} == {"a", "b"}, "each label with two or more examples gives one"
    assert not set(ids(task.dev)) & set(ids(task.train))
    assert task.dev_origin.startswith("carved from the train file: 2 of its 10 examples")
    assert load_task(train=train, test=test).dev == task.dev, "seeded"
    assert load_task(train=train, test=test, seed=5).dev != task.dev


def test_a_given_dev_file_and_a_zero_fraction_carve_nothing(split_files):
    train, dev, test = split_files
    assert load_task(train=train, dev=dev, test=test).dev_origin == f"given as a file ({dev})"
    task = load_task(train=train, test=test, dev_fraction=0)
    assert task.dev == [] and len(task.train) == 10 and task.dev_origin.startswith("none")
    with pytest.raises(TuneforgeError, match=r"dev fraction must be in \[0, 1\), got 1.5"):
        load_task(train=train, test=test, dev_fraction=1.5)


def test_carved_dev_keeps_proportions_and_one_per_label():
    examples = [Example(f"x{i}", "big" if i < 90 else ("small" if i < 98 else "single"), f"e{i}") for i in range(99)]
    train, dev, origin = carve_dev(examples, 0.15, seed=0, stratify=True)
    counts = Counter(ex.target for ex in dev)
    assert counts == {"big": 14, "small": 1}, "15 % of 90, at least one of 8, none of a lone label"
    assert len(train) + len(dev) == 99 and "15%, stratified by label, seed 0" in origin


def test_carved_dev_is_bounded():
    examples = make_examples(10_000)
    train, dev, _ = carve_dev(examples, 0.15, seed=0, stratify=True)
    assert len(dev) == MAX_CARVED_DEV and len(train) == 10_000 - MAX_CARVED_DEV


def test_one_file_says_how_it_was_split():
    assert load_task("fruit").dev_origin == "split from one file with train, dev and test: 60% / 10% / 30%, " \
                                           "stratified by label, seed 0"


def test_load_task_split_files_override_task_name(split_files):
    train, _, test = split_files
    task = load_task("fruit", train=train, test=test)
    assert task.info.name == "mytrain"


@pytest.mark.parametrize("which", ["train", "test"])
def test_load_task_needs_both_train_and_test(split_files, which):
    train, dev, test = split_files
    kwargs = {"train": train, "dev": dev} if which == "train" else {"test": test, "dev": dev}
    with pytest.raises(TuneforgeError) as e:
        load_task(**kwargs)
    assert "--train" in str(e.value) and "--test" in str(e.value)


def test_kind_and_instruction_overrides(split_files):
    train, _, test = split_files
    task = load_task(train=train, test=test, kind="generate", instruction="Do it.")
    assert task.info.kind == "generate"
    assert task.info.instruction == "Do it."
    with pytest.raises(TuneforgeError, match="kind"):
        load_task(train=train, test=test, kind="regression")


def test_empty_test_split_file(tmp_path, split_files):
    train, _, _ = split_files
    empty = tmp_path / "emptytest.jsonl"
    empty.write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(TuneforgeError) as e:
        load_task(train=train, test=empty)
    assert "emptytest.jsonl" in str(e.value)
    assert "no examples" in str(e.value)


def test_empty_test_split_after_seeded_split(tmp_path):
    # One example: round(1 * 0.3) == 0 test items.
    f = write_jsonl(tmp_path / "tiny.jsonl", [{"input": "x", "target": "y"}])
    with pytest.raises(TuneforgeError) as e:
        load_task(str(f))
    assert "test split is empty" in str(e.value)
    assert "tiny" in str(e.value)


def test_load_task_from_data_file(tmp_path):
    f = write_jsonl(tmp_path / "colours.jsonl", [
        {"input": f"thing {i}", "target": ["red", "green", "blue"][i % 3]} for i in range(30)
    ])
    task = load_task(str(f), seed=0)
    assert task.info.name == "colours"
    assert task.info.kind == "labels"
    assert task.info.source == str(f)
    assert len(task.train) + len(task.dev) + len(task.test) == 30


# ---------------------------------------------------------------- task names


def test_unknown_task_name_lists_builtins():
    with pytest.raises(TuneforgeError) as e:
        load_task("nosuchtask")
    msg = str(e.value)
    assert "nosuchtask" in msg
    for name in builtin_tasks():
        assert name in msg


@pytest.mark.parametrize("name", ["nope.jsonl", "nope.csv", "nope.json", "some/dir/nope", "./fruit"])
def test_path_looking_name_that_does_not_exist(name):
    with pytest.raises(TuneforgeError) as e:
        load_task(name)
    assert name in str(e.value)
    assert "no such file" in str(e.value)


def test_no_task_at_all():
    with pytest.raises(TuneforgeError, match="--task"):
        load_task(None)


# ---------------------------------------------------------------- built-in tasks


def test_builtin_fruit():
    examples = read_examples(builtin_path("fruit"))
    assert len(examples) >= 150
    pairs = {(ex.input, ex.target) for ex in examples}
    for pair in [("peach", "drupe"), ("apple", "pome"), ("plum", "drupe"), ("pear", "pome"),
                 ("lemon", "hesperidium")]:
        assert pair in pairs


def test_builtin_synonyms():
    examples = read_examples(builtin_path("synonyms"))
    assert len(examples) >= 100
    assert "vaccine" in {ex.input for ex in examples}
    task = load_task("synonyms")  # its JSON declares list targets
    assert (task.info.targets, task.scored_as, task.metric) == ("list", "list", "list_f1")
    assert load_task("fruit").info.targets == "text"
    assert load_task("synonyms", targets="text").metric == "exact_match"
    with pytest.raises(TuneforgeError, match="unknown kind of targets 'set': choose text or list"):
        load_task("synonyms", targets="set")


@pytest.mark.parametrize("name, kind", [("fruit", "labels"), ("synonyms", "generate")])
def test_builtin_kinds(name, kind):
    task = load_task(name)
    assert task.info.kind == kind
    assert task.info.source == f"builtin:{name}"
    assert task.info.name == name
    assert task.info.instruction  # both declare an instruction


def test_builtin_instruction_can_be_overridden():
    assert load_task("fruit", instruction="").info.instruction == ""
    assert load_task("fruit", instruction="Classify.").info.instruction == "Classify."


def test_builtin_inferred_kinds_agree_with_declared():
    assert infer_kind(read_examples(builtin_path("fruit"))) == "labels"
    assert infer_kind(read_examples(builtin_path("synonyms"))) == "generate"


# ---------------------------------------------------------------- infer_kind


def exs(targets):
    return [Example(f"in{i}", t, str(i)) for i, t in enumerate(targets)]


@pytest.mark.parametrize("targets, kind", [
    (["a", "b"] * 10, "labels"),
    (["a", "a", "b", "b"], "labels"),  # 2 distinct <= 4 / 2
    (["a", "b", "c"], "generate"),  # nothing repeats
    (["a", "a", "b", "c"], "generate"),  # 3 distinct > 4 / 2
    ([f"t{i}" for i in range(100)], "generate"),
    ([f"t{i % MAX_LABELS}" for i in range(4 * MAX_LABELS)], "labels"),  # exactly MAX_LABELS labels
    ([f"t{i % (MAX_LABELS + 1)}" for i in range(4 * (MAX_LABELS + 1))], "generate"),  # one too many
])
def test_infer_kind(targets, kind):
    assert infer_kind(exs(targets)) == kind
