"""Nodes of one benchmark item's thread in ``codeclm eval``: answer the pair, judge it.

The verdict is the paper's both-orders rule: the target wins only if it wins in both
orders, loses only if it loses in both, and anything else is a tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.errors import NodeError
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command

from codeclm.config import EvalConfig
from codeclm.context import RoleContext
from codeclm.llm.client import RoleModel
from codeclm.llm.reply import describe_error
from codeclm.nodes.pairs import answer_pair, judge_pair
from codeclm.state import EvalItemState, JudgeScores, Outcome, spent


@dataclass(frozen=True)
class EvalContext(RoleContext):
    """An evaluation's context: the pair's roles and the prompts (``RoleContext``), the
    judge, and the evaluation's settings."""

    judge: RoleModel
    config: EvalConfig


def verdict(scores: JudgeScores) -> Outcome:
    """The target's outcome from both orders' scores (each order is (strong, target))."""
    orders = (scores.strong_first, scores.target_first)
    if all(target > strong for strong, target in orders):
        return "win"
    if all(target < strong for strong, target in orders):
        return "loss"
    return "tie"


async def answer_item(state: EvalItemState, runtime: Runtime[EvalContext]) -> dict[str, Any]:
    """The target's and the strong model's answers, sent at once (``nodes.pairs``)."""
    ctx = runtime.context
    strong, target, usage = await answer_pair(
        ctx.strong, ctx.target, ctx.prompts, state.instruction, ctx.config.seed
    )
    # Judged as they are, refusals and all: an evaluation measures what the models say
    # (each was asked again while it refused, and a cut answer with a larger budget).
    return {
        "strong_answer": strong.content or (strong.refusal or ""),
        "target_answer": target.content or (target.refusal or ""),
        **spent("answer_item", **usage),
    }


async def judge_item(state: EvalItemState, runtime: Runtime[EvalContext]) -> dict[str, Any]:
    """The judge scores the pair twice, order swapped, at temperature 0; then the verdict."""
    ctx = runtime.context
    scores, usage = await judge_pair(
        ctx.judge,
        ctx.prompts,
        state.instruction,
        state.strong_answer or "",
        state.target_answer or "",
        prompt="judge_eval",
    )
    return {
        "scores": scores,
        "outcome": verdict(scores),
        "status": "judged",
        **spent("judge_item", judge=usage),
    }


def record_eval_failure(state: EvalItemState, error: NodeError) -> Command[Any]:
    """After its retries, a failing step ends this item as 'failed', with the reason."""
    reason = f"{error.node}: {describe_error(error.error)}"
    return Command(
        update={"status": "failed", "reason": reason, "failed_node": error.node}, goto=END
    )
