"""Reading the results dict, where almost every part is optional.

The report must render whatever an experiment managed to record, so every section reads through
these instead of indexing and hoping."""

from tuneforge.experiment.records import nested

__all__ = ["nested", "routes", "metric", "metric_words"]

METRIC_WORDS = {
    "accuracy": "accuracy (the share of test examples given the right label)",
    "exact_match": "exact match (the share of outputs equal to the reference, ignoring case and punctuation)",
    "list_f1": "list F1 (per example, the F1 of the answer's terms against the reference list's, ignoring case, "
               "punctuation and plural endings; averaged)",
}


def routes(results: dict) -> list[dict]:
    """The evaluated routes in run order (an empty list when none were recorded)."""
    return results.get("routes") or []


def metric(results: dict) -> str:
    """The metric's name as a column title uses it: "accuracy", "exact match"."""
    return (results.get("metric") or "score").replace("_", " ")


def metric_words(results: dict) -> str:
    """The metric with a plain-words definition, for the introduction."""
    name = results.get("metric") or "score"
    return METRIC_WORDS.get(name, name.replace("_", " "))
