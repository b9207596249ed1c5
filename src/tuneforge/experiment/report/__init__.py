"""The experiment report: the recommendation, then the evidence, as one HTML page and one Markdown file.

Everything here reads the results dict an experiment wrote — the decision (recommendation, Pareto
fronts) included, which the experiment made; nothing loads a model or decides."""

from .build import write_report
from .facts import parameter_facts

__all__ = ["parameter_facts", "write_report"]
