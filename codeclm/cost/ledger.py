"""What a run paid: one row for every request a model answered, appended as the reply
arrives, whichever process, branch, step or re-run made it.

The usage in ``run.json`` sums the threads' states, which follow the current branches (a
thread forked by ``codeclm step`` forgets the calls of the branch it left); the ledger
never forgets a call and never counts one twice, so its sums never go down.
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
    """Every paid request's tokens, by role."""

    @abstractmethod
    async def record(self, role: str, usage: TokenUsage) -> None:
        """One answered request (durable when this returns)."""

    @abstractmethod
    async def totals(self) -> dict[str, TokenUsage]:
        """What each role was paid for, over the run's whole life."""


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
            + ")"
        )
        self._conn = await open_sqlite(self.path, read_only, "spend", ddl, isolation_level=None)
        if not read_only:
            await self._conn.execute("PRAGMA journal_mode=WAL")
            # As the response cache: durable across a kill (WAL), one fsync per checkpoint.
            await self._conn.execute("PRAGMA synchronous=NORMAL")
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def record(self, role: str, usage: TokenUsage) -> None:
        assert self._conn is not None
        values = [getattr(usage, column) for column in COLUMNS]
        await self._conn.execute(
            f"INSERT INTO spend (role, {', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
            (role, *values),
        )

    async def totals(self) -> dict[str, TokenUsage]:
        assert self._conn is not None
        async with self._conn.execute(
            f"SELECT role, COUNT(*), {SUMS} FROM spend GROUP BY role ORDER BY role"
        ) as cursor:
            rows = await cursor.fetchall()
        return {str(row[0]): ledger_usage(tuple(row[1:])) for row in rows}
