"""The Python API: ``codeclm.run``, ``codeclm.resume`` and ``codeclm.evaluate``.

They take the CLI's settings (a ``RunConfig`` / ``EvalConfig``, a TOML or JSON file, or
keyword arguments validated by the same models) and return typed results; the CLI is a thin
layer over them. Each has an ``a``-prefixed coroutine for code already inside an event loop
(a notebook: ``await codeclm.arun(...)``). Progress goes to an ``on_progress`` callback,
called with the live counters twice a second and at the end, and to the ``codeclm`` logger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from codeclm.config import (
    ConfigError,
    EvalConfig,
    ModelSettings,
    RunConfig,
    load_config_file,
    resolve_settings,
)
from codeclm.engine.prepare import plan_update
from codeclm.engine.run import RunError, RunResult, execute, join
from codeclm.engine.threads import RunStats
from codeclm.evaluation import EvalStats
from codeclm.evaluation import evaluate as evaluate_items
from codeclm.methods import method_spec
from codeclm.outputs import RUN_JSON
from codeclm.records import RunRecord
from codeclm.seeds import load_benchmark, load_located_seeds, load_user_metadata
from codeclm.state import Seed
from codeclm.store import StoreSpec, open_store

__all__ = [
    "ConfigError",
    "EvalStats",
    "RunError",
    "RunResult",
    "RunStats",
    "aevaluate",
    "aresume",
    "arun",
    "aupdate",
    "awork",
    "evaluate",
    "resume",
    "run",
    "update",
    "work",
]

S = TypeVar("S", bound=ModelSettings)
St = TypeVar("St", bound=RunStats)
T = TypeVar("T")
Progress = Callable[[RunStats], None]

#: Seconds between two ``on_progress`` calls.
PROGRESS_INTERVAL = 0.5


def settings(
    kind: type[S], config: S | Path | str | dict[str, Any] | None, overrides: dict[str, Any]
) -> S:
    """A config object from a config object, a settings file or a dict, with ``overrides``
    (keyword arguments named like the config's fields; role tables as dicts) on top."""
    if isinstance(config, kind):
        values, source = config.model_dump(), "config"
    elif isinstance(config, str | Path):
        values, source = load_config_file(Path(config)), str(config)
    else:
        values, source = dict(config or {}), "options"
    return resolve_settings(kind, values, overrides, source)


async def _with_progress(
    work: Coroutine[Any, Any, T], stats: St, on_progress: Callable[[St], None] | None
) -> T:
    """Await ``work``, calling ``on_progress(stats)`` every ``PROGRESS_INTERVAL`` and at the end."""
    task = asyncio.ensure_future(work)
    if on_progress is None:
        return await task
    stats.listener = on_progress  # type: ignore[assignment]
    try:
        while not task.done():
            await asyncio.wait([task], timeout=PROGRESS_INTERVAL)
            on_progress(stats)
    except BaseException:
        task.cancel()
        raise
    return task.result()


def _seeds(seeds: Path | str | Sequence[str] | None, field: str | None) -> list[tuple[str, Seed]]:
    """A seeds file (any format ``codeclm run`` reads), or the instructions themselves."""
    if seeds is None:
        return []
    if isinstance(seeds, str | Path):
        return load_located_seeds(Path(seeds), field)
    return [
        (f"seeds[{i}]", Seed(id=f"seed-{i + 1}", instruction=text.strip()))
        for i, text in enumerate(seeds)
    ]


async def arun(
    seeds: Path | str | Sequence[str] | None = None,
    *,
    out: Path | str,
    config: RunConfig | Path | str | dict[str, Any] | None = None,
    user_metadata: Path | str | None = None,
    field: str | None = None,
    on_progress: Progress | None = None,
    stats: RunStats | None = None,
    store: str | None = None,
    run_name: str | None = None,
    lease_seconds: float = 30.0,
    **overrides: Any,
) -> RunResult:
    """``codeclm run`` as a coroutine. ``overrides``: any ``RunConfig`` field, e.g.
    ``instructions=200, strong={"model": "gpt-4o"}``. ``store``: a ``postgresql://`` URL to
    keep the run in (as ``run_name``, default the folder's name), which ``codeclm worker``
    processes can join; the outputs are written into ``out`` all the same."""
    cfg = settings(RunConfig, config, overrides)
    spec = StoreSpec.of(store, run_name, Path(out), lease_seconds)
    if (seeds is None) == (user_metadata is None):
        raise ConfigError("give either seeds or user_metadata (exactly one)")
    if seeds is None and not method_spec(cfg.method).makes_metadata:
        raise ConfigError(f"method {cfg.method} starts from seeds: give seeds")
    located = _seeds(seeds, field)
    metadata = load_user_metadata(Path(user_metadata), cfg.max_skills) if user_metadata else []
    inputs: dict[str, str | None] = {
        "seeds": str(Path(seeds).resolve()) if isinstance(seeds, str | Path) else None,
        "user_metadata": str(Path(user_metadata).resolve()) if user_metadata else None,
        "field": field,
    }
    stats = stats or RunStats()
    pending = execute(
        cfg,
        Path(out),
        seeds=[seed for _, seed in located],
        user_metadata=metadata,
        stats=stats,
        inputs=inputs,
        seed_locations=[where for where, _ in located],
        spec=spec,
    )
    return await _with_progress(pending, stats, on_progress)


def _blocking(name: str) -> None:
    """``asyncio.run`` cannot run inside a running event loop (a notebook): say what to
    call instead, before any coroutine is made (so none is left un-awaited)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"codeclm.{name}() cannot run inside a running event loop (a notebook, an async "
        f"app): use `await codeclm.a{name}(...)` there"
    )


def run(seeds: Path | str | Sequence[str] | None = None, **options: Any) -> RunResult:
    """``codeclm run`` from Python: generate a tailored dataset into ``out`` (see ``arun``)."""
    _blocking("run")
    return asyncio.run(arun(seeds, **options))


async def aupdate(
    seeds: Path | str | Sequence[str],
    *,
    out: Path | str,
    instructions: int | None = None,
    metadata: int | None = None,
    field: str | None = None,
    on_progress: Progress | None = None,
    stats: RunStats | None = None,
    **overrides: Any,
) -> RunResult:
    """``codeclm run NEW_SEEDS --out DIR --update``: a finished run meets a shifted
    distribution. The new seeds are encoded; entries drawn from their distribution are
    added to the pool; only the new instructions are decoded and run; every finished pair
    stays. ``instructions`` and ``metadata``: how many the update adds (default: the run's
    own per seed, times the new seeds). The run's recorded settings apply (``overrides``:
    pacing such as ``concurrency``)."""
    out = Path(out)
    cfg, recorded = recorded_run(out, overrides)
    spec = recorded_store(out, None, None)
    located = _seeds(seeds, field)
    if not located:
        raise ConfigError("--update: the seeds file holds no seed")
    grown, fresh = await plan_update(
        cfg, out, spec, [seed for _, seed in located], instructions, metadata
    )
    inputs = dict(recorded.inputs)
    if isinstance(seeds, str | Path):
        inputs["update_seeds"] = str(Path(seeds).resolve())
    stats = stats or RunStats()
    pending = execute(
        grown,
        out,
        seeds=fresh,  # (checked against the context window; the run holds the others)
        user_metadata=[],
        stats=stats,
        inputs=inputs,
        spec=spec,
        update=fresh,
    )
    return await _with_progress(pending, stats, on_progress)


def update(seeds: Path | str | Sequence[str], **options: Any) -> RunResult:
    """``codeclm run NEW_SEEDS --out DIR --update`` from Python (see ``aupdate``)."""
    _blocking("update")
    return asyncio.run(aupdate(seeds, **options))


def recorded_run(out: Path, overrides: dict[str, Any]) -> tuple[RunConfig, RunRecord]:
    """The config and record a run in ``out`` was started with (its run.json)."""
    path = out / RUN_JSON
    if not path.is_file():
        raise ConfigError(f"{out} holds no run (no {RUN_JSON})")
    recorded = RunRecord.read(path)
    if not recorded.config:
        raise ConfigError(f"{path} is not a codeclm run record (no config)")
    return resolve_settings(RunConfig, recorded.config, overrides, str(path)), recorded


def recorded_store(
    out: Path | None, store: str | None = None, run_name: str | None = None
) -> StoreSpec:
    """The store of the run in ``out``: ``store`` if given, else the one its run.json names."""
    return StoreSpec.recorded(out, store, run_name)


async def _stored_record(spec: StoreSpec) -> RunRecord:
    async with open_store(spec, None) as opened:
        record = await opened.read_record()
    if record is None or not record.config:
        raise ConfigError(f"no run {spec.run!r} in {spec.describe()}")
    return record


def recorded_config(
    out: Path, store: str | None, run_name: str | None, overrides: dict[str, Any]
) -> tuple[RunConfig, StoreSpec]:
    """The settings of the run in ``out`` (its run.json) or in a store, and its store."""
    spec = recorded_store(out, store, run_name)
    if not spec.shared:
        return recorded_run(out, overrides)[0], spec
    record = asyncio.run(_stored_record(spec))
    return resolve_settings(RunConfig, record.config, overrides, spec.describe()), spec


async def aresume(
    out: Path | str,
    *,
    on_progress: Progress | None = None,
    stats: RunStats | None = None,
    store: str | None = None,
    run_name: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Continue the run in ``out`` with the settings it was started with (``overrides``:
    pacing such as ``concurrency`` or ``cache``), in the store it was started in."""
    out = Path(out)
    cfg, recorded = recorded_run(out, overrides)
    spec = recorded_store(out, store, run_name)
    inputs = recorded.inputs
    # The seeds are read again only if the 'prepare' thread never checkpointed them.
    seeds_path, metadata_path = inputs.get("seeds"), inputs.get("user_metadata")
    seeds: str | list[str] | None = seeds_path if seeds_path and Path(seeds_path).exists() else None
    metadata = metadata_path if metadata_path and Path(metadata_path).is_file() else None
    if seeds is None and metadata is None:
        seeds = []  # nothing to read again: the checkpoint holds them
    return await arun(
        seeds,
        out=out,
        config=cfg,
        user_metadata=metadata if seeds is None else None,
        field=inputs.get("field"),
        on_progress=on_progress,
        stats=stats,
        store=spec.url,
        run_name=spec.run if spec.shared else None,
    )


