"""What a run paid: one row for every request a model answered, appended as the reply
arrives, whichever process, branch, step or re-run made it, with the step that asked it.

The threads' states follow their current branches (a thread forked by ``codeclm step``
forgets the calls of the branch it left; a step that failed forgets what it paid); the
ledger never forgets a call and never counts one twice, so its sums never go down, and
``run.json``'s paid figures are its own (``cost.figures.paid_usage``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import aiosqlite

from codeclm.outputs import open_sqlite
from codeclm.state import TokenUsage

#: The token columns of a ledger row (``TokenUsage``'s fields that a provider bills).
COLUMNS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")


class Ledger(ABC):
    """Every paid request's tokens, by role and by the step that made it."""

    @abstractmethod
    async def record(self, role: str, usage: TokenUsage, step: str = "") -> None:
        """One answered request (durable when this returns); ``step``: the node (and turn)
        it was made in, as ``usage_by_node`` names it."""

    @abstractmethod
    async def totals(self) -> dict[str, TokenUsage]:
        """What each role was paid for, over the run's whole life."""

    @abstractmethod
    async def by_step(self) -> dict[str, TokenUsage] | None:
        """What was paid per ``step/role-key``; None when some request has no step (a
        ledger begun by a version that did not record them)."""


def steps_of(rows: list[tuple[object, ...]]) -> dict[str, TokenUsage] | None:
    """``by_step`` from rows of step, role, ``COUNT(*)`` and the ``SUMS``."""
    if any(not row[0] for row in rows):
        return None
    return {f"{row[0]}/{row[1]}": ledger_usage(tuple(row[2:])) for row in rows}


def ledger_usage(row: tuple[object, ...]) -> TokenUsage:
    """A row of ``COUNT(*)`` and the ``SUMS`` as usage."""
    calls, *tokens = (int(value or 0) for value in row)  # type: ignore[call-overload]
    return TokenUsage(calls=calls, **dict(zip(COLUMNS, tokens, strict=True)))


SUMS = ", ".join(f"SUM({column}) AS {column}" for column in COLUMNS)


class SqliteLedger(Ledger):
    """``DIR/spend.sqlite``: one table, a row a request, each committed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self, read_only: bool = False) -> SqliteLedger:
        # Autocommit: each row is one statement, committed as it runs (one trip to the
        # database thread per paid request).
        ddl = (
            "CREATE TABLE IF NOT EXISTS spend (role TEXT NOT NULL, "
            + ", ".join(f"{column} INTEGER NOT NULL" for column in COLUMNS)
            + ", step TEXT NOT NULL DEFAULT '')"
        )
        self._conn = await open_sqlite(self.path, read_only, "spend", ddl, isolation_level=None)
        async with self._conn.execute("PRAGMA table_info(spend)") as cursor:
            self._steps = "step" in {row[1] for row in await cursor.fetchall()}
        if not read_only:
            if not self._steps:  # a ledger of an earlier version: its rows have no step
                await self._conn.execute(
                    "ALTER TABLE spend ADD COLUMN step TEXT NOT NULL DEFAULT ''"
                )
                self._steps = True
            await self._conn.execute("PRAGMA journal_mode=WAL")
            # As the response cache: durable across a kill (WAL), one fsync per checkpoint.
            await self._conn.execute("PRAGMA synchronous=NORMAL")
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def record(self, role: str, usage: TokenUsage, step: str = "") -> None:
        assert self._conn is not None
        values = [getattr(usage, column) for column in COLUMNS]
        await self._conn.execute(
            f"INSERT INTO spend (role, {', '.join(COLUMNS)}, step) VALUES (?, ?, ?, ?, ?, ?)",
            (role, *values, step),
        )

    async def by_step(self) -> dict[str, TokenUsage] | None:
        assert self._conn is not None
        if not self._steps:
            return None
        async with self._conn.execute(
            f"SELECT step, role, COUNT(*), {SUMS} FROM spend GROUP BY step, role ORDER BY 1, 2"
        ) as cursor:
            return steps_of([tuple(row) for row in await cursor.fetchall()])

    async def totals(self) -> dict[str, TokenUsage]:
        assert self._conn is not None
        async with self._conn.execute(
            f"SELECT role, COUNT(*), {SUMS} FROM spend GROUP BY role ORDER BY role"
        ) as cursor:
            rows = await cursor.fetchall()
        return {str(row[0]): ledger_usage(tuple(row[1:])) for row in rows}
