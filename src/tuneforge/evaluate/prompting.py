"""The prompting route: zero-, one- and few-shot prompts on an unchanged model, chosen on dev.

Every condition of the grid (format x shots x demonstration picker x calibration x label scoring) is
scored on dev and, by cross-validation, on a seeded sample of train items (`cv_items`), each predicted
with demonstrations drawn from the rest of train, never itself. The choice weighs what `choose_on`
says: the train-CV items alone by default, so that dev, which chose nothing, stays an unbiased score
for the comparison of routes (a condition chosen on dev among dozens looks better there than it is);
`cv+dev` pools both; `dev` alone, as where train is too small to spare a row. Of the conditions tied with the best
within one standard error of their paired difference, the simplest (fewest shots, uncalibrated,
summed scores) is the route's chosen condition (`choose_condition`), and only it is scored on test
(every one, on request, shown beside and never choosing). Conditions with seeded picking are repeated
over several demonstration draws and reported as mean +- sd, with a bootstrap CI over the items.
Calibrations and scorings are read from the same forward passes. Demonstrations come from the train
split only.
"""

import itertools
import math
import random
import statistics
import time
from dataclasses import asdict

import torch

from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task, task_warnings
from tuneforge.data.tasks import Example
from tuneforge.evaluate.metrics import mean_ci, summarize
from tuneforge.model.load import LoadedModel, weights_fingerprint
from tuneforge.model.params import count_parameters
from tuneforge.predict.predictor import Predictor
from tuneforge.predict.timing import latency
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import check_shots, pick_demos
from tuneforge.settings import PromptingConfig


def compare_prompting(loaded: LoadedModel, task: Task, cfg: PromptingConfig) -> dict:
    """Score every condition on dev, choose the best, score it on test; return the results record
    (JSON-ready). Without a dev split every condition is scored on test and the choice is made there
    (`chosen_on` says so)."""
    check_feasible(task, cfg)
    check_input_lengths(task, loaded.tokenizer, cfg.max_input_tokens)  # before the first prediction
    before = count_parameters(loaded.model), weights_fingerprint(loaded.model)
    on = "dev" if task.dev else "test"
    cv = cv_sample(task, cfg) if on == "dev" and cfg.choose_on != "dev" else []
    runs = []  # one (predictor, shots, pick) per forward-pass setting; each gives several conditions
    for style in cfg.formats:
        calibration = "content-free" if "content-free" in cfg.calibrations else "none"
        predictor = Predictor(loaded, PromptFormat(style, task.info.instruction), task.label_set,
                              batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, calibration=calibration)
        runs += [(predictor, k, pick) for k in cfg.shots for pick in (cfg.picks if k > 0 else [None])]
    conditions = []
    for predictor, k, pick in runs:
        conditions += run_conditions(predictor, task, on, k, pick, cfg, cv)
    choice = choose_condition(conditions)
    conditions[choice["chosen"]]["chosen"] = True
    if on == "dev":
        for predictor, k, pick in runs:
            wanted = [c for c in conditions if (c["style"], c["shots"], c["pick"]) == (predictor.fmt.style, k, pick)
                      and (cfg.score_all or c["chosen"])]
            if wanted:
                score_on_test(predictor, task, k, pick, cfg, wanted)
    chosen = conditions[choice["chosen"]]
    predictor, k, pick = next(r for r in runs if (r[0].fmt.style, r[1], r[2]) == (chosen["style"], chosen["shots"],
                                                                                   chosen["pick"]))
    time_chosen(predictor, task, k, pick, chosen)
    after = count_parameters(loaded.model), weights_fingerprint(loaded.model)
    return {
        "route": "prompting",
        "task": {**asdict(task.info), "sizes": task.sizes(), "labels": task.label_set, "warnings": task_warnings(task),
                 "dev_origin": task.dev_origin},
        "model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint, "dtype": str(loaded.dtype)},
        "config": asdict(cfg),
        "chosen_on": on,
        "choice": {**choice, "cv_items": len(cv), "split_items": len(task.split(on))},
        "metric": task.metric,
        "parameters": {"before": before[0], "after": after[0], "weights_fingerprint_before": before[1],
                       "weights_fingerprint_after": after[1], "unchanged": before == after},
        "conditions": conditions,
    }


