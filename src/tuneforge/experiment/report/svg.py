"""A matplotlib figure as an inline <svg> element: deterministic, self-contained, ids unique per figure.

matplotlib's SVG names clip paths with a random salt and stamps a date, so by default the same
results would give different bytes; it also carries an XML prolog and namespace URLs that an inline
SVG in HTML does not need. Text is drawn as paths, so no font has to be present where it is viewed."""

import io
import re
from collections.abc import Callable

from matplotlib import style
from matplotlib.figure import Figure

NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
# A "$" in a route name is a dollar, not the start of mathtext.
STYLE = {"svg.fonttype": "path", "text.parse_math": False}


def figure_svg(name: str, draw: Callable[..., Figure], *args, **kwargs) -> str:
    """`draw(*args, **kwargs)` rendered to an <svg> string whose ids all start with `name`.

    Drawn and saved under matplotlib's default style, so a user's matplotlibrc cannot change the
    report, and with a fixed salt, so the same numbers give the same bytes on every run."""
    with style.context(["default", {**STYLE, "svg.hashsalt": name}]):
        fig = draw(*args, **kwargs)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata=NO_METADATA, bbox_inches="tight")
    return inline(buffer.getvalue(), name)


def inline(svg: str, name: str) -> str:
    """Strip what HTML does not need (prolog, doctype, comments, xmlns) and prefix every id with `name`.

    Several figures in one page would otherwise share ids such as "figure_1" and "DejaVuSans-30"."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", svg)
    return svg.strip() + "\n"
