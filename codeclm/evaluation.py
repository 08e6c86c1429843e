"""``codeclm eval``: the paper's Capacity Recovery Ratio of a target model on a benchmark.

Each item is its own checkpointed thread (answer the pair → judge it), in the same kind of
SQLite checkpoint DB as a run, so an evaluation that stops at item 200 of 252 goes on from
there: finished items are skipped, failed ones are tried again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from codeclm import __version__
from codeclm.config import ConfigError, EvalConfig, differing_keys
from codeclm.engine.threads import RunStats, run_threads
from codeclm.engine.workspace import models_record, open_workspace
from codeclm.graph import started_values, thread_config
from codeclm.graph.evaluation import EVAL_RESTART_FROM, build_eval_graph
from codeclm.nodes.evaluation import EvalContext
from codeclm.outputs import EVAL_JSON, RUN_JSON, JsonlWriter, make_folder, write_json
from codeclm.records import JudgmentRow
from codeclm.state import EvalItemState, TokenUsage, add_usage
from codeclm.store import Store, StoreSpec, redact_url

JUDGMENTS = "judgments.jsonl"
EVAL_FAILED = "failed.jsonl"

log = logging.getLogger("codeclm")


class EvalStats(RunStats):
    """Live counters: the target's wins, ties and losses so far."""

    def __init__(self) -> None:
        super().__init__(phase="evaluating")
        self.outcomes: Counter[str] = Counter()

    def count(self, values: dict[str, Any]) -> None:
        if values.get("status") == "judged":
            self.outcomes[str(values.get("outcome"))] += 1
            self.kept += 1
        elif values.get("status") == "failed":
            self.failed += 1


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _fingerprint(config: EvalConfig, benchmark: Path) -> dict[str, Any]:
    return {"settings": config.fingerprint_fields(), "benchmark_sha256": _digest(benchmark)}


