"""Write the experiment report: results dict in, report.html and report.md out.

Reads the dict only; it never loads a model or re-runs a stage, so a report can be rebuilt from an
old results.json in a second, on a machine without the model."""

from pathlib import Path

from tuneforge.atomic import write_text_atomic

from . import bookkeeping, diagnostics, fairness, overview, selection
from .document import Document
from .html import render_html
from .markdown import render_markdown


def write_report(results: dict, out_dir: Path) -> dict[str, Path]:
    """Write report.html and report.md into `out_dir`, each atomically; results.json is the caller's.
    The recommendation and the Pareto fronts are the experiment's (`experiment.decide`), read here."""
    doc = build_document(results, results.get("recommendation") or {"route": None, "reason": "the experiment recorded none"})
    out_dir = Path(out_dir)
    return {
        "html": write_text_atomic(out_dir / "report.html", render_html(doc)),
        "markdown": write_text_atomic(out_dir / "report.md", render_markdown(doc)),
    }


def build_document(results: dict, rec: dict) -> Document:
    """Every section in reading order: the decision first, then the evidence, then the bookkeeping."""
    name = (results.get("experiment") or {}).get("name") or "unnamed"
    sections = [
        overview.recommendation(rec),
        overview.summary(results),
        overview.tradeoffs(results),
        selection.trials(results),
        diagnostics.learning_curves(results),
        diagnostics.few_shot_spread(results),
        diagnostics.confusion(results, rec.get("best")),
        fairness.audit(results),
        bookkeeping.parameter_counts(results),
        bookkeeping.store(results),
        bookkeeping.synonym_lists(results),
        bookkeeping.stages(results),
    ]
    return Document(f"tuneforge experiment report: {name}", overview.intro(results), sections,
                    warnings=overview.warnings(results) + selection.disagreements(results))
