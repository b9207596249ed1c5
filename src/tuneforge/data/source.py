"""Where a task's data comes from, declared once: the CLI's task flags (`flags.add_settings`), the
API verbs' `task` and an experiment's `task` section are all this one dataclass."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tuneforge.data.splits import DEV_FRACTION, Task, load_task
from tuneforge.data.tasks import Fields
from tuneforge.errors import TuneforgeError
from tuneforge.ranges import SEEDS, check_ranges

TASK_FLAGS = {"name": "--task"}
"""The CLI flag of a field not named after it."""


@dataclass(frozen=True)
class TaskSource:
    """The task data: a built-in task or a data file, split by seed, or split files."""

    RANGES: ClassVar[dict] = {"split_seed": SEEDS, "dev_fraction": (0, 1)}

    name: str | None = "fruit"
    """A built-in task (`tuneforge tasks`) or a data file (JSONL, JSON array, CSV, TSV, Parquet, a
    saved `datasets` folder); split by `split_seed`."""
    train: str | None = None
    """Train split file (with `test`: these splits instead of splitting the task)."""
    dev: str | None = None
    """Dev split file (optional)."""
    test: str | None = None
    """Test split file."""
    split_seed: int = 0
    """Seed of the train/dev/test split (and of the dev split carved from a train file)."""
    dev_fraction: float = DEV_FRACTION
    """Train and test files without dev: the share of train carved off as dev (stratified by label);
    0 carves none, and nothing is chosen on dev."""
    instruction: str | None = None
    """Instruction line (default: the task's own; empty: none)."""
    input_field: str | None = None
    """The field (column) of the data files holding the input, when it is not one of input, text,
    prompt, question, sentence (Alpaca and chat `messages` rows are known too)."""
    target_field: str | None = None
    """The field (column) of the data files holding the target, when it is not one of target, label,
    completion, answer."""
    targets: str | None = None
    """`list` when each target is a comma-separated list ("jab, shot"): answers are then scored by list
    precision, recall and F1; `text` (one answer, exact match). Default: what the task declares
    (a built-in task in its JSON file), else text."""

    def __post_init__(self):
        if not 0 <= self.dev_fraction < 1:
            raise TuneforgeError(f"dev_fraction must be in [0, 1), got {self.dev_fraction}")
        if self.targets not in (None, "text", "list"):
            raise TuneforgeError(f"targets must be text or list, not {self.targets!r}")
        check_ranges(self)

    @property
    def stem(self) -> str:
        """A short name for files written about this data: the train file's or the task's."""
        return Path(self.train or self.name or "task").stem

    def load(self) -> Task:
        """The task, its splits read (or made) and checked."""
        return load_task(self.name, train=self.train, dev=self.dev, test=self.test, seed=self.split_seed,
                         instruction=self.instruction, dev_fraction=self.dev_fraction,
                         fields=Fields(self.input_field, self.target_field), targets=self.targets)


def task_source(task) -> TaskSource:
    """`task` as a TaskSource: a built-in task's name, a data file (or, from Python, its rows: a list
    of dicts or a DataFrame) is split by seed 0."""
    return task if isinstance(task, TaskSource) else TaskSource(name=task)
