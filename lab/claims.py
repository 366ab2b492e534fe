"""The article's claims as a run judges them: each claim with its rule, and what a rule reads.

An experiment module (lab/experiments/) decorates each rule function with @claim: the claim's text, the
article's figure, the rule's text and the rule itself, side by side. The registry finds them there.
"""
from dataclasses import dataclass
from typing import Callable

from lab.cells import Cell, experiment_name


REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"


class NotRun(Exception):
    """A rule cannot judge: a cell it needs is missing or failed (the message says which)."""


@dataclass
class Claim:
    """One of the article's claims, with the rule that judges a run's measurements of it."""
    id: str  # 'C6'
    text: str  # the claim, in the article's words
    article: str  # the article's figure
    rule_text: str  # the rule, in words
    rule: Callable  # rule(measured) -> (what was measured, in words; whether it reproduces the claim)
    version: int = 1  # raised whenever the rule changes, so that a stored verdict says which rule made it
    experiment: str = None  # set by the registry: the module that backs the claim

    @property
    def order(self):
        return claim_order(self.id)

    def judge(self, measured):
        """The verdict row of this claim, from a Measured view of one Python's cells."""
        try:
            text, ok = self.rule(measured)
            verdict = REPRODUCED if ok else NOT_REPRODUCED
        except NotRun as e:
            text, verdict = str(e), NOT_RUN
        return {"id": self.id, "python": measured.python, "text": self.text, "article": self.article,
                "measured": text, "verdict": verdict, "rule": self.rule_text, "rule_version": self.version,
                "cells": list(dict.fromkeys(measured.read))}


def claim_order(claim_id):
    """The sort key of a claim id: C2 before C10."""
    digits = "".join(c for c in claim_id if c.isdigit())
    return (claim_id.rstrip("0123456789"), int(digits) if digits else 0)


def claim(claim_id, text, *, article, rule, version=1):
    """Decorate a rule function as the claim it judges: the claim's text, the article's figure, the
    rule's text and the rule itself, side by side. The registry finds it in its module."""
    def make(judge):
        return Claim(claim_id, text, article, rule, judge, version)
    return make


class Measured:
    """What a rule reads: the measurements of one Python's cells, asked for by their fields.

    measured(threaded) is the rule's own experiment on that strategy; measured(of=loopback_floor) and
    measured(threaded, of=convoy) another experiment's; measured(variant="0.001") a variant.
    A cell that is missing or failed raises NotRun, and the claim is 'not run'.
    """

    def __init__(self, cells, settings, experiment, python=None):
        self.cells, self.settings, self.experiment, self.python = cells, settings, experiment, python
        self.read = []

    def label(self, strategy=None, *, of=None, variant=None):
        """The label of the cell that measured(...) with the same arguments reads: 'convoy/threaded'."""
        return Cell(experiment_name(of or self.experiment), strategy, variant).label

    def __call__(self, strategy=None, *, of=None, variant=None):
        label = self.label(strategy, of=of, variant=variant)
        self.read.append(label)
        cell = self.cells.get(label)
        if not cell or cell.get("status") != "ok":
            raise NotRun(f"{label} {'failed' if cell else 'was not run'}")
        return cell["measurements"]


def pct(x):
    return f"{x * 100:.1f}%"
