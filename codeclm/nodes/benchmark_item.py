"""Nodes of one benchmark item's thread in ``codeclm eval``: answer the pair, judge it.

The verdict is the paper's both-orders rule: the target wins only if it wins in both
orders, loses only if it loses in both, and anything else is a tie.
"""

from __future__ import annotations

from typing import Any

from langgraph.errors import NodeError
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command

from codeclm.context import EvalContext
from codeclm.llm.reply import describe_error
from codeclm.nodes.pairs import SCORE_GRAMMAR, answer_conversations, judge_turns, parse_score_line
from codeclm.state import EvalItemState, JudgeScores, Outcome, spent_per_turn
from codeclm.steps import ANSWER_TOKENS, Step

ANSWER_ITEM = Step(
    name="answer_item",
    prompts=("answer",),
    output_tokens=ANSWER_TOKENS,
    roles=("strong", "target"),
    turns="each",
)
JUDGE_ITEM = Step(
    name="judge_item",
    prompts=("judge_eval", "judge_eval_turn"),
    output_tokens=200,  # the scores, then an explanation
    reply="PairwiseScores",
    parse=parse_score_line,
    grammar=SCORE_GRAMMAR,
    roles=("judge",),
    turns="each",
    shows=("scores",),
)


def verdict(scores: JudgeScores) -> Outcome:
    """The target's outcome from both orders' scores (each order is (strong, target))."""
    orders = (scores.strong_first, scores.target_first)
    if all(target > strong for strong, target in orders):
        return "win"
    if all(target < strong for strong, target in orders):
        return "loss"
    return "tie"


@ANSWER_ITEM.node
async def answer_item(state: EvalItemState, runtime: Runtime[EvalContext]) -> dict[str, Any]:
    """The target's and the strong model's answers, sent at once (``nodes.pairs``); with
    later turns, each model's conversation, every turn after its own earlier answers."""
    ctx = runtime.context
    users = [state.instruction, *state.follow_ups]
    strong, target, usage = await answer_conversations(
        ctx.strong, ctx.target, ctx.prompts, users, ctx.config.seed, evaluation=True
    )
    # Judged as they are, refusals and all: an evaluation measures what each model says
    # first (no re-ask of a refusal, no larger budget for a cut answer), and counts them.
    return {
        "refused": {
            "strong": sum(reply.refused for reply in strong),
            "target": sum(reply.refused for reply in target),
        },
        "cut": {
            "strong": sum(reply.cut and not reply.refused for reply in strong),
            "target": sum(reply.cut and not reply.refused for reply in target),
        },
        "strong_answer": strong[0].said,
        "target_answer": target[0].said,
        "strong_follow_up_answers": [reply.said for reply in strong[1:]],
        "target_follow_up_answers": [reply.said for reply in target[1:]],
        **spent_per_turn("answer_item", **usage),
    }


@JUDGE_ITEM.node
async def judge_item(state: EvalItemState, runtime: Runtime[EvalContext]) -> dict[str, Any]:
    """The judge scores the pair twice, order swapped, at temperature 0; then the verdict.
    Each turn is judged so (a later one with both conversations up to it, as MT-Bench's
    multi-turn judge), all at once; ``scores`` and ``outcome`` are the first turn's."""
    ctx = runtime.context
    users = [state.instruction, *state.follow_ups]
    strong = [state.strong_answer or "", *state.strong_follow_up_answers]
    target = [state.target_answer or "", *state.target_follow_up_answers]
    per_turn, usage = await judge_turns(ctx.judge, ctx.prompts, users, strong, target, JUDGE_ITEM)
    several = len(per_turn) > 1
    return {
        "scores": per_turn[0],
        "outcome": verdict(per_turn[0]),
        "turn_scores": per_turn if several else [],
        "turn_outcomes": [verdict(scores) for scores in per_turn] if several else [],
        "status": "judged",
        **spent_per_turn("judge_item", judge=usage),
    }


def record_eval_failure(state: EvalItemState, error: NodeError) -> Command[Any]:
    """After its retries, a failing step ends this item as 'failed', with the reason."""
    reason = f"{error.node}: {describe_error(error.error)}"
    return Command(
        update={"status": "failed", "reason": reason, "failed_node": error.node}, goto=END
    )
