"""``codeclm.evaluate``: the paper's Capacity Recovery Ratio of a target model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeclm.api.common import blocking, settings, with_progress
from codeclm.config import MAX_TURNS, EvalConfig
from codeclm.evaluation import EvalStats
from codeclm.evaluation import evaluate as evaluate_items
from codeclm.handle.evaluation import EvalHandle
from codeclm.records import EvalRecord
from codeclm.seeds import load_benchmark
from codeclm.store import StoreSpec

log = logging.getLogger("codeclm")


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
) -> EvalRecord:
    """``codeclm eval`` as a coroutine: CRR of the target against the strong model; returns
    the evaluation's record (``eval.json``; ``record.result``: wins, ties, losses and CRR,
    overall and per category; ``record.crr``: the overall CRR).
    ``store``: keep its threads in PostgreSQL (as ``run_name``) instead of ``out``."""
    cfg = settings(EvalConfig, config, overrides)
    spec = StoreSpec.of(store, run_name, Path(out))
    items = load_benchmark(Path(benchmark))
    # The turns judged, as the benchmark has them (recorded: an evaluation of MT-Bench's
    # first turn only, as codeclm judged it before --turns, resumes with --turns 1).
    most = max((1 + len(item["follow_ups"]) for item in items), default=1)
    if most > MAX_TURNS and (cfg.turns or MAX_TURNS) == MAX_TURNS:
        longer = sum(1 + len(item["follow_ups"]) > MAX_TURNS for item in items)
        log.warning(
            "%d items have more than %d turns: judged on their first %d",
            longer,
            MAX_TURNS,
            MAX_TURNS,
        )
    cfg = cfg.model_copy(update={"turns": min(cfg.turns or MAX_TURNS, most)})
    handle = EvalHandle.start(cfg, Path(benchmark), Path(out), spec)
    stats = stats or EvalStats()
    pending = evaluate_items(handle, items, stats)
    return await with_progress(pending, stats, on_progress)


def evaluate(benchmark: Path | str, **options: Any) -> EvalRecord:
    """``codeclm eval`` from Python (see ``aevaluate``)."""
    blocking("evaluate")
    return asyncio.run(aevaluate(benchmark, **options))
