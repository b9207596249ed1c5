"""The experiment report: a recommendation, then the evidence, as one HTML page and one Markdown file.

Everything here reads the results dict an experiment wrote; nothing loads a model."""

from .build import write_report
from .facts import parameter_facts
from .pareto import pareto_front
from .recommend import recommend

__all__ = ["parameter_facts", "pareto_front", "recommend", "write_report"]
