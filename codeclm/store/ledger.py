"""The ledger of paid requests (``cost.ledger.Ledger``), in both stores side by side: a
run folder's ``spend.sqlite``, and the ``codeclm_spend`` table of a shared run's PostgreSQL
schema (created with the schema, ``store/postgres.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from codeclm.cost.ledger import COLUMNS, SUMS, Ledger, ledger_usage, steps_of
from codeclm.outputs import open_sqlite
from codeclm.state import TokenUsage

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


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


class PostgresLedger(Ledger):
    """The shared ledger: every worker's paid requests, in the run's schema."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def record(self, role: str, usage: TokenUsage, step: str = "") -> None:
        values = [getattr(usage, column) for column in COLUMNS]
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO codeclm_spend (role, {', '.join(COLUMNS)}, step) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (role, *values, step),
            )

    async def by_step(self) -> dict[str, TokenUsage] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT step, role, COUNT(*) AS calls, {SUMS} FROM codeclm_spend "
                "GROUP BY step, role ORDER BY 1, 2"
            )
            rows = await cur.fetchall()
        return steps_of([tuple(row.values()) for row in rows])

    async def totals(self) -> dict[str, TokenUsage]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT role, COUNT(*) AS calls, {SUMS} FROM codeclm_spend "
                "GROUP BY role ORDER BY role"
            )
            rows = await cur.fetchall()
        return {row["role"]: ledger_usage(tuple(row.values())[1:]) for row in rows}
