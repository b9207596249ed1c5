"""The report as one self-contained HTML page: inline CSS, inline SVG plots, no script, no URL.

It opens from a mail attachment or an air-gapped machine exactly as it does on the machine that
made it. All text goes through html.escape; only the SVG, which we rendered ourselves, goes in raw."""

from html import escape

from .document import WARNINGS_TITLE, Document, Figure, Paragraph, Section, Table

MARK_CLASSES = {"✓": "ok", "✗": "bad"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       background: #ffffff; margin: 0; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.7em; margin-bottom: 0.3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #d8d8de; padding-bottom: 4px; }
nav ol { columns: 2; padding-left: 1.4em; }
p.callout { background: #eef6ee; border-left: 4px solid #2e7d32; padding: 10px 14px; font-size: 1.1em; }
div.warnings { background: #fff4e5; border-left: 4px solid #e65100; padding: 2px 14px; }
div.table { overflow-x: auto; margin: 12px 0 18px; }
table { border-collapse: collapse; font-size: 0.88em;
        font-variant-numeric: tabular-nums; }
caption { text-align: left; font-style: italic; padding-bottom: 4px; white-space: nowrap; }
th, td { border: 1px solid #d8d8de; padding: 4px 8px; text-align: left; vertical-align: top;
         white-space: nowrap; }
th { background: #f3f3f6; white-space: normal; }
td.ok { color: #2e7d32; font-weight: bold; text-align: center; }
td.bad { color: #c62828; font-weight: bold; text-align: center; }
figure { margin: 16px 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #4a4a50; max-width: 900px; }
"""


def render_html(doc: Document) -> str:
    """The whole page: title, introduction, a table of contents, then the numbered sections."""
    toc = "".join(f'<li><a href="#section-{n}">{escape(s.title)}</a></li>'
                  for n, s in enumerate(doc.sections, start=1))
    body = [f"<h1>{escape(doc.title)}</h1>"]
    body += [f"<p>{escape(p.text)}</p>" for p in doc.intro]
    body += [render_warnings(doc.warnings)] if doc.warnings else []
    body.append(f"<nav><ol>{toc}</ol></nav>")
    body += [render_section(s, n) for n, s in enumerate(doc.sections, start=1)]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def render_warnings(warnings: list[str]) -> str:
    """The task-data warnings as a highlighted list, so no reader takes a score at face value."""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<div class="warnings" role="note"><p><strong>{escape(WARNINGS_TITLE)}</strong></p><ul>{items}</ul></div>'


def render_section(section: Section, number: int) -> str:
    """A <section> with a numbered heading the table of contents links to."""
    parts = [f'<section id="section-{number}">', f"<h2>{number}. {escape(section.title)}</h2>"]
    for block in section.blocks:
        if isinstance(block, Paragraph):
            parts.append(f'<p class="callout"><strong>{escape(block.text)}</strong></p>' if block.strong
                         else f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(render_table(block))
        elif isinstance(block, Figure):
            parts.append(f"<figure>\n{block.svg}<figcaption>{escape(block.caption)}</figcaption>\n</figure>")
    parts.append("</section>")
    return "\n".join(parts)


def render_table(table: Table) -> str:
    """A plain table; a cell that is only ✓ or ✗ is coloured so a failing check stands out."""
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    rows = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    return (f'<div class="table"><table>{caption}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n'
            "</tbody>\n</table></div>")


def _cell(text: str) -> str:
    css = MARK_CLASSES.get(text)
    return f'<td class="{css}">{escape(text)}</td>' if css else f"<td>{escape(text)}</td>"
