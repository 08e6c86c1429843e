"""The Python API: every ``codeclm`` command, from Python.

``run``, ``resume``, ``update``, ``work`` (``api/runs.py``) and ``evaluate``
(``api/evaluation.py``) take the CLI's settings (a ``RunConfig`` / ``EvalConfig``, a TOML
or JSON file, or keyword arguments validated by the same models) and return typed results
(``RunResult``, ``EvalRecord``). ``find_run``, ``inspect``, ``step``, ``review_session``,
``view``, ``report``, ``export``, ``split`` and ``bench`` (``api/tools.py``) do the rest.
The CLI is a thin layer over them.

The long-running ones have an ``a``-prefixed coroutine for code already inside an event
loop (a notebook: ``await codeclm.arun(...)``). Progress goes to an ``on_progress``
callback, called with the live counters twice a second and at the end, and to the
``codeclm`` logger.
"""

from codeclm.api.evals import aevaluate, evaluate
from codeclm.api.runs import (
    aestimate,
    aresume,
    arun,
    aupdate,
    awork,
    estimate,
    resume,
    run,
    update,
    work,
)
from codeclm.api.tools import (
    afind_run,
    ainspect,
    ajudge_sample,
    astep,
    bench,
    export,
    find_run,
    inspect,
    judge_import,
    judge_sample,
    report,
    review_session,
    split,
    step,
    view,
)
from codeclm.config import ConfigError
from codeclm.engine.evaluation import EvalStats
from codeclm.engine.run import RunError, RunResult
from codeclm.engine.threads import RunStats
from codeclm.handle import RunHandle
from codeclm.records import EvalRecord

__all__ = [
    "ConfigError",
    "EvalRecord",
    "EvalStats",
    "RunError",
    "RunHandle",
    "RunResult",
    "RunStats",
    "aestimate",
    "aevaluate",
    "afind_run",
    "ainspect",
    "ajudge_sample",
    "aresume",
    "arun",
    "astep",
    "aupdate",
    "awork",
    "bench",
    "estimate",
    "evaluate",
    "export",
    "find_run",
    "inspect",
    "judge_import",
    "judge_sample",
    "report",
    "resume",
    "review_session",
    "run",
    "split",
    "step",
    "update",
    "view",
    "work",
]