def _check_fingerprint(out_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse to continue an evaluation in ``out_dir`` begun with other settings or items."""
    path = out_dir / EVAL_JSON
    if not path.is_file():
        if (out_dir / RUN_JSON).is_file():
            raise ConfigError(f"{out_dir} holds a run, not an evaluation; use another --out")
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not a codeclm evaluation record; use another --out") from None
    if previous != fingerprint:
        keys = differing_keys(previous, fingerprint)
        raise ConfigError(
            f"{out_dir} holds an evaluation with different settings or items "
            f"({', '.join(keys) or 'unknown'}); use the same ones to resume it, or another --out"
        )


async def _check_stored_fingerprint(
    store: Store, fingerprint: dict[str, Any], spec: StoreSpec
) -> None:
    """The store-side ``_check_fingerprint``: the name holds this evaluation or nothing."""
    if await store.read_record() is not None:
        raise ConfigError(f"{spec.describe()} holds a run, not an evaluation; use another --run")
    previous = (await store.read_inputs()).get("eval_fingerprint")
    if previous is None:
        await store.save_inputs({"eval_fingerprint": fingerprint})
    elif previous != fingerprint:
        keys = differing_keys(previous, fingerprint)
        raise ConfigError(
            f"{spec.describe()} holds an evaluation with different settings or items "
            f"({', '.join(keys) or 'unknown'}); use the same ones to resume it, or another --run"
        )


def crr_summary(judged: list[dict[str, Any]]) -> dict[str, Any]:
    """Wins, ties, losses and CRR = (wins + ties) / total, overall and per category."""

    def tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
        counts = Counter(row["outcome"] for row in rows)
        total = len(rows)
        wins, ties, losses = counts["win"], counts["tie"], counts["loss"]
        return {
            "total": total,
            "wins": wins,
            "ties": ties,
            "losses": losses,
            "crr": (wins + ties) / total if total else None,
        }

    categories = sorted({row["category"] for row in judged})
    return {
        **tally(judged),
        "by_category": {c: tally([r for r in judged if r["category"] == c]) for c in categories},
    }


def judgment_row(state: EvalItemState) -> JudgmentRow:
    scores = state.scores
    return JudgmentRow(
        id=state.id,
        category=state.category,
        instruction=state.instruction,
        target_answer=state.target_answer,
        strong_answer=state.strong_answer,
        outcome=state.outcome,
        # Each order's scores as (strong, target): the verdict needs both.
        scores_strong_first=list(scores.strong_first) if scores else None,
        scores_target_first=list(scores.target_first) if scores else None,
        mean_scores={"strong": scores.strong, "target": scores.target} if scores else None,
    )


def judges_itself(config: EvalConfig) -> bool:
    """The judge is the strong model (the default): it scores its own answers."""
    judge, strong = config.judge, config.strong
    return (judge.model, judge.base_url) == (strong.model, strong.base_url)


async def evaluate(
    config: EvalConfig,
    benchmark: Path,
    items: list[dict[str, str]],
    out_dir: Path,
    stats: EvalStats,
    spec: StoreSpec | None = None,
) -> dict[str, Any]:
    """Answer, judge and score every item (resuming what an earlier call left), then report.

    ``spec``: a shared store (PostgreSQL) to keep the items' threads in; several processes
    with the same store and name share the items, each writing the outputs at the end."""
    started = time.monotonic()
    fingerprint = _fingerprint(config, benchmark)
    spec = spec or StoreSpec()
    if not spec.shared:
        _check_fingerprint(out_dir, fingerprint)
    items = items[: config.limit] if config.limit else items
    stats.total = len(items)
    if judges_itself(config):
        log.warning(
            "the judge is the strong model, which then judges its own answers; the paper "
            "judges with a third model (--judge-model, --judge-base-url)"
        )
    async with open_workspace(config, out_dir, spec=spec) as space:
        if spec.shared:
            await _check_stored_fingerprint(space.store, fingerprint, spec)
        context = EvalContext(
            strong=space.models["strong"],
            target=space.models["target"],
            judge=space.models["judge"],
            prompts=space.prompts,
            config=config,
        )
        record: dict[str, Any] = {
            "codeclm_version": __version__,
            "benchmark": str(benchmark.resolve()),
            "fingerprint": fingerprint,
            "config": config.model_dump(mode="json"),
            "models": {r: m.model_dump() for r, m in models_record(config, space.models).items()},
            "store": redact_url(spec.url),
            "run_name": spec.run if spec.shared else None,
        }
        make_folder(out_dir)
        write_json(out_dir / EVAL_JSON, record)  # first, so a resume is checked
        graph = build_eval_graph(space.retry).compile(checkpointer=space.store.saver)
        board = space.store.board
        await board.reopen()  # failed items are tried again
        await board.publish(
            [
                (
                    item["id"],
                    partial(
                        EvalItemState,
                        id=item["id"],
                        instruction=item["instruction"],
                        category=item["category"],
                    ),
                )
                for item in items
            ]
        )
        if await board.take_prepare():  # every item is published: nothing more will come
            await board.prepare_finished()
        try:
            await run_threads(
                graph,
                context,
                board,
                stats,
                EVAL_RESTART_FROM,
                ("judged",),
                workers=config.concurrency,
            )
        finally:  # on Ctrl-C too: what was judged is written out
            judged: list[dict[str, Any]] = []
            usage: dict[str, TokenUsage] = {}
            unfinished = 0
            with (
                JsonlWriter(out_dir / JUDGMENTS) as judgments,
                JsonlWriter(out_dir / EVAL_FAILED) as failed,
            ):
                for item in items:
                    values = started_values(
                        (await graph.aget_state(thread_config(item["id"]))).values
                    )
                    if not values:
                        unfinished += 1
                        continue
                    state = EvalItemState.model_validate(values)
                    usage = add_usage(usage, state.usage)
                    if state.status == "judged":
                        row = judgment_row(state)
                        judged.append({"category": row.category, "outcome": row.outcome})
                        judgments.write(row)
                    elif state.status == "failed":
                        failed.write({"id": state.id, "reason": state.reason})
                    else:
                        unfinished += 1
            record.update(
                result=crr_summary(judged),
                items=len(items),
                failed=failed.rows,
                unfinished=unfinished,
                usage={role: u.model_dump() for role, u in sorted(usage.items())},
                wall_seconds=round(time.monotonic() - started, 2),
            )
            write_json(out_dir / EVAL_JSON, record)
    return record
