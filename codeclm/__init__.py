"""codeclm: tailored synthetic instruction data by the CodecLM method, on LangGraph.

The Python API (``codeclm.api``): ``codeclm.run``, ``codeclm.resume``, ``codeclm.update``,
``codeclm.evaluate`` and their coroutines ``arun``, ``aresume``, ``aupdate``, ``aevaluate``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

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
    "RunResult",
    "RunStats",
)


def __getattr__(name: str) -> Any:
    """The API, imported on first use (``import codeclm`` alone stays light)."""
    if name in _API:
        from codeclm import api

        return getattr(api, name)
    raise AttributeError(f"module 'codeclm' has no attribute {name!r}")
