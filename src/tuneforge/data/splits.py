"""Train / dev / test splits: seeded (stratified by label for label tasks) or given as files.

The test split is read only by the final evaluation; demonstrations, training and model choice use
train and dev.
"""

import logging
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tuneforge.data.files import is_saved_dataset
from tuneforge.data.tasks import (
    Example, Fields, TaskInfo, builtin_info, builtin_path, input_key, read_examples, read_task_file,
)
from tuneforge.errors import TuneforgeError

SPLITS = ("train", "dev", "test")

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".tab", ".parquet", ".pq")

# Below this many distinct targets (and with targets repeating) a user's file is a label task.
MAX_LABELS = 50

DEV_FRACTION = 0.15
"""Share of the train file carved off as dev when train and test files come without a dev file."""
MAX_CARVED_DEV = 1000
"""The most examples a carved dev split takes: enough to choose settings, and train keeps the rest."""

# Why an input shared by two splits matters, per pair (earlier split, later split).
OVERLAP_EFFECTS = {
    ("train", "dev"): "dev scores, and the settings chosen on them, are inflated",
    ("train", "test"): "duplicates across splits inflate the test score",
    ("dev", "test"): "settings chosen on dev are tuned to those test items",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """A task with its three splits."""

    info: TaskInfo
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    dev_origin: str = "given"
    """How dev was made, in a sentence (the report shows it)."""

    def split(self, name: str) -> list[Example]:
        """One split by name: `train`, `dev` or `test`."""
        if name not in SPLITS:
            raise TuneforgeError(f"unknown split {name!r}: choose train, dev or test")
        return getattr(self, name)

    @property
    def labels(self) -> list[str]:
        """The closed label set, read from train and dev only (never from test)."""
        return sorted({ex.target for ex in self.train + self.dev})

    @property
    def label_set(self) -> list[str] | None:
        """The labels a label task's answers are ranked over; None for an open task (answers are generated)."""
        return self.labels if self.info.kind == "labels" else None

    @property
    def scored_as(self) -> str:
        """`labels`, `generate` (one answer, by exact match) or `list` (an open task whose targets are
        comma-separated lists, by list precision, recall and F1)."""
        return "list" if self.info.kind == "generate" and self.info.targets == "list" else self.info.kind

    @property
    def metric(self) -> str:
        """The headline metric: `accuracy` for a label task, `exact_match` for an open one, `list_f1`
        for one whose targets are lists."""
        return {"labels": "accuracy", "generate": "exact_match", "list": "list_f1"}[self.scored_as]

    def sizes(self) -> dict[str, int]:
        """Examples per split: {"train": n, "dev": n, "test": n}."""
        return {name: len(self.split(name)) for name in SPLITS}


def load_task(
    task: str | None = None,
    *,
    train: str | Path | None = None,
    dev: str | Path | None = None,
    test: str | Path | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3),
    kind: str | None = None,
    targets: str | None = None,
    instruction: str | None = None,
    dev_fraction: float = DEV_FRACTION,
    fields: Fields = Fields(),
) -> Task:
    """Load a task: a built-in name or a data file split by `seed`, or split files `train`/`test` (+ `dev`).

    A data file may be any format `read_task_file` reads (or, from Python, a list of dicts or a
    DataFrame); `fields` names its input and target fields where they are not a known convention.
    Train and test files without a dev file: dev is carved from train (`carve_dev`: `dev_fraction`,
    stratified by label, seeded; 0 carves none). `kind` (`labels`/`generate`), `targets` (`text`,
    or `list` where each target is a comma-separated list) and `instruction` override what the task
    declares (a built-in task in its JSON file), what the file's rows share, or what is inferred.
    """
    if not 0 <= dev_fraction < 1:
        raise TuneforgeError(f"dev fraction must be in [0, 1), got {dev_fraction}")
    if train is not None or test is not None:
        splits, meta, origin, kind = _given_splits(train, dev, test, fields, kind, dev_fraction, seed)
    else:
        splits, meta, origin, kind = _split_task(task, fields, kind, seed, fractions)
    kind = kind or meta.get("kind") or infer_kind(splits["train"] + splits["dev"])
    if kind not in ("labels", "generate"):
        raise TuneforgeError(f"unknown task kind {kind!r}: choose labels or generate")
    if kind == "labels":
        check_number_labels(splits["train"] + splits["dev"] + splits["test"])
    targets = targets or meta.get("targets") or "text"
    if targets not in ("text", "list"):
        raise TuneforgeError(f"unknown kind of targets {targets!r}: choose text or list")
    for name in ("train", "test"):
        if not splits[name]:
            raise TuneforgeError(f"task {meta['name']!r}: the {name} split is empty ({meta['source']})")
    info = TaskInfo(
        name=meta["name"],
        kind=kind,
        instruction=instruction if instruction is not None else meta.get("instruction"),
        source=meta["source"],
        targets=targets,
    )
    return Task(info=info, **splits, dev_origin=origin)


