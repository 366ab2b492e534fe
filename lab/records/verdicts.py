"""The claims table: C1-C13, the article's figure, the run's measurement and a verdict with its rule.

The claims and their rules live in the experiment modules; here they are judged, once per Python of
the run, and the table is drawn, once, for the terminal, Markdown and HTML alike.
A verdict comes only from cells that ran: a missing or failed cell makes the claim 'not run'.
"""
from lab import experiments
from lab.cells import Cell
from lab.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED, Measured
from lab.records.document import Paragraph, Table
from lab.records.record import verdict_label

VERDICT_CLASS = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not-reproduced", NOT_RUN: "not-run"}


def judge(record):
    """Every claim's verdict on the record's cells, by the rules of this lab; a run over several Pythons
    (--python) has a row per claim and Python."""
    rows = []
    for python in record["settings"].get("pythons") or [None]:
        cells = {Cell.from_record(cell).label: cell for cell in record["cells"].values()
                 if python is None or cell.get("python") in (None, python)}
        for claim in experiments.claims():
            rows.append(claim.judge(Measured(cells, record["settings"], claim.experiment, python)))
    return rows


def counts(rows):
    """'12 reproduced, 1 not reproduced, 0 not run.'"""
    return ", ".join(f"{sum(row['verdict'] == verdict for row in rows)} {verdict}" for verdict in VERDICT_CLASS) + "."


def table(rows, brief=False):
    """The claims table of stored verdict rows; brief: without the claim's and the rule's text."""
    header = ["", "verdict", "this run"] if brief else ["", "claim", "the article", "this run", "verdict", "rule"]
    result = Table(header, [], [])
    for row in rows:
        verdict, css = row["verdict"], VERDICT_CLASS.get(row["verdict"])
        if brief:
            result.rows.append([verdict_label(row), verdict, row["measured"]])
            result.classes.append([None, css, None])
        else:
            version = f" (rule v{row['rule_version']})" if row.get("rule_version") else ""
            result.rows.append([verdict_label(row), row["text"], row["article"], row["measured"], verdict,
                                row["rule"] + version])
            result.classes.append([None, None, None, None, css, "rule"])
    return result


def section(rows):
    """The claims table with its counts, or why there is none."""
    if not rows:
        return [Paragraph("No verdicts are stored in this run: it stopped before its first cell was saved.",
                          warning=True)]
    return [Paragraph(counts(rows)), table(rows)]
