"""``codeclm eval``: the paper's Capacity Recovery Ratio of a target model on a benchmark.

Each item is its own checkpointed thread (answer the pair → judge it), in the same kind of
SQLite checkpoint DB as a run, so an evaluation that stops at item 200 of 252 goes on from
there: finished items are skipped, failed ones are tried again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from codeclm.analysis.judge import JudgeTally
from codeclm.config import MAX_TURNS, ConfigError, EvalConfig
from codeclm.context import EvalContext
from codeclm.engine.stops import endpoints_of, until_stopped
from codeclm.engine.threads import RunStats, run_threads
from codeclm.graph import Graph, restart_table, started_values, thread_config
from codeclm.handle import Folder
from codeclm.handle.eval_handle import EvalHandle
from codeclm.nodes.benchmark_item import verdict
from codeclm.nodes.pairs import mean_scores
from codeclm.outputs import JsonlWriter
from codeclm.records import EvalRecord, EvalResult, Tally
from codeclm.rows import JudgmentRow
from codeclm.seeds import load_benchmark
from codeclm.state import EvalItemState, TokenUsage, add_usage
from codeclm.store import Store, StoreSpec

JUDGMENTS = "judgments.jsonl"
EVAL_FAILED = "failed.jsonl"

log = logging.getLogger("codeclm")


def _check_judge(cfg: EvalConfig) -> None:
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


def _turns_judged(cfg: EvalConfig, items: list[dict[str, Any]]) -> int:
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


def start_evaluation(
    cfg: EvalConfig, benchmark: Path, out: Path, spec: StoreSpec
) -> tuple[EvalHandle, list[dict[str, Any]]]:
    """The evaluation's handle (a new folder, or the one it resumes) and the benchmark's
    items: the judge checked, the turns judged capped at the most the items have."""
    _check_judge(cfg)
    items = load_benchmark(benchmark)
    cfg = cfg.model_copy(update={"turns": _turns_judged(cfg, items)})
    return EvalHandle.start(cfg, benchmark, out, spec), items


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


def crr_summary(
    judged: list[tuple[str, str]], turns: list[tuple[int, str]] | None = None
) -> EvalResult:
    """Wins, ties, losses and CRR = (wins + ties) / total, overall and per category, of
    (category, outcome) pairs, one per item; ``turns``: (turn, outcome) of every turn
    judged, for a tally per turn apart (a conversation's item outcome is its turns' mean)."""

    def tally(outcomes: list[str]) -> Tally:
        counts = Counter(outcomes)
        total = len(outcomes)
        wins, ties, losses = counts["win"], counts["tie"], counts["loss"]
        crr = (wins + ties) / total if total else None
        return Tally(total=total, wins=wins, ties=ties, losses=losses, crr=crr)

    categories = sorted({category for category, _ in judged})
    overall = tally([outcome for _, outcome in judged])
    by_category = {c: tally([o for cat, o in judged if cat == c]) for c in categories}
    by_turn: dict[str, Tally] = {}
    if turns is not None and max((turn for turn, _ in turns), default=1) > 1:
        for number in sorted({turn for turn, _ in turns}):
            by_turn[str(number)] = tally([o for turn, o in turns if turn == number])
    return EvalResult(**overall.model_dump(), by_category=by_category, by_turn=by_turn)


def judgment_row(state: EvalItemState) -> JudgmentRow:
    scores = state.scores
    turns = state.turn_scores
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
        follow_ups=state.follow_ups,
        strong_follow_up_answers=state.strong_follow_up_answers,
        target_follow_up_answers=state.target_follow_up_answers,
        turn_outcomes=list(state.turn_outcomes),
        item_outcome=item_outcome(state) if state.turn_scores else None,
        turn_scores_strong_first=[list(s.strong_first) for s in turns],
        turn_scores_target_first=[list(s.target_first) for s in turns],
    )


def item_outcome(state: EvalItemState) -> str:
    """An item's outcome: its turn's, or a conversation's from its turns' mean scores in
    each order (every turn counts alike, as in the filter)."""
    if not state.turn_scores:
        return str(state.outcome)
    return verdict(mean_scores(state.turn_scores))


def judges_itself(config: EvalConfig) -> bool:
    """The judge is the strong model (the default): it scores its own answers."""
    judge, strong = config.judge, config.strong
    return (judge.model, judge.base_url) == (strong.model, strong.base_url)


async def evaluate(handle: EvalHandle, items: list[dict[str, Any]], stats: EvalStats) -> EvalRecord:
    """Answer, judge and score every item (resuming what an earlier call left), then report.

    In a shared store (PostgreSQL) several processes with the same store and name share the
    items, each writing the outputs at the end."""
    started = time.monotonic()
    config = handle.config
    items = items[: config.limit] if config.limit else items
    if config.turns is not None:  # each item's first T turns
        items = [{**item, "follow_ups": item["follow_ups"][: config.turns - 1]} for item in items]
    stats.total = len(items)
    if judges_itself(config):
        log.warning(
            "the judge is the strong model (--self-judge), which then judges its own "
            "answers; the paper judges with a third model (--judge-model, --judge-base-url)"
        )
    async with handle.open() as opened:
        try:
            judging = _judge_all(opened.graph, opened.context, opened.store, items, stats)
            roles = (opened.context.strong, opened.context.target, opened.context.judge)
            await until_stopped(judging, opened.meter, [], False, endpoints_of(roles))
        finally:  # on Ctrl-C too: what was judged is written out
            record = await _write_results(
                opened.graph, items, handle.folder, opened.record, judges_itself(config)
            )
            record.wall_seconds = round(time.monotonic() - started, 2)
            await opened.save(record)
    return record


async def _judge_all(
    graph: Graph, context: EvalContext, store: Store, items: list[dict[str, Any]], stats: EvalStats
) -> None:
    """Every item's thread, each answered and judged (finished ones are skipped)."""
    board = store.board
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
                    follow_ups=item.get("follow_ups", []),
                ),
            )
            for item in items
        ]
    )
    if await board.take_prepare():  # every item is published: nothing more will come
        await board.prepare_finished()
    await run_threads(
        graph,
        context,
        board,
        stats,
        restart_table(graph.builder),
        ("judged",),
        workers=context.config.workers,
    )


