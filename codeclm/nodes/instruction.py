"""Nodes of one instruction's thread: answer twice → judge twice → gap rule → improve.

The decision (keep, improve again, drop) is made *inside* ``judge`` and stored in state;
the router after it only reads ``status``. A router that raises would make the thread look
finished on resume (langgraph#8834), so routers here cannot fail.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from langgraph.errors import NodeError
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command

from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.client import describe_error
from codeclm.nodes.replies import ImprovedInstruction, PairwiseScores
from codeclm.state import InstructionState, JudgeScores


async def answer(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 6a: the strong answer f_s(I) and the target answer f_t(I), sent at once.

    One node rather than two parallel ones: no join barrier to checkpoint, one writer to
    edit as when stepping. If one call fails, the retry re-runs the node, and the call that
    had completed is answered from the response cache.
    """
    ctx = pipeline_context(runtime)
    prompt = ctx.prompts.render("answer", instruction=state.instruction)
    (strong, strong_usage), (target, target_usage) = await asyncio.gather(
        ctx.strong.text(prompt), ctx.target.text(prompt)
    )
    return {
        "strong_answer": strong,
        "target_answer": target,
        "usage": {"strong": strong_usage, "target": target_usage},
    }


def gap_decision(
    state: InstructionState, scores: JudgeScores, threshold: float, max_iterations: int
) -> dict[str, Any]:
    """Step 6c, the signed gap rule. G > θ keeps the strong answer, G < −θ the target's."""
    if scores.gap > threshold:
        return {"status": "kept", "response_source": "strong", "reason": None}
    if scores.gap < -threshold:
        return {"status": "kept", "response_source": "target", "reason": None}
    if state.iteration >= max_iterations:
        reason = (
            f"|gap| {abs(scores.gap):g} <= threshold {threshold:g} "
            f"after {state.iteration} iteration(s)"
        )
        return {"status": "dropped", "response_source": None, "reason": reason}
    if not state.candidate_actions:
        reason = "no improvement actions for this metadata (Self-Rubrics failed)"
        return {"status": "dropped", "response_source": None, "reason": reason}
    return {"status": "improving", "response_source": None, "reason": None}


async def judge(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 6b: the strong model scores both answers, twice with the order swapped.

    Both orders go out at once; judging runs at temperature 0 so a replay scores the same.
    """
    ctx = pipeline_context(runtime)
    strong_answer, target_answer = state.strong_answer or "", state.target_answer or ""
    strong_first_prompt = ctx.prompts.render(
        "judge", instruction=state.instruction, answer_1=strong_answer, answer_2=target_answer
    )
    target_first_prompt = ctx.prompts.render(
        "judge", instruction=state.instruction, answer_1=target_answer, answer_2=strong_answer
    )
    (forward, usage_1), (swapped, usage_2) = await asyncio.gather(
        ctx.strong.structured(strong_first_prompt, PairwiseScores, temperature=0),
        ctx.strong.structured(target_first_prompt, PairwiseScores, temperature=0),
    )
    strong_score = (forward.assistant_1 + swapped.assistant_2) / 2
    target_score = (forward.assistant_2 + swapped.assistant_1) / 2
    scores = JudgeScores(
        strong=strong_score,
        target=target_score,
        gap=strong_score - target_score,
        strong_first=(forward.assistant_1, forward.assistant_2),
        target_first=(swapped.assistant_2, swapped.assistant_1),
    )
    decision = gap_decision(state, scores, ctx.config.threshold, ctx.config.max_iterations)
    return {"scores": scores, **decision, "usage": {"strong": usage_1 + usage_2}}


def choose_action(state: InstructionState, seed: int) -> str:
    """Step 5's random action: seeded per instruction and iteration, so a re-run picks the same.

    Without replacement across iterations (the paper is silent): an action already applied
    to this instruction is only drawn again once every action has been used.
    """
    unused = [a for a in state.candidate_actions if a not in state.actions_applied]
    rng = random.Random(f"{seed}:{state.id}:{state.iteration}")
    return rng.choice(unused or state.candidate_actions)


async def improve(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 5: rewrite the instruction with one action, harder; the next iteration begins."""
    ctx = pipeline_context(runtime)
    action = choose_action(state, ctx.config.seed)
    prompt = ctx.prompts.render(
        "improve",
        instruction=state.instruction,
        action=action,
        use_case=state.use_case,
        skills=", ".join(state.skills),
    )
    reply, usage = await ctx.strong.structured(prompt, ImprovedInstruction)
    return {
        "instruction": reply.instruction,
        "iteration": state.iteration + 1,
        "actions_applied": [*state.actions_applied, action],
        "strong_answer": None,
        "target_answer": None,
        "status": "pending",
        "usage": {"strong": usage},
    }


def route_after_judge(state: InstructionState) -> str:
    """Trivial on purpose: the decision was made and stored by ``judge``."""
    return "improve" if state.status == "improving" else END


def record_failure(state: InstructionState, error: NodeError) -> Command[Any]:
    """Error handler: after its retries, a failing step ends this instruction as 'failed'."""
    reason = f"{error.node}: {describe_error(error.error)}"
    return Command(
        update={"status": "failed", "reason": reason, "failed_node": error.node}, goto=END
    )


#: For a failed thread to run its failed node again: the node to write the reset as (so
#: the graph's own edges lead to the failed node next) and the status that node expects.
RESTART_FROM: dict[str, tuple[str, str]] = {
    "answer": ("improve", "pending"),
    "judge": ("answer", "pending"),
    "improve": ("judge", "improving"),
}
