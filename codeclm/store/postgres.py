"""The shared store: one run's state in a PostgreSQL schema, for many worker processes.

Each run is a schema (``codeclm_<run>``) holding LangGraph's checkpoint tables (its own
``AsyncPostgresSaver``, set up once per schema under an advisory lock), the response cache,
the run's record and inputs, and the lease table (``store/leases.py``). Every checkpoint
write is fenced by a trigger: it is stored only while this worker's lease on the thread is
live, so two writers can never fork a thread's history (langgraph#8796).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from codeclm.config import ConfigError
from codeclm.cost.ledger import COLUMNS
from codeclm.llm.transport import worker_id
from codeclm.records import RunRecord, StoredInputs
from codeclm.state import serializer
from codeclm.store.base import Store, StoreSaver
from codeclm.store.batch_book import PostgresBatchBook
from codeclm.store.board import LeaseLost, StoreUnavailable
from codeclm.store.cache import PostgresResponseCache
from codeclm.store.leases import LEASES_TABLE, PostgresBoard
from codeclm.store.ledger import PostgresLedger

if TYPE_CHECKING:
    from codeclm.store import StoreSpec

LEASE_LOST = "CL001"
"""The SQLSTATE the fence raises when the writer no longer holds the thread."""

_TABLES = f"""
CREATE TABLE IF NOT EXISTS codeclm_run (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS codeclm_responses (
    key text PRIMARY KEY, content text NOT NULL, usage text NOT NULL);
CREATE TABLE IF NOT EXISTS codeclm_reviews (
    kind text NOT NULL, subject text NOT NULL, body text NOT NULL, PRIMARY KEY (kind, subject));
CREATE TABLE IF NOT EXISTS codeclm_batches (
    id text PRIMARY KEY, endpoint text NOT NULL, lines text NOT NULL);
CREATE TABLE IF NOT EXISTS codeclm_spend (
    role text NOT NULL, {", ".join(f"{c} bigint NOT NULL" for c in COLUMNS)});
DO $$ BEGIN  -- (a run begun by an earlier version: its paid requests had no step)
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'codeclm_spend' AND column_name = 'step') THEN
        ALTER TABLE codeclm_spend ADD COLUMN step text NOT NULL DEFAULT '';
    END IF;
END $$;
{LEASES_TABLE}
"""

_FENCE = f"""
CREATE OR REPLACE FUNCTION codeclm_fence() RETURNS trigger AS $$
DECLARE
    me text := current_setting('codeclm.owner', true);
BEGIN
    IF coalesce(me, '') = '' THEN  -- a reader's session (inspect): it writes nothing
        RETURN NEW;
    END IF;
    PERFORM 1 FROM codeclm_leases
    WHERE thread_id = NEW.thread_id AND owner = me AND expires_at > now() FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease on % lost', NEW.thread_id USING ERRCODE = '{LEASE_LOST}';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'codeclm_fence' AND tgrelid = 'checkpoints'::regclass) THEN
        CREATE TRIGGER codeclm_fence BEFORE INSERT OR UPDATE ON checkpoints
            FOR EACH ROW EXECUTE FUNCTION codeclm_fence();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'codeclm_fence' AND tgrelid = 'checkpoint_writes'::regclass) THEN
        CREATE TRIGGER codeclm_fence BEFORE INSERT OR UPDATE ON checkpoint_writes
            FOR EACH ROW EXECUTE FUNCTION codeclm_fence();
    END IF;