async def _write_results(
    graph: Graph,
    items: list[dict[str, Any]],
    folder: Folder,
    record: EvalRecord,
    self_judged: bool,
) -> EvalRecord:
    """judgments.jsonl and failed.jsonl rebuilt whole, and the record's result."""
    judged: list[tuple[str, str]] = []
    turns: list[tuple[int, str]] = []
    usage: dict[str, TokenUsage] = {}
    refused: Counter[str] = Counter()
    cut: Counter[str] = Counter()
    tally = JudgeTally()
    unfinished = 0
    with (
        JsonlWriter(folder.file(JUDGMENTS)) as judgments,
        JsonlWriter(folder.file(EVAL_FAILED)) as failed,
    ):
        for item in items:
            values = started_values((await graph.aget_state(thread_config(item["id"]))).values)
            if not values:
                unfinished += 1
                continue
            state = EvalItemState.model_validate(values)
            usage = add_usage(usage, state.usage)
            if state.status == "judged":
                row = judgment_row(state)
                judged.append((row.category, item_outcome(state)))
                outcomes = row.turn_outcomes or [str(row.outcome)]
                turns += list(enumerate(outcomes, 1))
                refused.update(state.refused)
                cut.update(state.cut)
                judgments.write(row)
                _tally(tally, state)
            elif state.status == "failed":
                failed.write({"id": state.id, "reason": state.reason})
            else:
                unfinished += 1
    return record.model_copy(
        update={
            "result": crr_summary(judged, turns),
            "self_judged": self_judged,
            "refused": {role: refused[role] for role in ("strong", "target")},
            "cut": {role: cut[role] for role in ("strong", "target")},
            "items": len(items),
            "failed": failed.rows,
            "unfinished": unfinished,
            "usage": dict(sorted(usage.items())),
            "judge": tally.figures(self_judged, _judge_model(record, self_judged)),
        }
    )


def _tally(tally: JudgeTally, state: EvalItemState) -> None:
    """An item judged in both orders, in the judge's figures (by its category)."""
    if state.scores is None:
        return
    strong = [state.strong_answer or "", *state.strong_follow_up_answers]
    target = [state.target_answer or "", *state.target_follow_up_answers]
    lengths = (sum(map(len, strong)), sum(map(len, target)))
    groups = (f"use case {state.category}",) if state.category else ()
    tally.add(state.scores.strong_first, state.scores.target_first, lengths, groups)


def _judge_model(record: EvalRecord, self_judged: bool) -> str:
    judge = record.models.get("strong" if self_judged else "judge")
    return judge.model if judge is not None else ""
