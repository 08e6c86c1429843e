"""A whole run: the 'prepare' thread publishing instructions to a pool of thread workers.

Each instruction is its own LangGraph thread in the run's store, so a failing instruction
never cancels or re-runs another, and a re-run of the same command picks up where the last
one stopped. Instruction threads start as soon as their entry is ready, while the 'prepare'
pass goes on; the workers and the prepare tasks share ``--concurrency``. With a shared store
(PostgreSQL) any number of processes work on one run, each taking threads off its board.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from codeclm.config import ConfigError, RunConfig, resolve_settings
from codeclm.context import PipelineContext
from codeclm.engine.prepare import initial_state, prepare_stream, ready
from codeclm.engine.record import Totals, check_fingerprint, check_folder, run_record
from codeclm.engine.results import write_outputs
from codeclm.engine.threads import FINISHED, RunStats, gather_or_cancel, run_threads
from codeclm.engine.waves import next_wave
from codeclm.engine.workspace import OpenRun, open_run
from codeclm.graph import PREPARE_THREAD, thread_config
from codeclm.methods import method_spec
from codeclm.outputs import (
    DATASET,
    DROPPED,
    FAILED,
    METADATA,
    RUN_JSON,
    make_folder,
    write_json,
    write_jsonl,
)
from codeclm.records import Counts, RunRecord, grouped_failures
from codeclm.seeds import check_fits_context
from codeclm.state import MetadataEntry, PrepareState, Seed, TokenUsage
from codeclm.store import LeaseLost, StoreSpec, StoreUnavailable, open_store, redact_url
from codeclm.store.reviews import Reviews

log = logging.getLogger("codeclm")


class RunError(RuntimeError):
    """The run could not produce anything (e.g. no seed could be encoded)."""


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its folder and its record (``run.json``: counts, usage, …)."""

    out_dir: Path
    record: RunRecord

    @property
    def counts(self) -> Counts:
        return self.record.counts

    @property
    def kept(self) -> int:
        return self.counts.kept

    @property
    def dropped(self) -> int:
        return self.counts.dropped

    @property
    def failed(self) -> int:
        return self.counts.failed

    @property
    def missing(self) -> int:
        """Instructions of the budget that did not enter the loop (see ``prepare_failures``)."""
        return self.counts.missing

    @property
    def usage(self) -> dict[str, TokenUsage]:
        return self.record.usage

    @property
    def dataset(self) -> Path:
        return self.out_dir / DATASET

    @property
    def files(self) -> dict[str, Path]:
        names = (DATASET, DROPPED, FAILED, METADATA, RUN_JSON)
        return {name: self.out_dir / name for name in names}


def _seeds_fit(
    config: RunConfig, seeds: list[Seed], where: list[str] | None
) -> Callable[[PipelineContext], None]:
    """The start-up check that every seed's encode request fits the strong model's context."""

    def check(context: PipelineContext) -> None:
        window = context.strong.context_tokens
        if seeds and window:
            overhead = context.prompts.render(
                "encode", instruction="", max_skills=config.max_skills
            )
            located = list(zip(where or [f"seed {s.id}" for s in seeds], seeds, strict=True))
            check_fits_context(located, overhead, window, config.strong.max_tokens, "strong")

    return check


async def _prepare_duty(
    run: OpenRun,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    reviews: Reviews,
    update: list[Seed] | None = None,
) -> None:
    """The 'prepare' pass, whenever this process holds it (one process: always; shared: the
    worker that takes it, or takes it over), publishing instructions as they become ready."""
    board = run.store.board
    while not await board.prepare_done():
        if not await board.take_prepare():
            await asyncio.sleep(board.poll_seconds * 4)  # another worker has it
            continue
        published: set[str] = set()
        try:
            stream = prepare_stream(
                run.prepare, run.context, seeds, user_metadata, stats, reviews, update
            )
            async for _, ready_now in stream:
                jobs = [
                    (item.id, partial(initial_state, entry, item))
                    for entry, item in ready_now
                    if item.id not in published
                ]
                if jobs:
                    if not published:  # the first thread starts; the pass may go on
                        stats.enter("running")
                        log.info(stats.activity)
                    published.update(job_id for job_id, _ in jobs)
                    await board.publish(jobs)
        except LeaseLost as exc:  # another worker took the pass over: it goes on from there
            log.warning("%s", exc)
            continue
        await board.prepare_finished()