def resume(out: Path | str, **options: Any) -> RunResult:
    """``codeclm resume`` from Python (see ``aresume``)."""
    _blocking("resume")
    return asyncio.run(aresume(out, **options))


async def awork(
    store: str,
    run_name: str,
    *,
    out: Path | str | None = None,
    on_progress: Progress | None = None,
    stats: RunStats | None = None,
    lease_seconds: float = 30.0,
    wait_seconds: float = 60.0,
    **overrides: Any,
) -> RunResult | None:
    """``codeclm worker`` as a coroutine: join the run ``run_name`` in ``store`` and work on
    it until nothing is left (``overrides``: pacing such as ``concurrency``); with ``out``,
    write the run's outputs there at the end. A run not started yet is waited for up to
    ``wait_seconds``."""
    spec = StoreSpec.of(store, run_name, None, lease_seconds)
    stats = stats or RunStats()
    pending = join(
        spec,
        stats,
        out_dir=Path(out) if out else None,
        overrides=overrides,
        wait_seconds=wait_seconds,
    )
    return await _with_progress(pending, stats, on_progress)


def work(store: str, run_name: str, **options: Any) -> RunResult | None:
    """``codeclm worker`` from Python (see ``awork``)."""
    _blocking("work")
    return asyncio.run(awork(store, run_name, **options))


async def aevaluate(
    benchmark: Path | str,
    *,
    out: Path | str,
    config: EvalConfig | Path | str | dict[str, Any] | None = None,
    on_progress: Callable[[EvalStats], None] | None = None,
    stats: EvalStats | None = None,
    store: str | None = None,
    run_name: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``codeclm eval`` as a coroutine: CRR of the target against the strong model; returns
    the evaluation's record (``eval.json``: ``result`` holds wins, ties, losses and CRR).
    ``store``: keep its threads in PostgreSQL (as ``run_name``) instead of ``out``."""
    cfg = settings(EvalConfig, config, overrides)
    spec = StoreSpec.of(store, run_name, Path(out))
    items = load_benchmark(Path(benchmark))
    stats = stats or EvalStats()
    pending = evaluate_items(cfg, Path(benchmark), items, Path(out), stats, spec)
    return await _with_progress(pending, stats, on_progress)


def evaluate(benchmark: Path | str, **options: Any) -> dict[str, Any]:
    """``codeclm eval`` from Python (see ``aevaluate``)."""
    _blocking("evaluate")
    return asyncio.run(aevaluate(benchmark, **options))