def cv_sample(task: Task, cfg: PromptingConfig) -> list[Example]:
    """The train items scored by cross-validation beside dev: a seeded sample of `cv_items` (all of
    train when it holds fewer), none where train is too small to leave the most shots out of itself."""
    if cfg.cv_items == 0 or len(task.train) <= max(cfg.shots):
        return []
    return random.Random(cfg.seed).sample(task.train, min(cfg.cv_items, len(task.train)))


def choose_condition(conditions: list[dict]) -> dict:
    """The chosen condition (an index into `conditions`) by each one's `selection` per-item scores:
    the best mean, unless simpler conditions tie with it within noise, when the simplest of them.

    A condition ties with the best when their mean per-item difference is at most one standard error
    of it (the one-standard-error rule); simpler means fewer shots, then uncalibrated, then summed
    scores; among equally simple ties the better mean, then the earlier in the grid. `best` is the
    best mean (the first of equal bests), `tied` every condition that ties with it."""
    scores = [c["selection"]["per_item"] for c in conditions]
    means = [statistics.fmean(s) for s in scores]
    best = max(range(len(conditions)), key=means.__getitem__)
    tied = [i for i in range(len(conditions)) if i == best or within_one_se(scores[best], scores[i])]
    chosen = min(tied, key=lambda i: (simplicity(conditions[i]), -means[i], i))
    return {"chosen": chosen, "best": best, "tied": tied,
            "rule": "the simplest condition within one standard error of the best"}


def within_one_se(best: list[float], other: list[float]) -> bool:
    """Whether `other` trails `best` on the same items by at most one standard error of the mean
    per-item difference (and so ties with it within noise)."""
    diff = [b - o for b, o in zip(best, other, strict=True)]
    se = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return statistics.fmean(diff) <= se + 1e-12


def simplicity(condition: dict) -> tuple:
    """How elaborate a condition is, simplest first: shots, then calibration, then length-normalized
    scores."""
    return condition["shots"], condition["calibration"] != "none", condition["scoring"] != "sum"


def check_feasible(task: Task, cfg: PromptingConfig) -> None:
    """Refuse settings the task cannot satisfy (cheap: call it before loading the model)."""
    check_shots(task, max(cfg.shots))


def variants(task: Task, cfg: PromptingConfig) -> list[tuple[str, str]]:
    """The (calibration, scoring) pairs a forward pass is read under: the grid for a label task, the
    plain answer for an open one."""
    if task.label_set is None:
        return [("none", "sum")]
    return list(itertools.product(cfg.calibrations, cfg.scorings))


def predict_draws(predictor: Predictor, task: Task, items: list[Example], k: int, pick: str | None,
                  seeds: list[int]) -> tuple[list, float, float]:
    """Each draw's Predictions for `items` (demonstrations from train), the seconds it took, and the
    tokens processed per item (the mean over the draws: `Predictor.tokens`)."""
    start = time.perf_counter()
    demos, draws = [], []
    for seed in seeds:
        demos.append([pick_demos(task.train, ex, k, pick or "first", seed, labelled=task.label_set is not None)
                      for ex in items])
        draws.append(predictor.predict(items, demos[-1]))
    seconds = time.perf_counter() - start
    tokens = [t for d, p in zip(demos, draws) for t in predictor.tokens(items, d, p.outputs)]
    return draws, seconds, statistics.fmean(tokens) if tokens else 0.0


