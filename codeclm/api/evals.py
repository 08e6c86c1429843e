"""``codeclm.evaluate``: the paper's Capacity Recovery Ratio of a target model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeclm.api.common import blocking, settings, with_progress
from codeclm.config import EvalConfig
from codeclm.engine.evaluation import EvalStats, start_evaluation
from codeclm.engine.evaluation import evaluate as evaluate_items
from codeclm.records import EvalRecord
from codeclm.store import StoreSpec


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
    handle, items = start_evaluation(cfg, Path(benchmark), Path(out), spec)
    stats = stats or EvalStats()
    pending = evaluate_items(handle, items, stats)
    return await with_progress(pending, stats, on_progress)


def evaluate(benchmark: Path | str, **options: Any) -> EvalRecord:
    """``codeclm eval`` from Python (see ``aevaluate``)."""
    blocking("evaluate")
    return asyncio.run(aevaluate(benchmark, **options))
