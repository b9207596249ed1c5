"""The report as plain data: sections of paragraphs, tables and figures.

Sections are built once from the results; `markdown.py` and `html.py` each render the same document,
so the two reports can never disagree about a number."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paragraph:
    text: str
    """Plain text; renderers escape it."""
    strong: bool = False
    """Set for the one line a reader must not miss (the recommendation)."""


@dataclass(frozen=True)
class Table:
    headers: list[str]
    """Column titles."""
    rows: list[list[str]]
    """Cells already formatted as text, one list per row, as many cells as headers."""
    caption: str | None = None
    """A short line above the table saying what it shows."""


@dataclass(frozen=True)
class Figure:
    svg: str
    """An inline <svg> element (no XML prolog, ids unique to this figure; see svg.py)."""
    caption: str
    """What the plot shows and how to read it; the Markdown report prints only this."""


Block = Paragraph | Table | Figure


@dataclass(frozen=True)
class Section:
    title: str
    """The heading."""
    blocks: list[Block] = field(default_factory=list)
    """Contents in reading order."""


@dataclass(frozen=True)
class Document:
    title: str
    """The page title and top heading."""
    intro: list[Paragraph]
    """What was compared, for a reader who has never heard of tuneforge."""
    sections: list[Section]
    """The numbered sections, recommendation first."""
    warnings: list[str] = field(default_factory=list)
    """Problems with the task data (e.g. inputs shared by train and test, a dev split whose scores test
    does not bear out), shown as a list right under the introduction, before any score."""


WARNINGS_TITLE = "Warnings about the task data (read them before trusting any score below):"


def not_run(what: str) -> Paragraph:
    """The one wording every optional part uses when it is missing, so a reader (and a test) finds it."""
    return Paragraph(f"Not run: {what}.")
