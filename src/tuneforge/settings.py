"""Every route's settings, as frozen dataclasses: what the command line's flags, the experiment's YAML
sections and the Python API are made from (`flags.py` turns each field into a flag, its docstring
into the help). They import nothing heavy, so a command refuses a bad setting before torch loads.

Each route's module re-exports its own (`from tuneforge.adapt.finetune import FinetuneConfig` works).
The task data's settings are `data/source.TaskSource`; an experiment file's sections extend these in
`experiment/sections.py`.

Longer than 300 lines: every setting of every route and job, each with its docstring (its flag's
help) and range, declared once here.
"""

import re
from dataclasses import dataclass, field
from typing import ClassVar

from tuneforge.data.limits import MAX_INPUT_TOKENS
from tuneforge.errors import TuneforgeError
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import PICKERS
from tuneforge.ranges import SEEDS, check_ranges

CALIBRATIONS = ("none", "content-free", "batch")
"""None; contextual calibration against `N/A`; batch calibration against the mean over the items predicted."""
SCORINGS = ("sum", "per-char")
"""A label's score: its summed log-likelihood, or that divided by its length in characters."""
METHODS = ("lora", "full")
DEFAULT_LRS = {"lora": (1e-4, 3e-4, 1e-3), "full": (1e-5, 3e-5, 1e-4)}
"""The learning rates searched by default (LLaMA-Factory and Unsloth train LoRA at 1e-4 and 2e-4)."""
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a llama-style block: attention and MLP."""
KD_MODES = ("auto", "labels", "logits", "sequence", "none")
LAYER_CHOICES = ("influence", "even")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A served setting's readable name (its model id)."""
BATCH, TOKENS, SHOTS = (1, 4096), (1, 131_072), (0, 256)


@dataclass(frozen=True)
class PromptingConfig:
    """Settings of a prompting comparison."""

    RANGES: ClassVar[dict] = {"shots": SHOTS, "draws": (1, 100), "seed": SEEDS, "batch_size": BATCH,
                              "max_new_tokens": TOKENS, "max_input_tokens": TOKENS, "cv_items": (0, 10**6)}

    shots: tuple[int, ...] = (0, 1, 5)
    """Numbers of demonstrations to compare."""
    formats: tuple[str, ...] = ("plain",)
    """Prompt formats to compare: `plain` and/or `chat`."""
    picks: tuple[str, ...] = ("random", "similar", "balanced")
    """Demonstration pickers to compare: `first`, `random` (seeded draws), `similar` and/or `balanced`
    (labels round-robin, seeded draws)."""
    draws: int = 3
    """Demonstration draws per few-shot condition (random and balanced picking only)."""
    seed: int = 0
    """Seed of the first draw; draw d uses seed + d."""
    calibrations: tuple[str, ...] = ("none", "batch")
    """Label calibrations to compare: `none`, `content-free` (against the input `N/A`; one more
    forward pass per demonstration set) and/or `batch` (against the mean label probability over the
    items predicted, arXiv 2309.17249)."""
    scorings: tuple[str, ...] = ("sum", "per-char")
    """Label scores to compare: `sum` (summed log-likelihood) and/or `per-char` (divided by the
    label's length in characters, lm-evaluation-harness's acc_norm)."""
    cv_items: int = 48
    """Train items each condition is also scored on by cross-validation (demonstrations drawn from the
    rest of train, never the item itself), a seeded sample. 0: none (the choice is made on dev)."""
    choose_on: str = "cv"
    """What the condition is chosen on: `cv` (the train-CV items: dev then scores the chosen condition
    unbiased, as the comparison of routes needs), `cv+dev` (both pooled) or `dev`."""
    score_all: bool = False
    """Also score every condition not chosen on test (shown beside, never choosing; a test pass each)."""
    batch_size: int = 16
    """Prompts per forward pass."""
    max_new_tokens: int = 48
    """Longest generated answer (open tasks)."""
    max_input_tokens: int = MAX_INPUT_TOKENS
    """Longest input of any split, in tokens; a longer row stops the comparison before it starts."""

    def __post_init__(self):
        if not self.shots or any(k < 0 for k in self.shots):
            raise TuneforgeError(f"shots must be non-negative integers, got {list(self.shots)}")
        for pick in self.picks:
            if pick not in PICKERS:
                raise TuneforgeError(f"unknown demonstration picker {pick!r}: choose {', '.join(PICKERS)}")
        if self.choose_on not in ("cv", "cv+dev", "dev"):
            raise TuneforgeError(f"unknown choose_on {self.choose_on!r}: choose cv, cv+dev or dev")
        if not self.picks or not self.formats:
            raise TuneforgeError("give at least one prompt format and one demonstration picker")
        for style in self.formats:
            PromptFormat(style)  # refuses an unknown format now, not after the model has loaded
        if min(self.draws, self.batch_size, self.max_new_tokens, self.max_input_tokens) < 1:
            raise TuneforgeError("draws, batch size, max new tokens and max input tokens must be at least 1")
        for name, given, known in (("calibration", self.calibrations, CALIBRATIONS),
                                    ("scoring", self.scorings, SCORINGS)):
            if not given:
                raise TuneforgeError(f"give at least one {name} (choose from {', '.join(known)})")
            for value in given:
                if value not in known:
                    raise TuneforgeError(f"unknown {name} {value!r}: choose {', '.join(known)}")
        check_ranges(self)


