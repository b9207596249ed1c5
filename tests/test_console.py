"""The console's progress callbacks."""

from tuneforge.console import training_progress


def test_only_the_main_process_draws_training_progress():
    with training_progress(main_process=False) as progress:
        assert progress is None
    with training_progress(main_process=True) as progress:
        assert callable(progress)  # nothing drawn until the first step


def test_the_prompting_table_keeps_its_headers_and_intervals_on_one_line(capsys):
    """Twelve columns at the console's own width: a wrapped header would split `test 95% CI`."""
    from tuneforge.console import render_prompting

    score = {"mean": 0.5, "sd": 0.1, "ci95": [0.432, 0.662], "per_draw": [0.4, 0.6]}
    summary = {"accuracy": score, "macro_f1": score, "confusion": {"a": {"a": 1}, "b": {"a": 1}}}
    condition = {"style": "plain", "shots": 5, "pick": "balanced", "calibration": "batch", "scoring": "per-char",
                 "draws": 2, "dev": summary, "test": summary, "cv": summary, "chosen": True, "ms_per_example": 12.5,
                 "selection": {"mean": 0.55, "items": 8, "predictions": 16, "on": "cv"}}
    results = {"metric": "accuracy", "chosen_on": "dev", "conditions": [condition, {**condition, "chosen": False,
                                                                                 "test": None}],
               "task": {"name": "t", "kind": "labels", "sizes": {"train": 8, "dev": 4, "test": 4},
                        "dev_origin": "carved from the train file", "instruction": None},
               "parameters": {"before": {"total": 10}, "after": {"total": 10}, "unchanged": True,
                              "weights_fingerprint_before": "ab" * 32, "weights_fingerprint_after": "ab" * 32},
               "choice": {"chosen": 0, "best": 1, "tied": [0, 1], "cv_items": 8, "split_items": 4}}
    render_prompting(results)
    out = capsys.readouterr().out
    assert "test 95% CI" in out and "[0.432, 0.662]" in out and "balanced" in out and "per-char" in out
    assert "dev split: carved from the train file" in out and "(unchanged)" in out
    said = " ".join(out.split())  # the line as read, however the console wrapped it
    assert ("chosen on 8 train items by cross-validation (dev chose nothing): 16 predictions, mean 0.550; 2 conditions "
            "tie with the best within one standard error, the simplest kept (5-shot balanced batch per-char)") in said
