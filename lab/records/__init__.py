"""A run's stored record and what is read from it: the store, the views of a run, the report, compare,
the verdict tables, the listing of experiments, and the documents and plots they are written as.

Everything here reads what a run stored, never today's planning code: a report of an old run shows
what that run measured and judged.
"""