def _given_splits(train, dev, test, fields: Fields, kind: str | None, dev_fraction: float, seed: int):
    """(splits, meta, how dev was made, kind) of split files; dev carved from train where none is given."""
    if train is None or test is None:
        raise TuneforgeError("split files: give both --train and --test (--dev is optional)")
    train_file = read_task_file(train, fields)
    splits = {"train": train_file.examples, "dev": read_examples(dev, fields) if dev is not None else [],
              "test": read_examples(test, fields)}
    meta = {"name": _name_of(train), "source": f"{_source_of(train)}, {_source_of(dev)}, {_source_of(test)}",
            "instruction": train_file.instruction}
    origin = f"given as a file ({_source_of(dev)})"
    if dev is None:
        kind = kind or infer_kind(splits["train"])
        splits["train"], splits["dev"], origin = carve_dev(splits["train"], dev_fraction, seed, kind == "labels")
    return splits, meta, origin, kind


def _split_task(task, fields: Fields, kind: str | None, seed: int, fractions: tuple[float, float, float]):
    """(splits, meta, how they were made, kind) of a built-in task or one data file, split by `seed`."""
    if task is None:
        raise TuneforgeError("no task: give --task (a built-in name or a data file) or --train/--test files")
    if not isinstance(task, (str, Path)) or _is_data(Path(task)):
        file = read_task_file(task, fields)
        examples = file.examples
        meta = {"name": _name_of(task), "source": _source_of(task), "instruction": file.instruction}
    elif "/" in str(task) or Path(task).suffix.lower() in DATA_SUFFIXES:
        raise TuneforgeError(f"{task}: no such file")
    else:
        examples = read_examples(builtin_path(task))
        meta = {**builtin_info(task), "source": f"builtin:{task}"}
    kind = kind or meta.get("kind") or infer_kind(examples)
    splits = split_examples(examples, seed=seed, fractions=fractions, stratify=kind == "labels")
    origin = (f"split from one file with train, dev and test: {' / '.join(f'{f:.0%}' for f in fractions)}"
              f"{', stratified by label' if kind == 'labels' else ''}, seed {seed}")
    return splits, meta, origin, kind


def _is_data(path: Path) -> bool:
    """A data file, or a folder a `datasets` object was saved to (a task name is neither)."""
    return path.is_file() or is_saved_dataset(path)


def _name_of(source) -> str:
    return Path(source).stem if isinstance(source, (str, Path)) else "rows"


def _source_of(source) -> str:
    if source is None:
        return "-"
    return str(source) if isinstance(source, (str, Path)) else f"{len(source):,} rows given in Python"


def infer_kind(examples: list[Example]) -> str:
    """`labels` when targets come from a small set that repeats, else `generate`."""
    distinct = {ex.target for ex in examples}
    return "labels" if len(distinct) <= MAX_LABELS and len(distinct) <= len(examples) / 2 else "generate"


