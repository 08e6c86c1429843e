"""A whole run: the 'prepare' thread publishing instructions to a pool of thread workers.

Each instruction is its own LangGraph thread in the run's store, so a failing instruction
never cancels or re-runs another, and a re-run of the same command picks up where the last
one stopped. Instruction threads start as soon as their entry is ready, while the 'prepare'
pass goes on; the workers and the prepare tasks share ``--concurrency``. With a shared store
(PostgreSQL) any number of processes work on one run, each taking threads off its board.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from codeclm.config import RunConfig
from codeclm.context import PipelineContext
from codeclm.engine.prepare import prepare_stream
from codeclm.engine.stops import batchers_of, endpoints_of, servers_of, until_stopped
from codeclm.engine.threads import FINISHED, RunStats, gather_or_cancel, run_threads
from codeclm.engine.waves import next_wave
from codeclm.graph import restart_table
from codeclm.handle import OpenRun, RunHandle
from codeclm.handle.record import Totals
from codeclm.outputs import DATASET, RUN_FILES, remove_empty_outputs
from codeclm.prepare.passes import initial_state, ready
from codeclm.records import Counts, RunRecord, StoredInputs, grouped_failures
from codeclm.seeds import check_fits_context
from codeclm.state import MetadataEntry, PrepareState, Seed, TokenUsage
from codeclm.store import LeaseLost, StoreUnavailable

log = logging.getLogger("codeclm")


class RunError(RuntimeError):
    """The run could not produce anything (e.g. no seed could be encoded)."""


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its folder and its record (``run.json``: counts, usage, …)."""

    out_dir: Path
    record: RunRecord
    detached: bool = False
    """Stopped while its batches run at the providers (``--detach``): resume collects them."""

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
        return {name: self.out_dir / name for name in RUN_FILES}


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
                run.prepare,
                run.context,
                seeds,
                user_metadata,
                stats,
                run.reviews,
                update,
                check_seeds=not run.store.shared,
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
    update: list[Seed] | None = None,
) -> None:
    """This process's share of the run, until the run has no work left: the 'prepare' pass
    when it holds it, and instruction threads from the board, ``config.workers`` at a time."""
    config = run.config
    stats.total = config.instructions
    await gather_or_cancel(
        _prepare_duty(run, seeds, user_metadata, stats, update),
        run_threads(
            run.instructions,
            run.context,
            run.store.board,
            stats,
            restart_table(run.instructions.builder),
            FINISHED,
            workers=config.workers,
        ),
    )


async def _more_waves(
    run: OpenRun,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    kept_before: int | None = None,
) -> None:
    """``--pairs``: more waves of instructions while the pairs kept fall short (none for a
    run without ``--pairs``). Each wave's budget is recorded before it runs, so a resumed
    run takes up that wave. ``kept_before``: the pairs kept when an earlier run's waves
    stalled (run again, the same command adds no wave unless a pair was kept since)."""
    while run.config.pairs is not None:
        record, prepared = await run.write_outputs()
        config = run.config
        budget = next_wave(config, prepared, record.counts, kept_before)
        if budget is None:
            missing = record.counts.kept < (config.pairs or 0)
            stalled = kept_before is not None and record.counts.kept <= kept_before
            if missing and stalled and not run.waves_stalled:
                run.waves_stalled = True
                await run.write_outputs()  # (its record says so)
            return
        kept_before = record.counts.kept
        run.use(config.model_copy(update={"instructions": budget}))
        await run.save_record(run.record_now(PrepareState(), Totals()))
        await run.store.board.reopen()
        stats.kept = stats.dropped = stats.failed = 0  # each wave counts them all again
        stats.enter("preparing")
        added = budget - config.instructions
        log.info("%s: a wave of %d more instructions", stats.activity, added)
        await work(run, seeds, user_metadata, stats)


async def _all_waves(
    run: OpenRun,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    update: list[Seed] | None,
    stalled_at: int | None = None,
) -> None:
    """The run's work: its budget, then ``--pairs``' further waves (``stalled_at``: the
    pairs kept when an earlier run's waves stalled)."""
    await work(run, seeds, user_metadata, stats, update)
    await _more_waves(run, seeds, user_metadata, stats, stalled_at)


