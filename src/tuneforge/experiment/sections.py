"""What one experiment runs: the model, the task and a section per route, as frozen dataclasses.

A section set to `null` in the YAML file is not run. The route sections reuse the routes' own
configs; the distillation, batch and synonym sections add the few settings only an experiment
needs (which stage teaches, which inputs go into the store) by extending them, so the YAML keys
stay flat (`distill.layers`, not `distill.settings.layers`).
"""

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar

from tuneforge.settings_io import apply_overrides, from_dict, load_config, to_dict
from tuneforge.data.source import TaskSource
from tuneforge.errors import TuneforgeError
from tuneforge.settings import (
    AuditConfig, BatchConfig, DistillConfig, FinetuneConfig, PromptingConfig, SynonymsConfig, check_ranges,
)

ROUTE_STAGES = ("prompting", "lora", "full", "distill")


@dataclass(frozen=True)
class FullStage(FinetuneConfig):
    """Full fine-tuning: every weight trains (so a section given only `epochs: 2` is full)."""

    method: str = "full"


@dataclass(frozen=True)
class DistillStage(DistillConfig):
    """Distillation, plus where its teacher and extra inputs come from."""

    RANGES: ClassVar[dict] = {**DistillConfig.RANGES, "sizes": (1, 1024)}

    teacher: str = "lora"
    """The stage whose model teaches: `lora` or `full`."""
    unlabeled: str | None = None
    """A file of unlabeled inputs the teacher labels for the student's pool (optional)."""
    sizes: tuple[int, ...] = ()
    """Layer counts of more students, each a route of its own (`distilled (N layers)`) learning from
    the same pool and teacher outputs, so the report plots score against parameters and latency
    across student sizes."""

    def __post_init__(self):
        super().__post_init__()
        if self.teacher not in ("lora", "full"):
            raise TuneforgeError(f"distill.teacher must be lora or full, not {self.teacher!r}")
        if any(n < 1 for n in self.sizes) or len(set(self.sizes)) != len(self.sizes):
            raise TuneforgeError(f"distill.sizes: give distinct layer counts of at least 1, not {list(self.sizes)}")


@dataclass(frozen=True)
class BatchStage(BatchConfig):
    """The batch job that fills the prediction store with the chosen route's predictions."""

    route: str = "recommended"
    """`recommended` (the report's recommendation) or a stage: `prompting`, `lora`, `full`, `distill`."""
    inputs: str | None = None
    """File of inputs to predict (default: every input of the task's data)."""

    def __post_init__(self):
        super().__post_init__()
        if self.route not in ("recommended", *ROUTE_STAGES):
            raise TuneforgeError(f"batch.route must be recommended or one of {', '.join(ROUTE_STAGES)}, "
                                 f"not {self.route!r}")


@dataclass(frozen=True)
class SynonymsStage(SynonymsConfig):
    """Synonym lists written offline into the store (the offline-inference reference case), by the
    recipe of `tuneforge synonyms`, on the built-in `synonyms` task's train (demonstrations) and dev
    (the filter's choice) topics."""

    topics: str | None = None
    """File of topics (default: the built-in `synonyms` task's terms)."""
    model: str | None = None
    """The model that writes the lists: any local model directory, e.g. a bigger one than serves, or a
    list writer fine-tuned on the synonyms task (default: the experiment's base model)."""
    queries: str | None = None
    """Live queries the lists are scored on (JSONL {"query", "topics"}; default: the built-in ones,
    with the built-in topics)."""


@dataclass(frozen=True)
class ReportConfig:
    """How the report chooses."""

    RANGES: ClassVar[dict] = {"margin": (0, 1), "cheaper": (1, 1000)}

    margin: float = 0.05
    """The recommendation ships a cheaper route only when it is close to the best: the mean of their
    paired per-item difference on dev lies within this of zero (its CI is quoted beside)."""
    cheaper: float = 1.5
    """... and only when the best costs at least this many times its compute per example (FLOPs)."""

    def __post_init__(self):
        if not 0 <= self.margin <= 1:
            raise TuneforgeError(f"report.margin must be between 0 and 1, got {self.margin}")
        check_ranges(self)


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: every route on one task, compared in one report."""

    name: str = "experiment"
    """Name of the run; its directory defaults to runs/<name>."""
    model: str | None = None
    """Base model: a local model directory or hub id (default: the embedded SmolLM2-135M-Instruct)."""
    dtype: str = "auto"
    """Inference dtype of every route: auto (bf16 where the CPU has it), bf16 or fp32."""
    task: TaskSource = field(default_factory=TaskSource)
    """The task data."""
    prompting: PromptingConfig | None = field(default_factory=PromptingConfig)
    """Zero-, one- and few-shot prompting of the unchanged base model."""
    lora: FinetuneConfig | None = field(default_factory=lambda: FinetuneConfig(method="lora", merge=True))
    """LoRA fine-tuning (merged, so it can teach, be audited and fill the store)."""
    full: FullStage | None = None
    """Full fine-tuning (every weight); off unless given."""
    distill: DistillStage | None = field(default_factory=DistillStage)
    """A layer-pruned student distilled from the fine-tuned teacher."""
    audit: AuditConfig | None = field(default_factory=AuditConfig)
    """The bias audit of every route's model."""
    batch: BatchStage | None = field(default_factory=BatchStage)
    """The chosen route's predictions into the prediction store."""
    synonyms: SynonymsStage | None = None
    """Synonym lists for topics into the same store (base model); off unless given."""
    report: ReportConfig = field(default_factory=ReportConfig)
    """The recommendation's margin."""

    def __post_init__(self):
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise TuneforgeError(f"name {self.name!r} must be a single folder name (no '/', '\\' or '..'): "
                                 "the run goes to runs/<name>")
        if self.lora is not None and self.lora.method != "lora":
            raise TuneforgeError("lora.method must be lora (full fine-tuning has its own section, full)")
        if self.full is not None and self.full.method != "full":
            raise TuneforgeError("full.method must be full (LoRA has its own section, lora)")
        if self.distill is not None and getattr(self, self.distill.teacher) is None:
            raise TuneforgeError(f"distill.teacher is {self.distill.teacher}, but that section is off (null)")
        if not any(getattr(self, s) is not None for s in ROUTE_STAGES):
            raise TuneforgeError("no route to run: prompting, lora, full and distill are all off")


def experiment_config(config="demo", overrides=()) -> ExperimentConfig:
    """An `ExperimentConfig` from a config object, a YAML file or "demo", with dotted overrides."""
    if isinstance(config, ExperimentConfig):
        return from_dict(ExperimentConfig, apply_overrides(to_dict(config), overrides)) if overrides else config
    if config == "demo":
        config = Path(str(resources.files("tuneforge.experiment") / "demo.yaml"))
    return load_config(ExperimentConfig, config, overrides)
