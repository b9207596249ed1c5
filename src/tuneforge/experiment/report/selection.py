"""How each route's setting was chosen on dev: the setting in words, every trial a fine-tune trained,
and the routes whose dev score the test split does not bear out."""

from tuneforge import units

from .document import Paragraph, Section, Table, not_run
from .results import metric, nested, routes

TITLE = "Fine-tuning trials on dev"
ORDER = ("shots", "format", "calibration", "scoring", "lr", "objective", "epochs")
"""The order a setting is read in; keys not listed follow in the record's order."""


def setting_words(setting: dict | None) -> str:
    """A route's setting as a person says it: "4-shot similar, chat format, batch-calibrated, per-char
    scoring"; "lr 3e-4, labels objective, 4 epochs". A key not known here shows as "key value"."""
    keys = sorted(setting or {}, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))
    parts = [_words(key, setting) for key in keys if setting[key] is not None
             and not (key == "pick" and "shots" in setting)]  # the pick goes with the shots
    return ", ".join(parts) or units.MISSING


def _words(key: str, setting: dict) -> str:
    value = setting[key]
    if key == "shots":
        pick = setting.get("pick") if value else None  # 0-shot picks nothing
        return f"{value}-shot" + (f" {pick}" if pick else "")
    if key == "calibration":
        return "uncalibrated" if value == "none" else f"{value}-calibrated"
    if key == "lr":
        return f"lr {learning_rate(value)}"
    if key == "epochs":
        return f"{value:g} epoch" + ("" if value == 1 else "s")
    if key in ("format", "scoring", "objective"):
        return f"{value} {key}"
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"


def learning_rate(lr: float | None) -> str:
    """A learning rate as people write it: 0.0003 -> "3e-4", 2.5e-5 -> "2.5e-5"."""
    if lr is None:
        return units.MISSING
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def trials(results: dict) -> Section:
    """Every setting each fine-tuned route trained, scored on dev; the route kept the best of them."""
    searched = [r for r in routes(results) if r.get("trials")]
    if not searched:
        return Section(TITLE, [not_run("no fine-tuned route recorded the settings it tried")])
    explain = ("Each fine-tuned or distilled route trained one model per setting below (a learning rate, with "
               "the demonstrations per prompt where several were tried; for a student, the teacher layers it "
               "keeps) and kept the one with the best dev score (✓); the test split played no part. Best step: "
               "the evaluation whose weights were kept; stopped early: training ended before its planned steps "
               "because the dev score stopped improving.")
    headers = ["Setting", f"Dev {metric(results)}", "Best step", "Steps", "Time", "Stopped early", "Chosen"]
    tables = [Table(headers, [_trial_row(t) for t in r["trials"]], f"{r['name']}: {len(r['trials'])} trials")
              for r in searched]
    return Section(TITLE, [Paragraph(explain), *tables])


def _trial_row(trial: dict) -> list[str]:
    stopped = trial.get("stopped_early")
    kept = trial.get("layers")
    shots = f"{trial['shots']}-shot, " if trial.get("shots") else ""
    return [
        f"{trial.get('choice')}: layers {' '.join(map(str, kept))}" if kept else shots + learning_rate(trial.get("lr")),
        units.score(trial.get("dev_score")),
        units.exact(trial.get("best_step")),
        units.exact(trial.get("steps")),
        units.seconds(trial.get("seconds")),
        units.MISSING if stopped is None else "yes" if stopped else "no",
        "✓" if trial.get("chosen") else "",
    ]


def chosen_mark(route: dict) -> str:
    """✓ for the setting chosen on dev, blank for a prompting condition that was not; a dash where
    nothing was chosen on dev (no dev score)."""
    if nested(route, "dev_score", "mean") is None:
        return units.MISSING
    return "✓" if route.get("chosen") is not False else ""


def prompting_choice(results: dict) -> list[Paragraph]:
    """How the prompting condition was chosen: on what, the predictions behind it, the conditions tied
    within noise and the simplest kept, and its gap from what chose it to test (the winner's curse)."""
    route = next((r for r in routes(results) if r.get("choice")), None)
    if route is None:
        return []
    choice, chosen_by = route["choice"], route.get("selection") or {}
    on = chosen_by.get("on") or ("cv+dev" if choice["cv_items"] else "dev")
    cv = (f"{choice['cv_items']} train items scored by cross-validation (each with demonstrations from the rest of "
          f"train, never itself)")
    split = f"{choice['split_items']} {choice['on']} items"
    where = {"cv": f"{cv}, not on dev: dev, which chose nothing, scores it unbiased for the comparison of routes",
             "cv+dev": f"{split} and {cv}", "dev": split}[on]
    text = (f"The prompting condition was chosen among {choice['conditions']} on {where}: "
            f"{units.exact(chosen_by.get('predictions'))} predictions with the draws, "
            f"mean {units.score(chosen_by.get('mean'))}{_ci_words(chosen_by.get('ci95'))}.")
    tied = [name for name in choice["tied"] if name != route["name"]]
    if tied:
        text += (f" {len(choice['tied'])} conditions tie with the best by mean ({choice['best']}) within one "
                 f"standard error of their paired difference; the simplest (fewest shots, uncalibrated, summed "
                 f"scores) was kept: {route['name']}.")
    chose, test = chosen_by.get("mean"), nested(route, "score", "mean")
    if chose is not None and test is not None:
        text += (f" It scores {units.score(chose)} on what chose it and {units.score(test)} on test, a gap of "
                 f"{test - chose:+.3f}: the best of many conditions on few items tends to look better than it is "
                 f"(the winner's curse), and test, never used to choose, is the fair figure.")
    return [Paragraph(text)]


def _ci_words(ci: list[float] | None) -> str:
    return f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})" if ci else ""


def disagreements(results: dict) -> list[str]:
    """A warning for each route whose dev mean lies outside its test 95% CI: a choice made on dev that
    test does not bear out."""
    found = []
    for route in routes(results):
        dev, ci = nested(route, "dev_score", "mean"), nested(route, "score", "ci95")
        if dev is not None and ci and not ci[0] <= dev <= ci[1]:
            found.append(f"{route['name']}: dev and test disagree: dev {units.score(dev)}, test "
                         f"{units.score_ci(route['score'])}: the dev split may be too small or unlike test.")
    return found
