"""``codeclm.evaluate``: the paper's Capacity Recovery Ratio of a target model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeclm.api.common import blocking, settings, with_progress
from codeclm.config import MAX_TURNS, ConfigError, EvalConfig
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
    check_judge(cfg)
    spec = StoreSpec.of(store, run_name, Path(out))
    items = load_benchmark(Path(benchmark))
    cfg = cfg.model_copy(update={"turns": turns_judged(cfg, items)})
    handle = EvalHandle.start(cfg, Path(benchmark), Path(out), spec)
    stats = stats or EvalStats()
    pending = evaluate_items(handle, items, stats)
    return await with_progress(pending, stats, on_progress)


def check_judge(cfg: EvalConfig) -> None:
    """The paper's CRR is judged by a third model: a judge is named, or ``--self-judge``
    says the strong model judges its own answers."""
    strong, judge = cfg.strong, cfg.judge
    if cfg.self_judge and (judge.model, judge.base_url) != (strong.model, strong.base_url):
        raise ConfigError("--self-judge and --judge-model/--judge-base-url: choose one judge")
    if not cfg.self_judge and not cfg.judge_named:
        raise ConfigError(
            "codeclm eval needs a judge: --judge-model (and --judge-base-url) for a third "
            "model, as the paper judges, or --self-judge to let the strong model judge"
        )


def turns_judged(cfg: EvalConfig, items: list[dict[str, Any]]) -> int:
    """The turns judged (recorded: an evaluation of MT-Bench's first turn only, as codeclm
    judged it before --turns, resumes with --turns 1): ``--turns``, or every turn the
    benchmark has; more than it has is refused."""
    most = max((1 + len(item["follow_ups"]) for item in items), default=1)
    if cfg.turns is not None and cfg.turns > most:
        raise ConfigError(f"--turns {cfg.turns}: the benchmark's items have at most {most}")
    if most > MAX_TURNS and cfg.turns is None:
        longer = sum(1 + len(item["follow_ups"]) > MAX_TURNS for item in items)
        log.warning(
            "%d items have more than %d turns: judged on their first %d",
            longer,
            MAX_TURNS,
            MAX_TURNS,
        )
    return min(cfg.turns or MAX_TURNS, most)


def evaluate(benchmark: Path | str, **options: Any) -> EvalRecord:
    """``codeclm eval`` from Python (see ``aevaluate``)."""
    blocking("evaluate")
    return asyncio.run(aevaluate(benchmark, **options))