def check_number_labels(examples: list[Example]) -> None:
    """Refuse one number spelled as two labels (`1` and `1.0` in a CSV): they would be scored as
    different labels. (JSON numbers are read in their shortest spelling already: 1.0 is `1`.)"""
    seen = {}
    for ex in examples:
        try:
            number = float(ex.target)
        except ValueError:
            continue
        first = seen.setdefault(number, ex)
        if first.target != ex.target and math.isfinite(number):
            raise TuneforgeError(f"{ex.where or f'example {ex.id!r}'}: label {ex.target!r} is the number of label "
                                 f"{first.target!r} ({first.where or f'example {first.id!r}'}): write each label "
                                 "one way")


def split_examples(
    examples: list[Example], *, seed: int, fractions: tuple[float, float, float], stratify: bool
) -> dict[str, list[Example]]:
    """Seeded split into train/dev/test; with `stratify`, each label is split in the same proportions."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise TuneforgeError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = random.Random(seed)
    strata = defaultdict(list)
    for ex in examples:
        strata[ex.target if stratify else ""].append(ex)
    out = {"train": [], "dev": [], "test": []}
    for key in sorted(strata):
        items = strata[key][:]
        rng.shuffle(items)
        n_test = round(len(items) * fractions[2])
        n_dev = round(len(items) * fractions[1])
        out["test"] += items[:n_test]
        out["dev"] += items[n_test : n_test + n_dev]
        out["train"] += items[n_test + n_dev :]
    # Keep file order inside each split, so listings read naturally.
    order = {ex.id: i for i, ex in enumerate(examples)}
    return {name: sorted(split, key=lambda ex: order[ex.id]) for name, split in out.items()}


def carve_dev(train: list[Example], fraction: float, seed: int, stratify: bool) -> tuple[list, list, str]:
    """(train, dev, origin): `fraction` of `train` set aside as dev, seeded; stratified by label, each
    label with two or more examples giving at least one (and keeping at least one), dev at most
    MAX_CARVED_DEV examples. The origin says so in a sentence."""
    if fraction == 0 or len(train) < 2:
        return train, [], "none: no dev file was given and none was carved (settings are not chosen on dev)"
    fraction = min(fraction, MAX_CARVED_DEV / len(train))
    rng = random.Random(seed)
    strata = defaultdict(list)
    for ex in train:
        strata[ex.target if stratify else ""].append(ex)
    dev_ids = set()
    for key in sorted(strata):
        items = strata[key][:]
        rng.shuffle(items)
        n = round(len(items) * fraction)
        if stratify and len(items) >= 2:
            n = min(max(n, 1), len(items) - 1)
        dev_ids.update(ex.id for ex in items[:n])
    dev = [ex for ex in train if ex.id in dev_ids]
    kept = [ex for ex in train if ex.id not in dev_ids]
    how = ", stratified by label" if stratify else ""
    return kept, dev, (f"carved from the train file: {len(dev):,} of its {len(train):,} examples "
                       f"({fraction:.0%}{how}, seed {seed}); no dev file was given")


def task_warnings(task: Task) -> list[str]:
    """What makes the task's scores misleading, one sentence each (empty when nothing does):
    inputs shared by two splits (compared by `input_key`: surrounding whitespace and case ignored),
    a single label, a test split of one example."""
    warnings = []
    for (first, second), effect in OVERLAP_EFFECTS.items():
        seen = {input_key(ex.input) for ex in task.split(first)}
        shared = sum(input_key(ex.input) in seen for ex in task.split(second))
        if shared:
            total = len(task.split(second))
            warnings.append(f"{shared:,} of {total:,} {second} inputs also appear in {first} ({effect})")
    targets = {ex.target for ex in task.train + task.dev + task.test}
    if len(targets) == 1:
        warnings.append(f"the task has one label ({next(iter(targets))!r}): every score is trivially 1.000 "
                        "(always answering it is always right)")
    if len(task.test) == 1:
        warnings.append("the test split has 1 example: its score is 0 or 1 and says little")
    return warnings


def warn_about_task(task: Task) -> list[str]:
    """Log each of `task_warnings` once (the CLI prints them as `tuneforge: ...` on stderr) and return them.
    Call it where a command loads its task, not in `load_task`, which stages call again."""
    warnings = task_warnings(task)
    for line in warnings:
        log.warning("task %r: %s", task.info.name, line)
    return warnings