OBJECTIVES = ("tokens", "labels", "labels+tokens")
"""What fine-tuning learns: the answer's tokens, the label set's ranking, or both."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run."""

    RANGES: ClassVar[dict] = {
        "epochs": (1, 1000), "lr": (1e-12, 1.0), "lrs": (1e-12, 1.0), "budget_steps": (1, 10**9),
        "budget_seconds": (0, 10**8), "batch_size": BATCH, "grad_accum": (1, 1024), "warmup_ratio": (0, 1),
        "weight_decay": (0, 1), "max_grad_norm": (1e-6, 1e6), "lora_r": (1, 4096), "lora_alpha": (0, 1e4),
        "lora_dropout": (0, 1), "max_length": (2, TOKENS[1]), "eval_every": (0, 10**9), "patience": (0, 1000),
        "checkpoint_every": (0, 10**9), "checkpoint_seconds": (0, 10**7), "seed": SEEDS, "shots": SHOTS}

    method: str = "lora"
    """`lora` (adapters through peft; the base stays frozen) or `full` (every weight trains)."""
    epochs: int = 8
    """Most passes over the train split (a trial stops earlier when dev stops improving: on fruit, LoRA
    at 1e-3 was still improving on dev after 4 epochs and peaked at 5)."""
    lr: float | None = None
    """Peak learning rate; given, the search tries only it."""
    lrs: tuple[float, ...] | None = None
    """Peak learning rates the search tries, each a trial scored on dev; None = the method's grid
    (LoRA 1e-4, 3e-4, 1e-3; full 1e-5, 3e-5, 1e-4)."""
    budget_steps: int | None = None
    """The search's budget in optimizer steps, all trials together: a trial that could pass it is
    not started (the first always runs). None = no limit."""
    budget_seconds: float | None = None
    """The search's budget in seconds: no trial starts after it is spent (the first always runs)."""
    batch_size: int = 16
    """Rows per micro-batch (all processes together)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming up linearly."""
    schedule: str = "cosine"
    """Decay after warm-up: `cosine`, `linear` or `constant`."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input. None by default, as Unsloth: with none, peft skips a dropped copy of
    every adapter's input (a LoRA step on fruit: 25 % faster), and fruit's dev accuracy held."""
    lora_targets: tuple[str, ...] = LLAMA_TARGETS
    """Names of the modules that get adapters (default: every linear layer of a llama block)."""
    format: str = "plain"
    """Prompt format of the training rows, the same as the prompting route's zero-shot prompt."""
    shots: tuple[int, ...] = (0,)
    """Demonstrations in every training, dev and test prompt, a grid chosen on dev with the learning
    rates: each train row's drawn from the rest of train (never itself), dev and test rows' from
    train, as the prompting route draws them; the model is served with the same."""
    pick: str = "similar"
    """How the demonstrations are picked (`first`, `random`, `similar`, `balanced`; seeded by `seed`)."""
    objective: str = "tokens"
    """What the model learns (label tasks may choose): `tokens` (cross-entropy on the answer's tokens),
    `labels` (cross-entropy over the label set's scores, the summed log-likelihoods the prediction
    ranks by), `labels+tokens` (both, per row)."""
    max_length: int = 256
    """Longest training row in tokens (prompts are cut from the left)."""
    eval_every: int = 0
    """Optimizer steps between dev evaluations; 0 = once per epoch."""
    patience: int = 2
    """Early stopping after this many dev evaluations without improvement; 0 = never."""
    checkpoint_every: int = 0
    """Optimizer steps between checkpoints; 0 = not by steps."""
    checkpoint_seconds: float = 60.0
    """Seconds of training between checkpoints, checked after each step; 0 = not by time (both 0:
    none). By time, a run loses at most about this much to a kill, whatever a step costs."""
    seed: int = 0
    """Seed of the data order, initialisation and dropout."""
    autocast: str = "auto"
    """bf16 autocast with fp32 master weights: `auto` (where the CPU or GPU has bf16), `on` or `off`."""
    merge: bool = False
    """LoRA: also save the merged model."""

    def __post_init__(self):
        checks = [
            (self.method in METHODS, f"unknown method {self.method!r}: choose lora or full"),
            (self.objective in OBJECTIVES, f"unknown objective {self.objective!r}: choose {', '.join(OBJECTIVES)}"),
            (len(self.shots) > 0 and all(k >= 0 for k in self.shots),
             f"shots must be non-negative integers, got {list(self.shots)}"),
            (self.pick in PICKERS, f"unknown demonstration picker {self.pick!r}: choose {', '.join(PICKERS)}"),
            (self.lr is None or self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.lrs is None or len(self.lrs) > 0, "lrs: the learning-rate grid is empty; give at least one"),
            (self.lrs is None or all(lr > 0 for lr in self.lrs), f"lrs: learning rates must be positive, got {self.lrs}"),
            (self.budget_steps is None or self.budget_steps > 0, f"budget_steps must be positive, got {self.budget_steps}"),
            (self.budget_seconds is None or self.budget_seconds > 0,
             f"budget_seconds must be positive, got {self.budget_seconds}"),
            (self.checkpoint_every >= 0 and self.checkpoint_seconds >= 0,
             "checkpoint_every and checkpoint_seconds must be >= 0"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (self.batch_size > 0 and self.grad_accum > 0, "batch size and gradient accumulation must be positive"),
            (self.lora_r > 0, f"LoRA rank must be positive, got {self.lora_r}"),
            (self.lora_alpha > 0, f"LoRA alpha must be positive, got {self.lora_alpha}"),
            (0 <= self.lora_dropout < 1, f"LoRA dropout must be in [0, 1), got {self.lora_dropout}"),
            (0 <= self.warmup_ratio < 1, f"warm-up ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.schedule in ("cosine", "linear", "constant"), f"unknown schedule {self.schedule!r}"),
            (self.autocast in ("auto", "on", "off"), f"autocast must be auto, on or off, not {self.autocast!r}"),
            (self.max_length > 1, "max length must be at least 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise TuneforgeError(message)
        check_ranges(self)

    def uses_bf16(self, device) -> bool:
        """Whether training runs under bf16 autocast on `device` (a torch.device)."""
        from tuneforge.model.load import cpu_supports_bf16

        native = device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())
        return self.autocast == "on" or (self.autocast == "auto" and native)

    @property
    def peak_lr(self) -> float:
        """The learning rate of a run that does not search (distillation's student): `lr`, else the
        middle of the method's grid."""
        return self.lr if self.lr is not None else DEFAULT_LRS[self.method][1]

    def grid(self, has_dev: bool) -> tuple[float, ...]:
        """The learning rates to try: `lr` alone where given, or where there is no dev to choose on."""
        if self.lr is not None or not has_dev:
            return (self.peak_lr,)
        return tuple(self.lrs) if self.lrs is not None else DEFAULT_LRS[self.method]


@dataclass(frozen=True)
class DistillConfig:
    """Settings of a distillation run."""

    RANGES: ClassVar[dict] = {"layers": (1, 1024), "params_ratio": (0, 1), "keep": (0, 1023),
                              "pool_size": (1, 10**7), "weights": (0, 1000), "alpha": (0, 1),
                              "temperature": (0, 100)}

    layers: int | None = None
    """Teacher layers the pruned student keeps; None: from `params_ratio`."""
    params_ratio: float = 0.4
    """Largest student as a share of the teacher's parameters (used when `layers` is None)."""
    layer_choices: tuple[str, ...] = LAYER_CHOICES
    """Which layers the student keeps, each tried and the best chosen on dev: `influence` (the first,
    the last and the most influential between: block influence on train inputs) and `even` (spread evenly)."""
    keep: tuple[int, ...] | None = None
    """The teacher layers to keep, by index (overrides `layers` and `layer_choices`)."""
    kd: str = "auto"
    """`labels` (KL to the teacher over the label set's scores + CE on the hard label + hidden-state
    cosine: label tasks), `logits` (KL to the teacher at each target position + CE), `sequence` (CE on
    the teacher's answers for the pool), `none` (the train labels only: the baseline), or `auto`
    (`labels` for a label task, `logits` for an open one)."""
    pool_size: int | None = None
    """Inputs the student learns from: the train split, then unlabeled or generated inputs the teacher
    labels, up to this many; None: 10x the train split. Unused with `kd` none."""
    weights: tuple[float, ...] = (5.0, 2.0, 1.0)
    """Label-set KD's weights: soft label (KL) : hard label (CE) : hidden-state cosine (DistilBERT's 5:2:1)."""
    alpha: float = 0.5
    """Logit KD: weight of the KD term against cross-entropy on the labels."""
    temperature: float = 2.0
    """Softmax temperature of the KD term."""
    training: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(method="full", epochs=3, lr=3e-4))
    """How the student trains (every weight; the shared loop's settings): 3 epochs of a pool 10x the
    train split are 30 passes over its inputs."""

    def __post_init__(self):
        if self.kd not in KD_MODES:
            raise TuneforgeError(f"unknown --kd {self.kd!r}: choose {', '.join(KD_MODES)}")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise TuneforgeError("alpha must be in [0, 1] and the temperature positive")
        if self.layers is not None and self.layers < 1:
            raise TuneforgeError(f"--layers {self.layers}: the student keeps at least 1 layer")
        if not 0 < self.params_ratio < 1:
            raise TuneforgeError(f"--params-ratio {self.params_ratio}: give a ratio between 0 and 1")
        if not self.layer_choices or any(c not in LAYER_CHOICES for c in self.layer_choices):
            raise TuneforgeError(f"--layer-choices {','.join(self.layer_choices)}: choose from {', '.join(LAYER_CHOICES)}")
        if self.pool_size is not None and self.pool_size < 1:
            raise TuneforgeError(f"--pool-size {self.pool_size}: the pool needs at least 1 input (or leave it "
                                 f"unset: 10x the train split)")
        if len(self.weights) != 3 or any(w < 0 for w in self.weights) or sum(self.weights[:2]) <= 0:
            raise TuneforgeError(f"--weights {','.join(map(str, self.weights))}: give soft,hard,cosine, none "
                                 f"negative, soft or hard above 0")
        if self.training.method != "full":
            raise TuneforgeError("the student trains every weight (method full)")
        check_ranges(self)


@dataclass(frozen=True)
class AuditConfig:
    """Settings of a bias audit."""

    RANGES: ClassVar[dict] = {"shots": SHOTS, "permutations": (1, 10**6), "seed": SEEDS, "batch_size": BATCH,
                              "max_gap": (0, 1), "max_flip_rate": (0, 1)}

    swaps: str = "gender"
    """Swap list: a built-in name (`gender`) or a JSON / CSV / TSV file of term pairs."""
    shots: tuple[int, ...] = (0, 5)
    """Demonstrations for a base model (one audited route per value); adapted models run 0-shot."""
    pick: str = "similar"
    """Demonstration picker for few-shot base routes."""
    split: str = "test"
    """Split to audit."""
    permutations: int = 2000
    """Shuffles of the group labels for the gap's p-value."""
    seed: int = 0
    """Seed of the permutations, the bootstrap and the demonstration draw."""
    batch_size: int = 16
    """Prompts per forward pass."""
    max_gap: float | None = None
    """Gate: fail when a route's largest gap between groups exceeds this."""
    max_flip_rate: float | None = None
    """Gate: fail when a route's flip rate under the swaps exceeds this."""

    def __post_init__(self):
        if not self.shots or any(k < 0 for k in self.shots):
            raise TuneforgeError(f"shots must be non-negative integers, got {list(self.shots)}")
        if self.pick not in PICKERS:
            raise TuneforgeError(f"unknown demonstration picker {self.pick!r}: choose {', '.join(PICKERS)}")
        if self.split not in ("dev", "test"):
            raise TuneforgeError(f"audit the dev or the test split, not {self.split!r}")
        if self.permutations < 1 or self.batch_size < 1:
            raise TuneforgeError("permutations and batch size must be at least 1")
        for name in ("max_gap", "max_flip_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise TuneforgeError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
        check_ranges(self)


@dataclass(frozen=True)
class BatchConfig:
    """Settings of a batch job."""

    RANGES: ClassVar[dict] = {"shots": SHOTS, "seed": SEEDS, "max_new_tokens": TOKENS,
                              "max_input_tokens": TOKENS, "batch_size": BATCH, "commit_every": (1, 10**6)}

    shots: int = 0
    """Demonstrations in each prompt, from the task's train split."""
    pick: str = "first"
    """How each input's demonstrations are picked from train: `first`, `random` (one seeded draw),
    `similar` (the most similar to the input) or `balanced` (labels round-robin, seeded)."""
    seed: int = 0
    """Seed of a random or balanced draw."""
    format: str = "plain"
    """Prompt format: `plain` or `chat`."""
    calibration: str = "none"
    """Label calibration: `none`, `content-free` or `batch` (against the label prior on the task's
    dev split, estimated once and kept in the store's setting)."""
    scoring: str = "sum"
    """Label scores: `sum` or `per-char`."""
    name: str | None = None
    """The setting's readable name, served as the model id (default: `<task>-<route>`)."""
    max_new_tokens: int = 48
    """Longest generated answer."""
    max_input_tokens: int = MAX_INPUT_TOKENS
    """Longer prompts are recorded as failed rows."""
    batch_size: int = 16
    """Prompts per forward pass."""
    commit_every: int = 64
    """Rows per store transaction."""

    def __post_init__(self):
        if self.pick not in PICKERS:
            raise TuneforgeError(f"unknown demonstration picker {self.pick!r}: choose {', '.join(PICKERS)}")
        if self.calibration not in CALIBRATIONS:
            raise TuneforgeError(f"unknown calibration {self.calibration!r}: choose {', '.join(CALIBRATIONS)}")
        if self.scoring not in SCORINGS:
            raise TuneforgeError(f"unknown scoring {self.scoring!r}: choose {', '.join(SCORINGS)}")
        if self.name is not None and not NAME.fullmatch(self.name):
            raise TuneforgeError(f"name {self.name!r}: use letters, digits, '.', '_' and '-' (at most 64, "
                                 "starting with a letter or digit)")
        if min(self.batch_size, self.commit_every, self.max_new_tokens, self.max_input_tokens) < 1 or self.shots < 0:
            raise TuneforgeError("shots must be >= 0; batch size, commit size and token limits must be >= 1")
        check_ranges(self, BatchConfig.RANGES)  # a subclass checks its own after its own checks


WRITERS = ("lora", "few-shot")
"""What writes synonym lists: a LoRA list writer fine-tuned on the task's train topics first, or the
model itself prompted with `shots` demonstrations."""
WORD_FILTERS = ("any", "known")
"""Which candidate terms a synonym list may keep: any, or those whose every word is a whole word of
the model's tokenizer vocabulary (drops misspellings and fragments such as `carr`, `medicaree`)."""


@dataclass(frozen=True)
class SynonymsConfig(BatchConfig):
    """Settings of a synonym-list job. The model over-generates (its greedy list and `samples` sampled
    lists per topic), scores every distinct term it wrote by how likely it is to write that term first
    after the topic in the same prompt, and keeps the likeliest terms. Which threshold, list length and
    word filter is chosen on the task's dev topics, by list F1; the defaults are what won there."""

    RANGES: ClassVar[dict] = {**BatchConfig.RANGES, "writer_epochs": (1, 1000), "samples": (1, 1000),
                              "temperature": (0, 100), "thresholds": (0, 1), "max_terms": (1, 10_000)}

    writer: str = "lora"
    """`lora`: fine-tune a LoRA list writer on the task's train topics first (lr 1e-3, up to
    `writer_epochs`, stopping after 2 epochs without a better dev list F1), prompted zero-shot as it
    was trained; `few-shot`: the model itself with `shots` demonstrations. A model tuneforge already
    trained is used as it is."""
    writer_epochs: int = 10
    """Most epochs the LoRA list writer trains (it stops earlier after 2 without a better dev list F1)."""
    shots: int = 5
    pick: str = "similar"
    max_new_tokens: int = 32
    batch_size: int = 64
    samples: int = 10
    """Sampled lists per topic, besides the greedy one (each topic's draws seeded by `seed` and the topic)."""
    temperature: float = 0.8
    """Sampling temperature of those lists."""
    thresholds: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    """A term is kept when the model's probability of writing it (as the list's first term, after the
    topic) is at least this; chosen on dev among these, each in [0, 1]."""
    max_terms: tuple[int, ...] = (2, 3, 5, 8)
    """Most terms kept per list (the likeliest first); chosen on dev among these."""
    words: tuple[str, ...] = WORD_FILTERS
    """Word filters tried on dev: `any` term, or only `known` ones (each word of the term a whole word of
    the tokenizer's vocabulary, which drops fragments such as `carr`)."""

    def __post_init__(self):
        super().__post_init__()
        if self.writer not in WRITERS:
            raise TuneforgeError(f"unknown writer {self.writer!r}: choose {' or '.join(WRITERS)}")
        if self.samples < 1:
            raise TuneforgeError(f"samples must be at least 1, got {self.samples}")
        if self.writer_epochs < 1:
            raise TuneforgeError(f"writer_epochs must be at least 1, got {self.writer_epochs}")
        if not self.temperature > 0:
            raise TuneforgeError(f"temperature must be above 0, got {self.temperature}")
        if not self.thresholds or any(not 0 <= t <= 1 for t in self.thresholds):
            raise TuneforgeError(f"thresholds must each be between 0 and 1, got {list(self.thresholds)}")
        if not self.max_terms or min(self.max_terms) < 1:
            raise TuneforgeError(f"max_terms must each be at least 1, got {list(self.max_terms)}")
        if not self.words or any(w not in WORD_FILTERS for w in self.words):
            raise TuneforgeError(f"words: choose among {', '.join(WORD_FILTERS)}, got {list(self.words)}")
        check_ranges(self)
