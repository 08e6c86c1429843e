"""codeclm: tailored synthetic instruction data by the CodecLM method, on LangGraph.

The Python API (``codeclm.api``) has every command: ``codeclm.run``, ``codeclm.resume``,
``codeclm.evaluate``, ``codeclm.inspect``, ``codeclm.step`` and the coroutines of the
long-running ones (``arun``, ``aresume``, ``aevaluate``, …) here; the commands named like
a module of the package (``api.export``, ``api.report``, ``api.split``, ``api.view``,
``api.bench``) from ``codeclm.api``.
"""

from __future__ import annotations

from typing import Any

from codeclm.version import __version__

__all__ = ["__version__"]

_API = (
    "run",
    "resume",
    "evaluate",
    "work",
    "update",
    "arun",
    "aresume",
    "aevaluate",
    "awork",
    "aupdate",
    "estimate",
    "aestimate",
    "find_run",
    "afind_run",
    "inspect",
    "ainspect",
    "step",
    "astep",
    "review_session",
    "RunHandle",
    "RunResult",
    "RunStats",
    "EvalRecord",
)


def __getattr__(name: str) -> Any:
    """The API, imported on first use (``import codeclm`` alone stays light)."""
    if name in _API:
        from codeclm import api

        return getattr(api, name)
    raise AttributeError(f"module 'codeclm' has no attribute {name!r}")
