"""The Python API: every ``codeclm`` command, from Python.

``run``, ``resume``, ``update``, ``work`` (``api/runs.py``) and ``evaluate``
(``api/evals.py``) take the CLI's settings (a ``RunConfig`` / ``EvalConfig``, a TOML
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
    embedding_model_missing,
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

# What a caller needs beside the commands (the CLI imports nothing of codeclm's but this):
# the errors they raise, the results and records they return, the settings they take.
from codeclm.config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    check_update,
    load_config_file,
    resolve_config,
    resolve_settings,
)
from codeclm.cost.estimate import ANSWER_TOKENS, KEPT_AT_EACH_ITERATION, Estimate
from codeclm.cost.meter import CostCapReached, Meter, dollars
from codeclm.debug.inspection import ThreadDetail, ThreadListing
from codeclm.debug.step import parse_assignment
from codeclm.engine.evaluation import EVAL_FAILED, JUDGMENTS, EvalStats
from codeclm.engine.run import RunError, RunResult
from codeclm.engine.threads import RunStats
from codeclm.export import FORMATS
from codeclm.handle import Folder, RunHandle
from codeclm.llm.breaker import EndpointBroken
from codeclm.llm.tracing import finish_tracing, tracing_destination
from codeclm.methods import METHODS, methods_help
from codeclm.records import CostRecord, EvalRecord, EvalResult, RunRecord, grouped_failures
from codeclm.review import PoolStatus, ReviewError, RunSession, entry_edit
from codeclm.rows import Verdict
from codeclm.seeds import InputError
from codeclm.state import EntryEdit
from codeclm.store import LeaseLost, StoreUnavailable
from codeclm.version import __version__

__all__ = [
    "ANSWER_TOKENS",
    "EVAL_FAILED",
    "FORMATS",
    "JUDGMENTS",
    "KEPT_AT_EACH_ITERATION",
    "METHODS",
    "ConfigError",
    "CostCapReached",
    "CostRecord",
    "EndpointBroken",
    "EntryEdit",
    "Estimate",
    "EvalConfig",
    "EvalRecord",
    "EvalResult",
    "EvalStats",
    "Folder",
    "InputError",
    "LeaseLost",
    "Meter",
    "PoolStatus",
    "ReviewError",
    "RunConfig",
    "RunError",
    "RunHandle",
    "RunRecord",
    "RunResult",
    "RunSession",
    "RunStats",
    "StoreUnavailable",
    "ThreadDetail",
    "ThreadListing",
    "Verdict",
    "__version__",
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
    "check_update",
    "dollars",
    "embedding_model_missing",
    "entry_edit",
    "estimate",
    "evaluate",
    "export",
    "find_run",
    "finish_tracing",
    "grouped_failures",
    "inspect",
    "judge_import",
    "judge_sample",
    "load_config_file",
    "methods_help",
    "parse_assignment",
    "report",
    "resolve_config",
    "resolve_settings",
    "resume",
    "review_session",
    "run",
    "split",
    "step",
    "tracing_destination",
    "update",
    "view",
    "work",
]