def _reached_wave(run: OpenRun) -> None:
    """``--pairs``, run again or resumed: go on with the budget the run's waves reached."""
    previous = run.handle.record
    reached = int(previous.config.get("instructions", 0)) if previous else 0
    if reached > run.config.instructions:
        run.use(run.config.model_copy(update={"instructions": reached}))


async def execute(
    handle: RunHandle,
    *,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    seed_locations: list[str] | None = None,
    update: list[Seed] | None = None,
    detach: bool = False,
) -> RunResult:
    """Run (or resume) the whole pipeline and write its outputs into the run's folder.

    In a shared store (PostgreSQL) this process works on the run as one of its workers.
    ``seed_locations``: where each seed stands in its file (``file:line``), for messages.
    ``update``: new seeds for a finished run (``run --update``), the handle's settings
    carrying its grown budget and pool. ``detach`` (``--batch``): stop once every request
    is in a batch out at the provider (a later run collects them).
    """
    config = handle.config
    if config.dedup:
        from codeclm.analysis.embeddings import model_dir

        model_dir()  # the embedding model is there, before anything runs

    check = _seeds_fit(config, seeds, seed_locations)
    async with handle.open(check) as run:
        if run.store.shared and (seeds or user_metadata or (await run.store.read_inputs()).empty):
            # (a resume whose seeds file is gone keeps the inputs stored before)
            await run.save_inputs(StoredInputs(seeds=seeds, user_metadata=user_metadata))
        previous = run.handle.record
        stalled_at = previous.counts.kept if previous and previous.waves_stalled else None
        if config.pairs is not None:  # a resumed run goes on from the wave it reached
            _reached_wave(run)
        # The board first: a worker that sees the record finds the 'prepare' thread open.
        await run.store.board.reopen()
        # Record the settings, so a later run (or worker) is checked against them.
        await run.save_record(run.record_now(PrepareState(), Totals()))
        stats.enter("preparing")
        log.info(stats.activity)
        stats.meter = run.meter
        stats.servers = servers_of(run)
        stats.batches = [batcher.counts for batcher in batchers_of(run)]
        stats.servers = servers_of(run)
        store_gone = False
        try:
            waves = _all_waves(run, seeds, user_metadata, stats, update, stalled_at)
            detached = await until_stopped(
                waves, run.meter, batchers_of(run), detach, endpoints_of(run.models.values())
            )
        except StoreUnavailable:  # nothing can be read back: the next run writes the outputs
            store_gone = True
            raise
        finally:  # on Ctrl-C too: whatever has finished is written out
            if not store_gone:
                record, prepared = await run.write_outputs()
        if not ready(prepared) and not detached:
            failures = prepared.failures
            again = any(not f.permanent for f in failures)
            raise RunError(
                f"no instructions were produced ({grouped_failures(failures) or 'empty pool'})"
                + ("; run the same command again to retry what failed" if again else "")
            )
    assert handle.out_dir is not None
    if detached:  # (an output file of no row would read as a finished, empty run)
        remove_empty_outputs(handle.out_dir)
    return RunResult(out_dir=handle.out_dir, record=record, detached=detached)


async def join(handle: RunHandle, stats: RunStats) -> RunResult | None:
    """``codeclm worker``: work on a shared run until it has no work left, with the
    settings and inputs its ``codeclm run`` stored; with a folder, write the outputs."""
    async with handle.open() as run:
        inputs = await run.store.read_inputs()
        stats.enter("working")
        log.info(stats.activity)
        stats.meter = run.meter
        stats.servers = servers_of(run)
        store_gone = False
        try:
            share = work(run, inputs.seeds, inputs.user_metadata, stats)
            await until_stopped(
                share, run.meter, batchers_of(run), False, endpoints_of(run.models.values())
            )
        except StoreUnavailable:
            store_gone = True
            raise
        finally:
            if handle.folder is not None and not store_gone:
                record, _ = await run.write_outputs()
    if handle.out_dir is None:
        return None
    return RunResult(out_dir=handle.out_dir, record=record)