END $$;
"""
"""The fence, in the database: a checkpoint or pending write of a thread is stored only if
the session's owner (``codeclm.owner``) holds a live lease on that thread. The check
share-locks the lease row until the write commits, so no claim can slip in between."""


SET_UP_WAIT_SECONDS = 60.0
"""How long a worker waits for another one's set-up of the same run's schema."""

POOL_WAIT_SECONDS = 10.0
"""How long a statement waits for a pooled connection before the store counts as away (a
database that went down ends the worker in seconds, not in the pool's default 30 s)."""


def schema_of(run: str) -> str:
    return f"codeclm_{run}"


class FencedPostgresSaver(StoreSaver, AsyncPostgresSaver):
    """LangGraph's PostgreSQL saver over a pool; the fence (``_FENCE``) guards its writes.

    The saver's own instance lock (one statement at a time per process) is skipped: every
    statement takes its own pooled connection, which is what the pool is for.
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        super().__init__(pool, serde=serializer())

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
        pool: AsyncConnectionPool[Any] = self.conn  # type: ignore[assignment]
        try:
            async with pool.connection() as conn:
                if pipeline:
                    async with (
                        conn.pipeline(),
                        conn.cursor(binary=True, row_factory=dict_row) as cur,
                    ):
                        yield cur
                else:
                    async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                        yield cur
        except psycopg.Error as exc:
            if exc.sqlstate == LEASE_LOST:
                raise LeaseLost(f"{exc.diag.message_primary}: write refused") from None
            if isinstance(exc, psycopg.OperationalError):
                raise StoreUnavailable(f"the store failed a write: {exc}") from exc
            raise


class PostgresStore(Store):
    shared = True

    def __init__(
        self, pool: AsyncConnectionPool[Any], saver: FencedPostgresSaver, board: PostgresBoard
    ) -> None:
        self.pool = pool
        self.saver = saver
        self.cache = PostgresResponseCache(pool)
        self.ledger = PostgresLedger(pool)
        self.batch_book = PostgresBatchBook(pool)
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

    async def save_inputs(self, inputs: StoredInputs) -> None:
        await self._put("inputs", inputs.model_dump_json(exclude_defaults=True))

    async def read_inputs(self) -> StoredInputs:
        text = await self._get("inputs")
        return StoredInputs() if text is None else StoredInputs.model_validate_json(text)

    async def read_reviews(self, kind: str) -> dict[str, dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT subject, body FROM codeclm_reviews WHERE kind = %s ORDER BY subject",
                (kind,),
            )
            return {row["subject"]: json.loads(row["body"]) for row in await cur.fetchall()}

    async def save_review(self, kind: str, subject: str, body: dict[str, Any] | None) -> None:
        async with self.pool.connection() as conn:
            if body is None:
                await conn.execute(
                    "DELETE FROM codeclm_reviews WHERE kind = %s AND subject = %s",
                    (kind, subject),
                )
            else:
                await conn.execute(
                    "INSERT INTO codeclm_reviews (kind, subject, body) VALUES (%s, %s, %s) "
                    "ON CONFLICT (kind, subject) DO UPDATE SET body = excluded.body",
                    (kind, subject, json.dumps(body, ensure_ascii=False)),
                )


def _connect_error(exc: Exception, url: str, where: str) -> ConfigError:
    """One line, never the password (libpq's messages do not carry it; checked anyway)."""
    password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    message = " ".join(str(exc).split()) or type(exc).__name__
    if password:
        message = message.replace(str(password), "***")
    elif "password" in message:
        message += " (the URL has no password: set PGPASSWORD or use ~/.pgpass)"
    return ConfigError(f"cannot open the store {where}: {message}")


async def _set_up(url: str, schema: str) -> None:
    """Schema, LangGraph's tables and ours, once per run; concurrent starts wait their turn.

    The turn is taken with ``pg_try_advisory_lock`` in a loop, not ``pg_advisory_lock``: a
    process blocked in that call holds a transaction open, and the saver's
    ``CREATE INDEX CONCURRENTLY`` in the process holding the lock waits for every open
    transaction, so the two deadlocked (seen with two workers starting together).
    """
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row, connect_timeout=10
    ) as conn:
        deadline = time.monotonic() + SET_UP_WAIT_SECONDS
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s)) AS ok", (schema,))
            row = await cur.fetchone()
            if row and row["ok"]:
                break
            if time.monotonic() > deadline:
                raise psycopg.OperationalError(f"another process has been setting up {schema}")
            await asyncio.sleep(0.1)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(_TABLES)
            await AsyncPostgresSaver(conn).setup()  # runs only the migrations not yet run
            await conn.execute(_FENCE)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (schema,))


async def _not_broken(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check before lending a connection, without a round trip: one the server
    dropped while idle fails its next statement (``StoreUnavailable``: the thread is let go
    and taken up again); idle ones are replaced after two minutes."""
    if conn.broken or conn.closed:
        raise psycopg.OperationalError("connection lost")


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

    owner = worker_id()

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f'SET search_path TO "{schema}"')
        if fenced:  # this session's checkpoint writes need its leases
            await conn.execute("SELECT set_config('codeclm.owner', %s, false)", (owner,))

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=min(workers, 16) + 2,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=configure,
        check=_not_broken,
        max_idle=120,
        timeout=POOL_WAIT_SECONDS,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:  # PoolTimeout: the database went away since set-up
        raise _connect_error(exc, url, where) from None
    board = PostgresBoard(pool, owner, spec.lease_seconds, workers)
    store = PostgresStore(pool, FencedPostgresSaver(pool), board)
    try:
        async with board:
            yield store
    finally:
        await pool.close()
