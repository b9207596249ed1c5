"""The report as Markdown: the same document as the HTML, with each plot replaced by its caption.

Every plot's numbers also appear in a table or a sentence, so nothing is lost in a terminal or a
code review; the plots themselves live in report.html."""

import re

from .document import WARNINGS_TITLE, Document, Figure, Paragraph, Section, Table

SPECIAL = re.compile(r"([\\`*_\[\]<|])")  # ">" and "#" only mean something at a line's start
LINE_START = re.compile(r"^([#>+-])")


def render_markdown(doc: Document) -> str:
    """The whole document as CommonMark with pipe tables."""
    parts = [f"# {escape(doc.title)}"]
    parts += [escape(p.text) for p in doc.intro]
    if doc.warnings:
        parts.append(f"**{escape(WARNINGS_TITLE)}**\n\n" + "\n".join(f"- {escape(w)}" for w in doc.warnings))
    for number, section in enumerate(doc.sections, start=1):
        parts += render_section(section, number)
    return "\n\n".join(parts) + "\n"


def render_section(section: Section, number: int) -> list[str]:
    """The heading, then each block; a figure becomes a pointer to the HTML report."""
    parts = [f"## {number}. {escape(section.title)}"]
    for block in section.blocks:
        if isinstance(block, Paragraph):
            parts.append(f"**{escape(block.text)}**" if block.strong else escape(block.text))
        elif isinstance(block, Table):
            parts.append(render_table(block))
        elif isinstance(block, Figure):
            parts.append(f"*Figure (plot in report.html): {escape(block.caption)}*")
    return parts


def render_table(table: Table) -> str:
    """A pipe table, with its caption as an italic line above it."""
    lines = [f"*{escape(table.caption)}*", ""] if table.caption else []
    lines.append("| " + " | ".join(escape(h) or " " for h in table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def escape(text: str) -> str:
    """Backslash the characters Markdown would read as markup; fold newlines so tables stay whole."""
    text = SPECIAL.sub(r"\\\1", " ".join(str(text).split("\n")))
    return LINE_START.sub(r"\\\1", text)
