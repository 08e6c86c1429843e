"""Runs from Python: ``run``, ``resume``, ``update`` and ``work`` (a shared run's worker).

Each finds or starts the run's handle (``codeclm.handle``) and hands it to the engine.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from codeclm.analysis.contamination import load_items
from codeclm.api.common import Progress, blocking, settings, with_progress
from codeclm.config import ConfigError, RunConfig
from codeclm.cost.estimate import Estimate, from_pilot, from_settings
from codeclm.cost.prices import config_prices
from codeclm.engine.prepare import plan_update
from codeclm.engine.run import RunResult, execute, join
from codeclm.engine.threads import RunStats
from codeclm.graph import method_steps
from codeclm.handle import Folder, RunHandle, RunNotFound
from codeclm.handle.screening import test_items
from codeclm.methods import method_spec
from codeclm.prompts import load_prompts
from codeclm.records import RunInputs
from codeclm.seeds import load_located_seeds, load_user_metadata, split_test_files
from codeclm.state import Seed
from codeclm.store import StoreSpec


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


def with_test_files(
    cfg: RunConfig, seeds: Path | str | Sequence[str] | None, out: Path
) -> RunConfig:
    """``--decontaminate``'s files checked and resolved, with those the run in ``out``
    already holds (a test file, once named, stays: a re-run cannot bring its items back as
    data); seeds that ``codeclm split`` wrote are checked against the evaluation part
    beside them, without the flag."""
    try:
        prior = Folder(out).read_run()
    except ConfigError:
        prior = None  # (not a run's folder: said by the start of the run)
    files = [str(Path(f).resolve()) for f in cfg.decontaminate]
    recorded = prior.config.get("decontaminate") if prior is not None else None
    files += [f for f in recorded or [] if f not in files]
    if not files and isinstance(seeds, str | Path):
        files = split_test_files(str(Path(seeds).resolve()))
    for name in files:
        if not Path(name).is_file():
            raise ConfigError(f"--decontaminate {name}: no such file")
        load_items(Path(name))  # a bad line is one line naming it, before anything runs
    return cfg.model_copy(update={"decontaminate": files})


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
    detach: bool = False,
    **overrides: Any,
) -> RunResult:
    """``codeclm run`` as a coroutine. ``overrides``: any ``RunConfig`` field, e.g.
    ``instructions=200, strong={"model": "gpt-4o"}``. ``store``: a ``postgresql://`` URL to
    keep the run in (as ``run_name``, default the folder's name), which ``codeclm worker``
    processes can join; the outputs are written into ``out`` all the same."""
    cfg = with_test_files(settings(RunConfig, config, overrides), seeds, Path(out))
    spec = StoreSpec.of(store, run_name, Path(out), lease_seconds)
    if (seeds is None) == (user_metadata is None):
        raise ConfigError("give either seeds or user_metadata (exactly one)")
    if seeds is None and not method_spec(cfg.method).makes_metadata:
        raise ConfigError(f"method {cfg.method} starts from seeds: give seeds")
    inputs = RunInputs(
        seeds=str(Path(seeds).resolve()) if isinstance(seeds, str | Path) else None,
        user_metadata=str(Path(user_metadata).resolve()) if user_metadata else None,
        field=field,
    )
    if detach and not cfg.batch:
        raise ConfigError("--detach leaves batches running: use it with --batch")
    handle = RunHandle.start(cfg, Path(out), spec, inputs)
    located = _seeds(seeds, field)
    return await _execute(handle, located, user_metadata, on_progress, stats, detach=detach)


async def _execute(
    handle: RunHandle,
    located: list[tuple[str, Seed]],
    user_metadata: Path | str | None,
    on_progress: Progress | None,
    stats: RunStats | None,
    update: list[Seed] | None = None,
    detach: bool = False,
) -> RunResult:
    """Run the handle's run from these seeds (or user metadata), with progress."""
    metadata = (
        load_user_metadata(Path(user_metadata), handle.config.max_skills) if user_metadata else []
    )
    stats = stats or RunStats()
    pending = execute(
        handle,
        seeds=[seed for _, seed in located],
        user_metadata=metadata,
        stats=stats,
        seed_locations=[where for where, _ in located],
        update=update,
        detach=detach,
    )
    return await with_progress(pending, stats, on_progress)


def run(seeds: Path | str | Sequence[str] | None = None, **options: Any) -> RunResult:
    """``codeclm run`` from Python: generate a tailored dataset into ``out`` (see ``arun``)."""
    blocking("run")
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
    handle = await RunHandle.find(Path(out), overrides=overrides)
    located = _seeds(seeds, field)
    if not located:
        raise ConfigError("--update: the seeds file holds no seed")
    fresh = await plan_update(handle, [seed for _, seed in located], instructions, metadata)
    if isinstance(seeds, str | Path):
        handle.inputs = handle.inputs.model_copy(
            update={"update_seeds": str(Path(seeds).resolve())}
        )
    # (checked against the context window: only the new seeds; the run holds the others)
    where = {seed.text: location for location, seed in located}
    fresh_located = [(where.get(seed.text, f"seed {seed.id}"), seed) for seed in fresh]
    return await _execute(handle, fresh_located, None, on_progress, stats, fresh)


def update(seeds: Path | str | Sequence[str], **options: Any) -> RunResult:
    """``codeclm run NEW_SEEDS --out DIR --update`` from Python (see ``aupdate``)."""
    blocking("update")
    return asyncio.run(aupdate(seeds, **options))


async def aresume(
    out: Path | str,
    *,
    on_progress: Progress | None = None,
    stats: RunStats | None = None,
    store: str | None = None,
    run_name: str | None = None,
    detach: bool = False,
    **overrides: Any,
) -> RunResult:
    """Continue the run in ``out`` with the settings it was started with (``overrides``:
    pacing such as ``concurrency`` or ``cache``), in the store it was started in; with
    ``--batch``, collecting the batches it left out (``detach``: stop again once every
    request waits on a batch)."""
    handle = await RunHandle.find(Path(out), store=store, run_name=run_name, overrides=overrides)
    test_items(handle.config, handle.inputs)  # the recorded test files are still there
    if detach and not handle.config.batch:
        raise ConfigError(f"--detach leaves batches running: the run in {out} is not --batch")
    inputs = handle.inputs
    # The seeds are read again only if the 'prepare' thread never checkpointed them.
    seeds = inputs.seeds if inputs.seeds and Path(inputs.seeds).exists() else None
    metadata = (
        inputs.user_metadata
        if inputs.user_metadata and Path(inputs.user_metadata).is_file()
        else None
    )
    located = _seeds(seeds, inputs.field) if seeds else []
    metadata = metadata if not located else None
    return await _execute(handle, located, metadata, on_progress, stats, detach=detach)


def resume(out: Path | str, **options: Any) -> RunResult:
    """``codeclm resume`` from Python (see ``aresume``)."""
    blocking("resume")
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
    stats = stats or RunStats()
    found = RunHandle.find(
        Path(out) if out else None,
        store=store,
        run_name=run_name,
        overrides=overrides,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        on_wait=lambda: stats.enter("waiting_for_run"),
    )
    return await with_progress(_join(found, run_name, stats), stats, on_progress)


async def _join(
    found: Coroutine[Any, Any, RunHandle], run_name: str, stats: RunStats
) -> RunResult | None:
    """Wait for the run to appear (the progress shows it), then work on it."""
    try:
        handle = await found
    except RunNotFound as exc:
        raise ConfigError(
            f"{exc}: start it with codeclm run SEEDS --out DIR --store URL --run {run_name}"
        ) from None
    return await join(handle, stats)


def work(store: str, run_name: str, **options: Any) -> RunResult | None:
    """``codeclm worker`` from Python (see ``awork``)."""
    blocking("work")
    return asyncio.run(awork(store, run_name, **options))


async def aestimate(
    seeds: Path | str | Sequence[str],
    *,
    config: RunConfig | Path | str | dict[str, Any] | None = None,
    field: str | None = None,
    pilot: int = 0,
    **overrides: Any,
) -> Estimate:
    """``codeclm run … --estimate``: calls, tokens and dollars per role for the whole run,
    expected and at worst, without calling a model; with ``pilot`` N, from a pilot run of
    N instructions (in a temporary folder, paid for) measured and scaled to the run."""
    cfg = settings(RunConfig, config, overrides)
    located = _seeds(seeds, field)
    if not located:
        raise ConfigError("--estimate: the seeds file holds no seed")
    prompts = load_prompts(cfg.prompts_dir)
    prices = config_prices(cfg)
    texts = [seed.text for _, seed in located]
    if not pilot:
        return from_settings(cfg, prompts, texts, method_steps(cfg)).priced(prices, cfg.batch)
    small = cfg.model_copy(
        update={
            "instructions": pilot,
            "metadata": min(cfg.metadata, max(1, pilot // 2)),
            "pairs": None,
            "batch": False,  # measured online, now (the batch discount applies below)
        }
    )
    sample = located[: max(1, min(len(located), pilot))]
    with tempfile.TemporaryDirectory(prefix="codeclm-pilot-") as folder:
        handle = RunHandle.start(small, Path(folder), StoreSpec(), RunInputs())
        result = await _execute(handle, sample, None, None, None)
    steps = method_steps(cfg)
    estimate = from_pilot(cfg, result.record, texts, prompts, steps).priced(prices, cfg.batch)
    estimate.pilot_usd = result.record.cost.total if result.record.cost else None
    return estimate


def estimate(seeds: Path | str | Sequence[str], **options: Any) -> Estimate:
    """``codeclm run … --estimate`` from Python (see ``aestimate``)."""
    blocking("estimate")
    return asyncio.run(aestimate(seeds, **options))
