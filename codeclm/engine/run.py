"""A whole run: the 'prepare' thread streaming instructions into a pool of thread workers.

Each instruction is its own LangGraph thread in one SQLite checkpoint DB, so a failing
instruction never cancels or re-runs another, and a re-run of the same command picks up
where the last one stopped. Instruction threads start as soon as their entry is ready,
while the 'prepare' pass goes on; the workers and the prepare tasks share ``--concurrency``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from codeclm.config import RunConfig
from codeclm.context import PipelineContext
from codeclm.engine.prepare import initial_state, prepare_stream, ready
from codeclm.engine.record import Totals, check_fingerprint, run_record
from codeclm.engine.results import write_outputs
from codeclm.engine.threads import FINISHED, Job, RunStats, run_threads
from codeclm.engine.workspace import OpenRun, open_run
from codeclm.methods import method_spec
from codeclm.outputs import (
    DATASET,
    DROPPED,
    FAILED,
    METADATA,
    RUN_JSON,
    write_json,
    write_jsonl,
)
from codeclm.records import Counts, RunRecord
from codeclm.seeds import check_fits_context
from codeclm.state import MetadataEntry, PrepareState, Seed, TokenUsage

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


async def _prepare_and_run(
    run: OpenRun,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    latest: list[PrepareState],
) -> None:
    """The prepare pass feeding the instruction workers as instructions become ready."""
    config = run.context.config
    queue: asyncio.Queue[Job | None] = asyncio.Queue()
    started: set[str] = set()
    stats.total = config.instructions

    async def feed() -> None:
        try:
            stream = prepare_stream(run.prepare, run.context, seeds, user_metadata, stats)
            async for state, ready_now in stream:
                latest[0] = state
                for entry, item in ready_now:
                    if item.id not in started:
                        if not started:  # the first thread starts; the pass may go on
                            stats.enter("answering, judging and improving instructions")
                            log.info(stats.phase)
                        started.add(item.id)
                        queue.put_nowait((item.id, partial(initial_state, entry, item)))
            stats.total = len(started)
        finally:
            for _ in range(config.concurrency):
                queue.put_nowait(None)

    workers = run_threads(
        run.instructions,
        run.context,
        queue,
        stats,
        method_spec(config.method).restart_from,
        FINISHED,
        workers=config.concurrency,
    )
    await asyncio.gather(feed(), workers)


async def execute(
    config: RunConfig,
    out_dir: Path,
    *,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    inputs: dict[str, str | None] | None = None,
    seed_locations: list[str] | None = None,
) -> RunResult:
    """Run (or resume) the whole pipeline into ``out_dir`` and write its outputs.

    ``seed_locations``: where each seed stands in its file (``file:line``), for messages.
    """
    started = time.monotonic()
    inputs = inputs or {}
    check_fingerprint(out_dir, config)
    if config.dedup:
        from codeclm.analysis.embeddings import model_dir

        model_dir()  # the embedding model is there, before anything runs

    async with open_run(config, out_dir, _seeds_fit(config, seeds, seed_locations)) as run:
        # Record the settings first, so a later run against this folder is checked.
        write_json(
            out_dir / RUN_JSON,
            run_record(config, PrepareState(), Totals(), started, run.models, inputs),
        )
        stats.enter("preparing metadata, rubrics and instructions")
        log.info(stats.phase)
        latest = [PrepareState()]
        try:
            await _prepare_and_run(run, seeds, user_metadata, stats, latest)
        finally:  # on Ctrl-C too: whatever has finished is written out
            prepared = latest[0]
            items = [item for _, item in ready(prepared)]
            write_jsonl(out_dir / METADATA, prepared.pool)
            totals = await write_outputs(run.instructions, items, out_dir, config.dedup)
            record = run_record(config, prepared, totals, started, run.models, inputs)
            record.checkpointing = run.saver.stats()
            write_json(out_dir / RUN_JSON, record)
        if not items:
            reasons = "; ".join(f"{f.step} {f.subject}: {f.reason}" for f in prepared.failures)
            raise RunError(
                f"no instructions were produced ({reasons or 'empty pool'}); "
                "run the same command again to retry what failed"
            )
    return RunResult(out_dir=out_dir, record=record)
