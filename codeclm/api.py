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
from codeclm.engine.run import RunError, RunResult, execute
from codeclm.engine.threads import RunStats
from codeclm.evaluation import EvalStats
from codeclm.evaluation import evaluate as evaluate_items
from codeclm.methods import method_spec
from codeclm.outputs import RUN_JSON
from codeclm.records import RunRecord
from codeclm.seeds import load_benchmark, load_located_seeds, load_user_metadata
from codeclm.state import Seed

__all__ = [
    "ConfigError",
    "EvalStats",
    "RunError",
    "RunResult",
    "RunStats",
    "aevaluate",
    "aresume",
    "arun",
    "evaluate",
    "resume",
    "run",
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
    **overrides: Any,
) -> RunResult:
    """``codeclm run`` as a coroutine. ``overrides``: any ``RunConfig`` field, e.g.
    ``instructions=200, strong={"model": "gpt-4o"}``."""
    cfg = settings(RunConfig, config, overrides)
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
    work = execute(
        cfg,
        Path(out),
        seeds=[seed for _, seed in located],
        user_metadata=metadata,
        stats=stats,
        inputs=inputs,
        seed_locations=[where for where, _ in located],
    )
    return await _with_progress(work, stats, on_progress)


def run(seeds: Path | str | Sequence[str] | None = None, **options: Any) -> RunResult:
    """``codeclm run`` from Python: generate a tailored dataset into ``out`` (see ``arun``)."""
    return asyncio.run(arun(seeds, **options))


def recorded_run(out: Path, overrides: dict[str, Any]) -> tuple[RunConfig, dict[str, str | None]]:
    """The config and inputs a run in ``out`` was started with (its run.json)."""
    path = out / RUN_JSON
    if not path.is_file():
        raise ConfigError(f"{out} holds no run (no {RUN_JSON})")
    recorded = RunRecord.read(path)
    if not recorded.config:
        raise ConfigError(f"{path} is not a codeclm run record (no config)")
    return resolve_settings(RunConfig, recorded.config, overrides, str(path)), recorded.inputs


async def aresume(
    out: Path | str,
    *,
    on_progress: Progress | None = None,
    stats: RunStats | None = None,
    **overrides: Any,
) -> RunResult:
    """Continue the run in ``out`` with the settings it was started with (``overrides``:
    pacing such as ``concurrency`` or ``cache``)."""
    out = Path(out)
    cfg, inputs = recorded_run(out, overrides)
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
    )


def resume(out: Path | str, **options: Any) -> RunResult:
    """``codeclm resume`` from Python (see ``aresume``)."""
    return asyncio.run(aresume(out, **options))


async def aevaluate(
    benchmark: Path | str,
    *,
    out: Path | str,
    config: EvalConfig | Path | str | dict[str, Any] | None = None,
    on_progress: Callable[[EvalStats], None] | None = None,
    stats: EvalStats | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``codeclm eval`` as a coroutine: CRR of the target against the strong model; returns
    the evaluation's record (``eval.json``: ``result`` holds wins, ties, losses and CRR)."""
    cfg = settings(EvalConfig, config, overrides)
    items = load_benchmark(Path(benchmark))
    stats = stats or EvalStats()
    work = evaluate_items(cfg, Path(benchmark), items, Path(out), stats)
    return await _with_progress(work, stats, on_progress)


def evaluate(benchmark: Path | str, **options: Any) -> dict[str, Any]:
    """``codeclm eval`` from Python (see ``aevaluate``)."""
    return asyncio.run(aevaluate(benchmark, **options))
