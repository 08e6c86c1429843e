"""``codeclm report``: the pictures of a run (or of several, side by side).

Writes ``report.html`` (self-contained: its PNG plots are embedded as data URIs),
``report.md`` (a summary that links the same plots, saved beside it as PNG files), and the
figures as ``report.json``. Everything is read from the run's output files; no model is
called, except the small local embedding model for the diversity figures.
"""

from codeclm.report.writing import write_report

__all__ = ["write_report"]
