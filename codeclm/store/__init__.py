"""Where a run keeps its state: checkpoints, response cache, run record and work board.

Two kinds, one interface (``Store``): SQLite files in the run folder (the default, one
process) and a PostgreSQL database (``--store postgresql://…``), which many worker processes
on many machines share. The engine sees only ``Store`` and its ``Board``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from codeclm.config import ConfigError
from codeclm.llm.transport import worker_id
from codeclm.redact import redact_url
from codeclm.store.base import Store
from codeclm.store.board import Board, Job, LeaseLost, LocalBoard, StoreUnavailable

__all__ = [
    "Board",
    "Job",
    "LeaseLost",
    "LocalBoard",
    "Store",
    "StoreSpec",
    "StoreUnavailable",
    "open_store",
    "redact_url",
    "worker_id",
]

_RUN_NAME = re.compile(r"[a-z0-9_]{1,48}")


def run_name(name: str) -> str:
    """A run's name as the store keys it: lower case, ``-`` and ``.`` read as ``_``."""
    normal = re.sub(r"[-.\s]", "_", name.strip().lower())
    if not _RUN_NAME.fullmatch(normal):
        raise ConfigError(
            f"--run {name!r}: use 1 to 48 letters, digits, '_' or '-' (case is ignored)"
        )
    return normal


@dataclass(frozen=True)
class StoreSpec:
    """``--store`` and ``--run``: which store, and which run in it."""

    url: str | None = None
    """A ``postgresql://`` URL, or None for SQLite in the run folder."""
    run: str = "run"
    lease_seconds: float = 30.0
    """How long a worker's claim on a thread outlives its last renewal (a dead worker's
    threads are taken up this long after it stopped)."""

    @classmethod
    def of(
        cls,
        url: str | None,
        run: str | None,
        out_dir: Path | None,
        lease_seconds: float = 30.0,
    ) -> StoreSpec:
        """The spec of a command's flags; the run's name defaults to the folder's name."""
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"--store {redact_url(url)}: expected a postgresql://… URL")
        if run is None and url is not None and out_dir is None:
            raise ConfigError("--run NAME is needed to find the run in the store")
        name = run if run is not None else (out_dir.resolve().name if out_dir else "run")
        if not lease_seconds > 0:
            raise ConfigError(f"--lease-seconds must be positive, not {lease_seconds:g}")
        return cls(url=url, run=run_name(name), lease_seconds=lease_seconds)

    @property
    def shared(self) -> bool:
        """Shared between processes (PostgreSQL), or this process's own (SQLite)."""
        return self.url is not None

    def describe(self) -> str:
        """For messages and records: never the password."""
        return f"{redact_url(self.url)} (run {self.run})" if self.url else "SQLite"


@asynccontextmanager
async def open_store(
    spec: StoreSpec,
    out_dir: Path | None,
    *,
    workers: int = 1,
    fenced: bool = True,
) -> AsyncIterator[Store]:
    """The run's store, opened (PostgreSQL: a pool sized to ``workers``, tables set up;
    ``fenced``: checkpoint writes need this process's lease on the thread)."""
    if spec.url is None:
        from codeclm.store.sqlite import open_sqlite_store

        if out_dir is None:
            raise ConfigError("a SQLite store lives in a run folder: give --out")
        async with open_sqlite_store(out_dir, workers) as store:
            yield store
    else:
        from codeclm.store.postgres import open_postgres_store

        async with open_postgres_store(spec, workers, fenced) as store:
            yield store