async def work(
    run: OpenRun,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    where: str,
    update: list[Seed] | None = None,
) -> None:
    """This process's share of the run, until the run has no work left: the 'prepare' pass
    when it holds it, and instruction threads from the board, ``--concurrency`` at a time.
    ``where``: how commands name the run (for the review's message)."""
    config = run.context.config
    stats.total = config.instructions
    await gather_or_cancel(
        _prepare_duty(run, seeds, user_metadata, stats, Reviews(run.store, where), update),
        run_threads(
            run.instructions,
            run.context,
            run.store.board,
            stats,
            method_spec(config.method).restart_from,
            FINISHED,
            workers=config.concurrency,
        ),
    )


async def _more_waves(
    run: OpenRun,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    out_dir: Path,
    started: float,
    inputs: dict[str, str | None],
    spec: StoreSpec,
) -> None:
    """``--pairs``: more waves of instructions while the pairs kept fall short (none for a
    run without ``--pairs``). Each wave's budget is recorded before it runs, so a resumed
    run takes up that wave."""
    kept_before = None
    while run.context.config.pairs is not None:
        record, prepared = await write_run(run, out_dir, started, inputs, spec)
        config = run.context.config
        budget = next_wave(config, prepared, record.counts, kept_before)
        if budget is None:
            return
        kept_before = record.counts.kept
        grown = config.model_copy(update={"instructions": budget})
        run.context = dataclasses.replace(run.context, config=grown)
        record = run_record(grown, PrepareState(), Totals(), started, run.models, inputs, spec)
        await run.store.save_record(record)
        write_json(out_dir / RUN_JSON, record)
        await run.store.board.reopen()
        stats.kept = stats.dropped = stats.failed = 0  # each wave counts them all again
        stats.enter("preparing")
        added = grown.instructions - config.instructions
        log.info("%s: a wave of %d more instructions", stats.activity, added)
        await work(run, seeds, user_metadata, stats, str(out_dir))


async def _reached_wave(run: OpenRun) -> RunConfig:
    """``--pairs``, run again or resumed: the budget the run's waves had reached."""
    config = run.context.config
    previous = await run.store.read_record()
    reached = int(previous.config.get("instructions", 0)) if previous else 0
    if reached > config.instructions:
        config = config.model_copy(update={"instructions": reached})
        run.context = dataclasses.replace(run.context, config=config)
    return config


async def prepared_state(run: OpenRun) -> PrepareState:
    """The 'prepare' thread's latest state, whichever process wrote it."""
    snapshot = await run.prepare.aget_state(thread_config(PREPARE_THREAD))
    return PrepareState.model_validate(snapshot.values) if snapshot.values else PrepareState()


async def write_run(
    run: OpenRun, out_dir: Path, started: float, inputs: dict[str, str | None], spec: StoreSpec
) -> tuple[RunRecord, PrepareState]:
    """The run's files (metadata, dataset, dropped, failed, run.json), rebuilt whole from
    the store; the record is kept in the store too."""
    config = run.context.config
    prepared = await prepared_state(run)
    items = [item for _, item in ready(prepared)]
    make_folder(out_dir)
    write_jsonl(out_dir / METADATA, prepared.pool)
    totals = await write_outputs(run.instructions, items, out_dir, config.dedup, config.pairs)
    record = run_record(config, prepared, totals, started, run.models, inputs, spec)
    record.checkpointing = run.store.checkpoint_stats()
    write_json(out_dir / RUN_JSON, record)
    if run.store.shared:
        await run.store.save_record(record)
    return record, prepared


