"""Reading an experiment's results record, where almost every part is optional: the report must
render whatever an experiment managed to record, and the decision must weigh whatever was scored.

The record's shape is declared here once (`ExperimentResults`); a test holds both the producer (a
real run) and the report's fixture to it, so the two cannot drift apart unnoticed."""

from types import UnionType
from typing import NotRequired, Union, TypedDict, get_args, get_origin, get_type_hints, is_typeddict


def nested(data: dict | None, *keys: str):
    """`data[k1][k2]...`, or None as soon as a level is missing or null."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# The shape of results.json, declared once: what `experiment_results` writes and the report reads.
# Every key is always written; any value may be null where a stage did not run or record it.

class Score(TypedDict):
    mean: float
    sd: float | None
    ci95: list[float] | None
    per_draw: list[float] | None
    per_item: NotRequired[list[float]]
    """Each item's score, averaged over the draws (for paired comparisons on the same items)."""


class RouteParameters(TypedDict):
    total: int
    trained: int
    base_total: int
    unchanged: bool | None


class Trial(TypedDict):
    """One setting a fine-tuning search (a learning rate) or a distillation (a student's kept layers)
    trained, scored on dev (never on test)."""
    lr: float
    dev_score: float | None
    best_step: int | None
    steps: int
    seconds: float
    chosen: bool
    stopped_early: bool
    rows: NotRequired[int]
    """Training rows (absent for a trial the budget left out)."""
    shots: NotRequired[int]
    """A fine-tune: the demonstrations in each of its prompts (0: zero-shot)."""
    choice: NotRequired[str]
    """A student: how its layers were chosen (`influence`, `even`, `given`, `student`)."""
    layers: NotRequired[list[int] | None]
    """A student: the teacher layers it kept (None: a student model of its own)."""


class Route(TypedDict):
    """One route: prompting (one row per condition) or an adapted model. Settings are chosen on dev;
    test is scored for the chosen setting (and, on request, for every prompting condition)."""
    name: str
    kind: str
    stage: str
    score: Score | None
    """On test; None for a prompting condition that was not chosen (unless every one is scored)."""
    dev_score: Score | None
    """On dev, where the choice is made; None when the task has no dev split."""
    chosen: bool
    """Prompting: the dev-chosen condition, the route's representative; adapted routes: True."""
    setting: dict
    """What the route ran with: prompting {format, shots, pick, calibration, scoring}; adapted
    routes the chosen learning rate, objective and epochs."""
    trials: list[Trial] | None
    """Fine-tuned routes: every setting the search trained, with its dev score."""
    macro_f1: Score | None
    shots: int
    pick: str | None
    format: str
    draws: int
    parameters: RouteParameters
    size_on_disk_bytes: int
    ms_per_example: float
    tokens_per_example: float | None
    """Tokens processed per test example: prompt (instruction, demonstrations, input) and labels or answer."""
    flops_per_example: float | None
    """Forward compute per test example: 2 x parameters x tokens_per_example (what cost means when
    the recommendation weighs routes: counted, so no timing noise moves it)."""
    examples_per_second: float
    training_seconds: float | None
    peak_memory_bytes: int
    confusion: dict | None
    history: list[dict] | None
    calibration: NotRequired[str]
    """Prompting: `none`, `content-free` or `batch`."""
    scoring: NotRequired[str]
    """Prompting: `sum` or `per-char`."""
    seed: NotRequired[int]
    """Prompting: the first demonstration draw's seed; a fine-tune trained with demonstrations: their seed."""
    prior: NotRequired[list[float] | None]
    """Prompting with batch calibration: the label prior of the first draw, estimated on dev."""
    model_dir: NotRequired[str]
    """Adapted routes: the model as trained."""
    selection: NotRequired[dict | None]
    """Prompting: what the condition's choice weighed: {mean, ci95, items, predictions} over dev and
    the train items scored by cross-validation."""
    choice: NotRequired[dict | None]
    """Prompting, the chosen condition: {best, tied, rule, conditions, cv_items, split_items, on}:
    the best by mean, the conditions tied with it within one standard error, and what it rested on."""


class TaskRecord(TypedDict):
    name: str
    kind: str
    description: str
    sizes: dict[str, int]
    labels: list[str] | None
    warnings: list[str]
    dev_origin: str
    """How the dev split was made (given, carved from train, or split from one file)."""


class StageRecord(TypedDict):
    name: str
    hash: str
    cached: bool
    seconds: float
    peak_memory_bytes: int


class Recommendation(TypedDict):
    route: str | None
    reason: str
    chosen_on: NotRequired[str]
    """`dev` (scores on dev choose; test is shown beside) or `test` where the task has no dev split."""
    best: NotRequired[str]
    margin: NotRequired[float]
    score: NotRequired[float]
    best_score: NotRequired[float]
    ms_per_example: NotRequired[float | None]
    cheaper: NotRequired[float]
    """How many times its compute per example the best must cost for a cheaper route to ship."""
    items: NotRequired[int | None]
    """The items (dev, or test without dev) the paired comparisons rest on."""
    flops_per_example: NotRequired[float | None]
    candidates: NotRequired[list[str]]
    comparisons: NotRequired[list[dict]]
    """Each other route against the best: route, score, paired {difference, ci95, items}, close,
    cost_ratio, cheaper."""
    small_dev: NotRequired[dict]
    """{items, resolves} when dev has under 50 items: about the smallest difference it tells from noise."""


class StoreRecord(TypedDict):
    """The batch job that filled the store with the chosen route, and every job in the store."""
    path: str
    route: str
    setting: str
    name: str | None
    """The model id the setting is served as (`<experiment>-<route>`)."""
    inputs: int
    rows: int
    failed: int
    coverage: float
    size_bytes: int
    summary: dict
    jobs: list[dict]


class ExperimentResults(TypedDict):
    experiment: dict
    task: TaskRecord
    model: dict
    metric: str
    routes: list[Route]
    audit: dict | None
    store: StoreRecord | None
    synonyms: dict | None
    recommendation: Recommendation
    pareto: dict[str, list[str]]
    stages: list[StageRecord]


def shape_problems(record, shape=ExperimentResults, where: str = "results") -> list[str]:
    """Keys the declared `shape` has and `record` lacks, and keys `record` has that the shape does not
    declare, recursively through nested records and lists of them (an empty list: the shape holds)."""
    if record is None or not is_typeddict(shape):
        return []
    hints = get_type_hints(shape)
    problems = [f"{where}: no {key!r}" for key in shape.__required_keys__ if key not in record]
    problems += [f"{where}: {key!r} is not declared" for key in record if key not in hints]
    for key, hint in hints.items():
        for kind in get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,):
            if is_typeddict(kind) and isinstance(record.get(key), dict):
                problems += shape_problems(record[key], kind, f"{where}.{key}")
            elif get_origin(kind) is list and get_args(kind) and is_typeddict(get_args(kind)[0]):
                for i, item in enumerate(record.get(key) or []):
                    problems += shape_problems(item, get_args(kind)[0], f"{where}.{key}[{i}]")
    return problems
