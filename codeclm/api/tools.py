"""Everything else the CLI does, from Python: find a run, inspect and step its threads,
review it, serve its page, report on it, export it; split a benchmark; benchmark codeclm.

Each takes a run as the CLI names it (a folder, or a store URL and run name), finds its
handle once (``codeclm.handle``) and hands that to the module that does the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from codeclm.api.common import blocking
from codeclm.config import ConfigError
from codeclm.debug.inspection import ThreadDetail, ThreadListing, list_threads, thread_history
from codeclm.debug.step import step_thread
from codeclm.export import export_run
from codeclm.handle import RunHandle
from codeclm.human import import_ratings, write_sample
from codeclm.records import EvalRecord, RunRecord
from codeclm.report import write_report
from codeclm.review import RunSession, open_session
from codeclm.split import split_benchmark


def embedding_model_missing() -> str | None:
    """Why the report has no embedding figures (the sentence encoder's weights are not
    installed), or None when it has them."""
    from codeclm.analysis.embeddings import model_dir  # NumPy: only the report needs it

    try:
        model_dir()
    except ConfigError as exc:
        return str(exc)
    return None


async def afind_run(
    out: Path | str | None,
    *,
    store: str | None = None,
    run_name: str | None = None,
    to_read: bool = False,
    **overrides: Any,
) -> RunHandle:
    """The run in ``out`` (its run.json names its store, if shared), or ``run_name`` in
    ``store``; ``overrides``: pacing settings over the recorded ones. ``to_read``: only to
    read it (settings of another version, a prompts folder gone, are let be)."""
    folder = Path(out) if out is not None else None
    return await RunHandle.find(
        folder, store=store, run_name=run_name, overrides=overrides, strict=not to_read
    )


def find_run(out: Path | str | None, **options: Any) -> RunHandle:
    """``afind_run`` from synchronous code."""
    blocking("find_run")
    return asyncio.run(afind_run(out, **options))


async def ainspect(
    out: Path | str | None,
    thread: str | None = None,
    *,
    store: str | None = None,
    run_name: str | None = None,
) -> ThreadListing | ThreadDetail:
    """``codeclm inspect``: every thread's status (``ThreadListing``), or one thread's
    state and history node by node (``ThreadDetail``). No model is called."""
    handle = await afind_run(out, store=store, run_name=run_name, to_read=True)
    if thread is None:
        return await list_threads(handle)
    return await thread_history(handle, thread)


def inspect(out: Path | str | None, thread: str | None = None, **options: Any) -> Any:
    """``codeclm inspect`` from Python (see ``ainspect``)."""
    blocking("inspect")
    return asyncio.run(ainspect(out, thread, **options))


async def astep(
    out: Path | str | None,
    thread: str,
    *,
    emit: Callable[[dict[str, Any]], None],
    store: str | None = None,
    run_name: str | None = None,
    cache: bool | None = None,
    **step: Any,
) -> dict[str, Any]:
    """``codeclm step``: run one thread node by node, ``emit`` called after each step.
    ``step``: ``from_checkpoint``, ``patch``, ``until``, ``ask`` (see ``step_thread``)."""
    overrides = {} if cache is None else {"cache": cache}
    handle = await afind_run(out, store=store, run_name=run_name, **overrides)
    return await step_thread(handle, thread, emit=emit, **step)


def step(out: Path | str | None, thread: str, **options: Any) -> dict[str, Any]:
    """``codeclm step`` from Python (see ``astep``)."""
    blocking("step")
    return asyncio.run(astep(out, thread, **options))


@asynccontextmanager
async def review_session(
    out: Path | str | None, *, store: str | None = None, run_name: str | None = None
) -> AsyncIterator[RunSession]:
    """The run opened for a person's review of its pool and pairs (``codeclm review``)."""
    handle = await afind_run(out, store=store, run_name=run_name, to_read=True)
    async with open_session(handle) as session:
        yield session


def view(
    out: Path | str | None,
    *,
    store: str | None = None,
    run_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> int:
    """``codeclm view``: serve the run's page until Ctrl-C."""
    from codeclm.view import serve  # aiohttp's app and jinja2: only the page needs them

    handle = find_run(out, store=store, run_name=run_name, to_read=True)
    return serve(handle, host=host, port=port)


def export(
    run: Path | str,
    fmt: str = "chat",
    out: Path | str | None = None,
    *,
    limit: int | None = None,
    reviewed_only: bool = False,
    target_refusals: bool = True,
) -> tuple[Path, int]:
    """``codeclm export``: the run's kept pairs as ``fmt``; where, and how many pairs."""
    blocking("export")
    handle = RunHandle.finished(Path(run))
    target = Path(out) if out is not None else None
    return export_run(handle, fmt, target, limit, reviewed_only, target_refusals)


def report(
    runs: Sequence[Path | str], out: Path | str | None = None, near_dup: float = 0.9
) -> Path:
    """``codeclm report``: the report page of one run or several side by side; its path."""
    blocking("report")
    handles = [RunHandle.finished(Path(run)) for run in runs]
    target = Path(out) if out is not None else Path(runs[0]) / "report"
    return write_report(handles, target, near_dup)


def split(
    benchmark: Path | str, out: Path | str, seed_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """``codeclm split``: the paper's seed / evaluation split of a benchmark."""
    return split_benchmark(Path(benchmark), Path(out), seed_fraction, seed)


def bench(
    *,
    instructions: int | None = None,
    latency: float = 0.05,
    slots: int = 64,
    concurrency: int = 64,
    seeds: int = 100,
    metadata: int = 200,
    embedded: bool = False,
    workers: int = 0,
    store: str | None = None,
    scaling: bool = False,
    repeat: int = 1,
    keep: Path | None = None,
    adaptive: bool = True,
) -> None:
    """``codeclm bench``: throughput against the loopback mock (or the embedded server,
    or ``workers`` processes sharing a PostgreSQL run), printed as tables."""
    from codeclm.bench.throughput import Workload, run_bench, run_embedded_bench

    if embedded:
        run_embedded_bench(slots=min(concurrency, 8), instructions=instructions or 8, keep=keep)
        return
    workload = Workload(
        instructions=instructions or 1000,
        latency=latency,
        slots=slots,
        concurrency=concurrency,
        seeds=seeds,
        metadata=metadata,
        adaptive=adaptive,
    )
    if workers:
        from codeclm.bench.scale_out import run_workers_bench

        run_workers_bench(workload, workers=workers, store=store, keep=keep, repeat=repeat)
        return
    run_bench(workload, scaling=scaling, keep=keep)


async def ajudge_sample(out: Path | str, n: int, dest: Path | str, seed: int = 0) -> int:
    """``codeclm judge DIR --sample N --out FILE``: a blind, seeded sample of the judged
    pairs for people to score (``codeclm.human``); the lines written."""
    return await write_sample(Path(out), n, Path(dest), seed)


def judge_sample(out: Path | str, n: int, dest: Path | str, seed: int = 0) -> int:
    """``ajudge_sample`` from synchronous code."""
    blocking("judge_sample")
    return asyncio.run(ajudge_sample(out, n, dest, seed))


def judge_import(out: Path | str, source: Path | str) -> RunRecord | EvalRecord:
    """``codeclm judge DIR --import FILE``: people's scores kept, and the record with their
    agreement with the judge (``judge.human``)."""
    return import_ratings(Path(out), Path(source))
