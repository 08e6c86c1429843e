"""The shared store: one run's state in a PostgreSQL schema, for many worker processes.

Each run is a schema (``codeclm_<run>``) holding LangGraph's checkpoint tables (its own
``AsyncPostgresSaver``, set up once per schema under an advisory lock), the response cache,
the run's record and inputs, and the lease table (``store/leases.py``). Every checkpoint
write is fenced: it commits only in a transaction that still sees this worker's lease on
the thread, so two writers can never fork a thread's history (langgraph#8796).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from codeclm.config import ConfigError
from codeclm.graph import serializer
from codeclm.llm.cache import ResponseCache
from codeclm.llm.transport import worker_id
from codeclm.records import RunRecord
from codeclm.state import TokenUsage
from codeclm.store.base import Store, TimedWrites
from codeclm.store.board import LeaseLost
from codeclm.store.leases import LEASES_TABLE, PostgresBoard

if TYPE_CHECKING:
    from codeclm.store import StoreSpec

_TABLES = f"""
CREATE TABLE IF NOT EXISTS codeclm_run (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS codeclm_responses (
    key text PRIMARY KEY, content text NOT NULL, usage text NOT NULL);
{LEASES_TABLE}
"""

_FENCE = (
    "SELECT 1 FROM codeclm_leases WHERE thread_id = %s AND owner = %s "
    "AND expires_at > now() FOR SHARE"
)

_writing: contextvars.ContextVar[str | None] = contextvars.ContextVar("_writing", default=None)
"""The thread whose checkpoint the current task is writing (read by ``_cursor``)."""


def schema_of(run: str) -> str:
    return f"codeclm_{run}"


class FencedPostgresSaver(TimedWrites, AsyncPostgresSaver):
    """LangGraph's PostgreSQL saver over a pool, each write checked against the lease.

    The saver's own instance lock (one statement at a time per process) is skipped: every
    statement takes its own pooled connection, which is what the pool is for.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], owner: str, fenced: bool) -> None:
        super().__init__(pool, serde=serializer())
        self.owner = owner
        self.fenced = fenced

    async def aput(self, config: RunnableConfig, *args: Any, **kwargs: Any) -> RunnableConfig:
        token = _writing.set(config["configurable"]["thread_id"] if self.fenced else None)
        try:
            return await super().aput(config, *args, **kwargs)
        finally:
            _writing.reset(token)

    async def aput_writes(self, config: RunnableConfig, *args: Any, **kwargs: Any) -> None:
        token = _writing.set(config["configurable"]["thread_id"] if self.fenced else None)
        try:
            await super().aput_writes(config, *args, **kwargs)
        finally:
            _writing.reset(token)

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
        thread = _writing.get()
        pool: AsyncConnectionPool[Any] = self.conn  # type: ignore[assignment]
        async with pool.connection() as conn:
            if not pipeline or thread is None:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
                return
            async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                await cur.execute(_FENCE, (thread, self.owner))
                if await cur.fetchone() is None:
                    raise LeaseLost(f"thread {thread}: lease lost, write refused")
                yield cur


class PostgresResponseCache(ResponseCache):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def get(self, key: str) -> tuple[str, TokenUsage] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT content, usage FROM codeclm_responses WHERE key = %s", (key,)
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return row["content"], TokenUsage.model_validate_json(row["usage"])

    async def put(self, key: str, content: str, usage: TokenUsage) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO codeclm_responses (key, content, usage) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING",
                (key, content, usage.model_dump_json()),
            )


class PostgresStore(Store):
    shared = True

    def __init__(
        self, pool: AsyncConnectionPool[Any], saver: FencedPostgresSaver, board: PostgresBoard
    ) -> None:
        self.pool = pool
        self.saver = saver
        self.timed = saver
        self.cache = PostgresResponseCache(pool)
        self.board = board

    async def _get(self, key: str) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT value FROM codeclm_run WHERE key = %s", (key,))
            row = await cur.fetchone()
        return None if row is None else str(row["value"])

    async def _put(self, key: str, value: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO codeclm_run (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def read_record(self) -> RunRecord | None:
        text = await self._get("record")
        return None if text is None else RunRecord.model_validate_json(text)

    async def save_record(self, record: RunRecord) -> None:
        await self._put("record", record.model_dump_json())

    async def save_inputs(self, inputs: dict[str, Any]) -> None:
        await self._put("inputs", json.dumps(inputs, ensure_ascii=False))

    async def read_inputs(self) -> dict[str, Any]:
        text = await self._get("inputs")
        return {} if text is None else dict(json.loads(text))

    def checkpoint_stats(self) -> dict[str, float]:
        return self.timed.stats()


def _connect_error(exc: Exception, url: str, where: str) -> ConfigError:
    """One line, never the password (libpq's messages do not carry it; checked anyway)."""

    password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    message = " ".join(str(exc).split()) or type(exc).__name__
    if password:
        message = message.replace(str(password), "***")
    return ConfigError(f"cannot open the store {where}: {message}")


async def _set_up(url: str, schema: str) -> None:
    """Schema, LangGraph's tables and ours, once per run; concurrent starts wait their turn."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row, connect_timeout=10
    ) as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (schema,))
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(_TABLES)
            await AsyncPostgresSaver(conn).setup()  # runs only the migrations not yet run
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (schema,))


@asynccontextmanager
async def open_postgres_store(
    spec: StoreSpec, workers: int, fenced: bool = True
) -> AsyncIterator[PostgresStore]:
    """A pool sized to the worker's concurrency (plus the board's and cache's own), set up."""
    url, schema = str(spec.url), schema_of(spec.run)
    where = spec.describe()
    try:
        await _set_up(url, schema)
    except psycopg.Error as exc:
        raise _connect_error(exc, url, where) from None

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f'SET search_path TO "{schema}"')

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=min(workers, 16) + 2,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=configure,
        check=AsyncConnectionPool.check_connection,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:  # PoolTimeout: the database went away since set-up
        raise _connect_error(exc, url, where) from None
    owner = worker_id()
    board = PostgresBoard(pool, owner, spec.lease_seconds, workers)
    store = PostgresStore(pool, FencedPostgresSaver(pool, owner, fenced), board)
    try:
        async with board:
            yield store
    finally:
        await pool.close()
