"""A small document model, written as Markdown, as self-contained HTML and to the terminal.

The report, the comparison and the runner's summary build their content once as blocks, so that the
Markdown, the HTML and the terminal always say the same thing. A table cell's CSS class colours it in
HTML and on the terminal (VERDICT_CLASS, CHANGED); Markdown cannot colour.
"""
import base64
import html
from dataclasses import dataclass, field


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    warning: bool = False


@dataclass
class Table:
    header: list
    rows: list
    # Per row, the CSS class of each cell (None: none); HTML only, Markdown cannot colour.
    classes: list = field(default_factory=list)


@dataclass
class Image:
    name: str
    caption: str
    plot: object  # anything with .png (PNG bytes), drawn when first asked for: lab.records.plots.Plot

    @property
    def path(self):
        return f"plots/{self.name}.png"

    @property
    def png(self):
        return self.plot.png


@dataclass
class Details:
    summary: str
    text: str


def to_markdown(blocks):
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(f"> **{block.text}**" if block.warning else block.text)
        elif isinstance(block, Table):
            out.append("\n".join(["| " + " | ".join(md_cell(c) for c in block.header) + " |",
                                  "|" + "---|" * len(block.header)]
                                 + ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in block.rows]))
        elif isinstance(block, Image):
            out.append(f"![{block.caption}]({block.path})")
        elif isinstance(block, Details):
            out.append(f"<details><summary>{html.escape(block.summary)}</summary>\n\n```\n{block.text}\n```\n\n"
                       "</details>")
    return "\n\n".join(out) + "\n"


def md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


# The CSS class of a table cell, by what it shows, and its colour on the terminal.
CHANGED = "changed"
STYLES = {"reproduced": "bold green", "not-reproduced": "bold red", "not-run": "bold yellow",
          CHANGED: "bold yellow", "rule": "dim"}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 75em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.reproduced { background: #d8f0d8; color: #145214; font-weight: bold; }
td.not-reproduced { background: #f8d4d4; color: #7a1010; font-weight: bold; }
td.not-run { background: #eee; color: #555; font-weight: bold; }
td.rule { color: #555; font-size: 0.9em; }
td.changed { background: #fff3cd; }
p.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em; font-weight: bold; }
figure { margin: 1em 0; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


def to_html(blocks, title):
    out = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}"
           f"</title>\n<style>{STYLE}</style>\n</head>\n<body>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p{class_attribute('warning' if block.warning else None)}>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            out.append(html_table(block))
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode()
            out.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(block.caption)}\">"
                       f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
        elif isinstance(block, Details):
            out.append(f"<details><summary>{html.escape(block.summary)}</summary><pre>{html.escape(block.text)}"
                       "</pre></details>")
    out.append("</body>\n</html>\n")
    return "\n".join(out)


def html_table(table):
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.header)
    rows = []
    for i, row in enumerate(table.rows):
        classes = table.classes[i] if i < len(table.classes) else [None] * len(row)
        rows.append("<tr>" + "".join(f"<td{class_attribute(cls)}>{html.escape(str(c))}</td>"
                                     for c, cls in zip(row, classes)) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def class_attribute(css_class):
    return f' class="{css_class}"' if css_class else ""


def to_terminal(blocks, console):
    """The blocks on a rich Console: headings as rules, tables as rich tables, coloured by class."""
    from rich.markup import escape  # rich only where a terminal is written to
    from rich.table import Table as RichTable

    for block in blocks:
        if isinstance(block, Heading):
            console.rule(f"[bold]{block.text}[/bold]")
        elif isinstance(block, Paragraph):
            console.print(block.text, markup=False, highlight=False, style="bold yellow" if block.warning else None)
        elif isinstance(block, Table):
            table = RichTable(show_lines=False)
            for column in block.header:
                table.add_column(column, overflow="fold")  # cell ids have no spaces to wrap at
            for i, row in enumerate(block.rows):
                classes = block.classes[i] if i < len(block.classes) else [None] * len(row)
                table.add_row(*(f"[{STYLES[cls]}]{escape(str(cell))}[/]" if cls in STYLES else escape(str(cell))
                                for cell, cls in zip(row, classes)))
            console.print(table)
        elif isinstance(block, Image):
            console.print(f"[{block.caption}: {block.path}]", markup=False)