async def execute(
    config: RunConfig,
    out_dir: Path,
    *,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    inputs: dict[str, str | None] | None = None,
    seed_locations: list[str] | None = None,
    spec: StoreSpec | None = None,
    update: list[Seed] | None = None,
) -> RunResult:
    """Run (or resume) the whole pipeline and write its outputs into ``out_dir``.

    ``spec``: a shared store (PostgreSQL) this process works on as one of its workers;
    None keeps everything in ``out_dir``. ``seed_locations``: where each seed stands in its
    file (``file:line``), for messages. ``update``: new seeds for a finished run
    (``run --update``), ``config`` carrying its grown budget and pool.
    """
    started = time.monotonic()
    inputs = inputs or {}
    spec = spec or StoreSpec()
    if not spec.shared:
        check_folder(out_dir, config)
    if config.dedup:
        from codeclm.analysis.embeddings import model_dir

        model_dir()  # the embedding model is there, before anything runs

    check = _seeds_fit(config, seeds, seed_locations)
    async with open_run(config, out_dir, check, spec) as run:
        if spec.shared:
            if "eval_fingerprint" in await run.store.read_inputs():
                raise ConfigError(f"{spec.describe()} holds an evaluation; use another --run")
            check_fingerprint(await run.store.read_record(), config, spec.describe())
            if seeds or user_metadata or not await run.store.read_inputs():
                # (a resume whose seeds file is gone keeps the inputs stored before)
                await run.store.save_inputs(
                    {
                        "seeds": [seed.model_dump(mode="json") for seed in seeds],
                        "user_metadata": [e.model_dump(mode="json") for e in user_metadata],
                    }
                )
        if config.pairs is not None:  # a resumed run goes on from the wave it reached
            config = await _reached_wave(run)
        # The board first: a worker that sees the record finds the 'prepare' thread open.
        await run.store.board.reopen()
        # Record the settings, so a later run (or worker) is checked against them.
        first = run_record(config, PrepareState(), Totals(), started, run.models, inputs, spec)
        await run.store.save_record(first)
        if spec.shared:  # the folder names the store, for resume, inspect and step
            make_folder(out_dir)
            write_json(out_dir / RUN_JSON, first)
        stats.enter("preparing")
        log.info(stats.activity)
        store_gone = False
        try:
            await work(run, seeds, user_metadata, stats, str(out_dir), update)
            await _more_waves(run, seeds, user_metadata, stats, out_dir, started, inputs, spec)
        except StoreUnavailable:  # nothing can be read back: the next run writes the outputs
            store_gone = True
            raise
        finally:  # on Ctrl-C too: whatever has finished is written out
            if not store_gone:
                record, prepared = await write_run(run, out_dir, started, inputs, spec)
        if not ready(prepared):
            failures = prepared.failures
            again = any(not f.permanent for f in failures)
            raise RunError(
                f"no instructions were produced ({grouped_failures(failures) or 'empty pool'})"
                + ("; run the same command again to retry what failed" if again else "")
            )
    return RunResult(out_dir=out_dir, record=record)


async def join(
    spec: StoreSpec,
    stats: RunStats,
    *,
    out_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    wait_seconds: float = 60.0,
) -> RunResult | None:
    """``codeclm worker``: work on a shared run until it has no work left, with the
    settings and inputs its ``codeclm run`` stored; with ``out_dir``, write the outputs.

    Workers may start before the run (a Job's pods all start at once): a worker waits up to
    ``wait_seconds`` for the run's record to appear.
    """
    deadline = time.monotonic() + wait_seconds
    async with open_store(spec, None) as store:
        while (record := await store.read_record()) is None and time.monotonic() < deadline:
            if stats.phase != "waiting_for_run":
                stats.enter("waiting_for_run")
                log.info("%s: %s", spec.run, stats.activity)
            await asyncio.sleep(0.25)
        inputs = await store.read_inputs()
    if record is None or not record.config:
        raise ConfigError(
            f"no run {spec.run!r} in {spec.describe()}: start it with "
            f"codeclm run SEEDS --out DIR --store URL --run {spec.run}"
        )
    config = resolve_settings(RunConfig, record.config, overrides or {}, spec.describe())
    seeds = [Seed.model_validate(seed) for seed in inputs.get("seeds", [])]
    metadata = [MetadataEntry.model_validate(e) for e in inputs.get("user_metadata", [])]
    started = time.monotonic()
    async with open_run(config, out_dir, spec=spec) as run:
        stats.enter("working")
        log.info(stats.activity)
        store_gone = False
        try:
            where = str(out_dir) if out_dir else f"--store {redact_url(spec.url)} --run {spec.run}"
            await work(run, seeds, metadata, stats, where)
        except StoreUnavailable:
            store_gone = True
            raise
        finally:
            if out_dir is not None and not store_gone:
                record, _ = await write_run(run, out_dir, started, record.inputs, spec)
    return RunResult(out_dir=out_dir, record=record) if out_dir is not None else None