def run_conditions(predictor: Predictor, task: Task, split: str, k: int, pick: str | None,
                   cfg: PromptingConfig, cv: list[Example] = ()) -> list[dict]:
    """The conditions of one (format, shots, picker) setting, scored on `split` over its draws: one per
    calibration x scoring, all read from the same forward passes. Batch calibration's label prior is
    each draw's own over `split`, kept in `priors` for the test pass (and the store) to use. The `cv`
    train items are scored alike (`cv`), and `selection` is what the choice weighs (`choose_on`)."""
    seeded = pick in ("random", "balanced")  # first-k and similar are fixed
    seeds = [cfg.seed + d for d in range(cfg.draws if seeded else 1)]
    items = task.split(split)
    draws, seconds, tokens = predict_draws(predictor, task, items, k, pick, seeds)
    cv_draws = predict_draws(predictor, task, list(cv), k, pick, seeds)[0] if cv else []
    gold = [ex.target for ex in items]
    conditions = []
    for calibration, scoring in variants(task, cfg):
        priors = [d.prior(scoring).tolist() for d in draws] if calibration == "batch" else None
        answers = [d.ranked(calibration, scoring) for d in draws]
        scored = summarize(gold, answers, task.scored_as)
        on_cv = (summarize([ex.target for ex in cv], [d.ranked(calibration, scoring) for d in cv_draws],
                           task.scored_as) if cv else None)
        conditions.append({
            "format": predictor.fmt.id, "style": predictor.fmt.style, "shots": k, "pick": pick,
            "calibration": calibration, "scoring": scoring, "draws": len(seeds), "seeds": seeds,
            "dev": scored if split == "dev" else None,
            "test": scored if split == "test" else None,
            "cv": on_cv, "selection": selection(scored, on_cv, task.metric, len(seeds), cfg.choose_on),
            "chosen": False, "predictions": answers[0] if split == "test" else None, "priors": priors,
            "seconds": seconds, "ms_per_example": 1000 * seconds / (len(seeds) * len(items)),
            "tokens_per_example": tokens,
        })
    return conditions


def time_chosen(predictor: Predictor, task: Task, k: int, pick: str | None, chosen: dict) -> None:
    """The chosen condition's latency, in place, timed as every route is (`predict.timing.latency`):
    its first draw's demonstrations picked and its prompts predicted."""
    seed, labelled = chosen["seeds"][0], task.label_set is not None

    def predict(items):
        return predictor.predict(items, [pick_demos(task.train, ex, k, pick or "first", seed, labelled=labelled)
                                         for ex in items])

    timed = latency(predict, task.test)
    chosen.update(ms_per_example=timed["ms_per_example"], latency=timed)


def selection(scored: dict, cv: dict | None, metric: str, draws: int, choose_on: str = "cv") -> dict:
    """What a condition's choice weighs (`choose_on`): its per-item scores on the train-CV items, on
    dev and train-CV pooled, or on dev (each item once, its draws averaged; dev where there are no
    CV items), their mean with its bootstrap CI, how many predictions they rest on, and on what."""
    on = choose_on if cv else "dev"
    per_item = (scored[metric]["per_item"] if on != "cv" else []) + (cv[metric]["per_item"] if on != "dev" else [])
    return {"mean": statistics.fmean(per_item), "ci95": mean_ci(per_item), "per_item": per_item,
            "items": len(per_item), "predictions": len(per_item) * draws, "on": on}


def score_on_test(predictor: Predictor, task: Task, k: int, pick: str | None, cfg: PromptingConfig,
                  conditions: list[dict]) -> None:
    """Score `conditions` (one forward-pass setting) on test, in place, batch calibration against the
    dev priors; their latency is the test pass's."""
    draws, seconds, tokens = predict_draws(predictor, task, task.test, k, pick, conditions[0]["seeds"])
    gold = [ex.target for ex in task.test]
    for c in conditions:
        priors = c["priors"] or [None] * len(draws)
        answers = [d.ranked(c["calibration"], c["scoring"], p if p is None else torch.tensor(p))
                   for d, p in zip(draws, priors)]
        c.update(test=summarize(gold, answers, task.scored_as), predictions=answers[0], seconds=seconds,
                 ms_per_example=1000 * seconds / (len(draws) * len(task.test)), tokens_per_example=tokens)
