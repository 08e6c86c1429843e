"""Nodes of one instruction's thread: answer twice → judge twice → gap rule → improve.

The decision (keep, improve again, drop) is made *inside* ``judge`` and stored in state;
the router after it only reads ``status``. A router that raises would make the thread look
finished on resume (langgraph#8834), so routers here cannot fail.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from langgraph.errors import NodeError
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command

from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.parsing import CutReply, declines_task
from codeclm.llm.reply import Reply, describe_error
from codeclm.nodes.pairs import (
    SCORE_GRAMMAR,
    answer_conversation,
    answer_conversations,
    judge_turns,
    mean_scores,
    parse_score_line,
)
from codeclm.nodes.replies import ImprovedInstruction
from codeclm.nodes.turns import improve_prompt, rewritten, turn_to_improve
from codeclm.prompts import conversation_text
from codeclm.state import (
    InstructionState,
    JudgeScores,
    TokenUsage,
    in_turn,
    spent,
    spent_per_turn,
    turn_node,
)
from codeclm.steps import ANSWER_TOKENS, Scale, Step, Typical


def _answer_prompt(typical: Typical) -> str:
    return typical.render("answer", instruction=typical.instruction)


def _answer_later(typical: Typical, turn: int) -> str:
    """A later turn's answer reads the conversation so far."""
    return _answer_prompt(typical) * turn + typical.answer * (turn - 1)


def _judge_prompt(typical: Typical) -> str:
    answer = typical.answer
    return typical.render(
        "judge", instruction=typical.instruction, answer_1=answer, answer_2=answer
    )


def _judge_later(typical: Typical, turn: int) -> str:
    conversation = conversation_text(
        [typical.instruction] * turn, [typical.answer] * turn, "Assistant 1"
    )
    return typical.render(
        "judge_turn",
        instruction=typical.instruction,
        conversation_1=conversation,
        conversation_2=conversation,
        turn=turn,
    )


ANSWER = Step(
    name="answer",
    prompts=("answer",),
    output_tokens=ANSWER_TOKENS,
    roles=("strong", "target"),
    calls=lambda scale: scale.per_iteration(1),
    typical=_answer_prompt,
    turns="each",
    later_turn=_answer_later,
)
#: The ablations' and baselines' answer: the strong model's alone, as ``answer`` asks it.
ANSWER_STRONG = replace(ANSWER, name="answer_strong", roles=("strong",))
JUDGE = Step(
    name="judge",
    prompts=("judge", "judge_turn"),
    output_tokens=12,
    reply="PairwiseScores",
    parse=parse_score_line,
    grammar=SCORE_GRAMMAR,
    calls=lambda scale: scale.per_iteration(2),  # both orders
    typical=_judge_prompt,
    turns="each",
    later_turn=_judge_later,
    shows=("scores",),
)
IMPROVE = Step(
    name="improve",
    prompts=("improve", "improve_turn"),
    output_tokens=60,
    reply="ImprovedInstruction",
    calls=Scale.rewrites,
    typical=lambda t: t.render(
        "improve", instruction=t.instruction, action="an action", **t.labels
    ),
    entered_as="improving",
    shows=("action",),
)


def _dropped(role: str, reply: Reply, turn: int = 1) -> dict[str, Any]:
    """An instruction whose answer is no answer: recorded as dropped, never judged or kept."""
    where = f" (turn {turn})" if turn > 1 else ""
    reason = f"{role}{where} {reply.problem}"
    return {"status": "dropped", "response_source": None, "reason": reason}


def _reasoning(replies: list[Reply]) -> str | None:
    """Each turn's reasoning (``keep_reasoning``), headed by its turn when there are several."""
    if len(replies) == 1:
        return replies[0].reasoning
    parts = [f"[turn {i}]\n{r.reasoning}" for i, r in enumerate(replies, 1) if r.reasoning]
    return "\n\n".join(parts) or None


@ANSWER.node
async def answer(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 6a: the strong answer f_s(I) and the target answer f_t(I), sent at once; with
    several turns, each model's whole conversation (each turn after its own answers).

    One node rather than two parallel ones: no join barrier to checkpoint, one writer to
    edit as when stepping. If one call fails, the retry re-runs the node, and the call that
    had completed is answered from the response cache.

    Only a real strong answer goes on to the judge (``nodes.pairs``): one still refused,
    cut or empty drops the instruction with the reason, as does an empty target answer. A
    target that keeps refusing, or whose answer runs past its budget, shows a real
    weakness: judged as it stands, and flagged (never kept as data).
    """
    ctx = pipeline_context(runtime)
    strong, target, usage = await answer_conversations(
        ctx.strong, ctx.target, ctx.prompts, state.user_turns, ctx.config.seed
    )
    update: dict[str, Any] = {
        "strong_answer": strong[0].content,
        "target_answer": target[0].said,
        "strong_follow_up_answers": [reply.content for reply in strong[1:]],
        "target_follow_up_answers": [reply.said for reply in target[1:]],
        "target_refused": any(reply.refused for reply in target),
        "target_cut": any(reply.cut and not reply.refused for reply in target),
        **spent_per_turn("answer", **usage),
    }
    if ctx.config.keep_reasoning:
        update |= {"strong_reasoning": _reasoning(strong), "target_reasoning": _reasoning(target)}
    if strong[-1].problem:
        return update | _dropped("strong", strong[-1], len(strong))
    if target[-1].problem and not (target[-1].refused or target[-1].cut):
        return update | _dropped("target", target[-1], len(target))
    return update


def route_after_answer(state: InstructionState) -> str:
    """Trivial on purpose: ``answer`` decided whether there is a pair to judge."""
    return END if state.status == "dropped" else "judge"


@ANSWER_STRONG.node
async def answer_strong(
    state: InstructionState, runtime: Runtime[PipelineContext]
) -> dict[str, Any]:
    """The strong model's answer, kept without a judge: the ablations and the baselines.

    The paper's baselines (Self-Instruct, Evol-Instruct) and its ablations without
    Contrastive Filtering pair every instruction with the strong model's response; one that
    is no answer (refused, cut, empty) is dropped, as in the full method.
    """
    ctx = pipeline_context(runtime)
    replies, usage = await answer_conversation(
        ctx.strong, ctx.prompts, state.user_turns, ctx.config.seed
    )
    update: dict[str, Any] = {
        "strong_answer": replies[0].content,
        "strong_follow_up_answers": [reply.content for reply in replies[1:]],
        **spent_per_turn("answer_strong", strong=usage),
    }
    if ctx.config.keep_reasoning:
        update["strong_reasoning"] = _reasoning(replies)
    if replies[-1].problem:
        return update | _dropped("strong", replies[-1], len(replies))
    return update | {"status": "kept", "response_source": "strong", "reason": None}


def gap_decision(
    state: InstructionState, scores: JudgeScores, threshold: float, max_iterations: int
) -> dict[str, Any]:
    """Step 6c, the signed gap rule. G > θ keeps the strong answer, G < −θ the target's
    (never a target's refusal nor a cut answer: that pair is undecided, as if |G| ≤ θ)."""
    if scores.gap > threshold:
        return {"status": "kept", "response_source": "strong", "reason": None}
    unusable = state.target_refused or state.target_cut
    if scores.gap < -threshold and not unusable:
        return {"status": "kept", "response_source": "target", "reason": None}
    if state.iteration >= max_iterations:
        return {
            "status": "dropped",
            "response_source": None,
            "reason": _undecided(state, scores, threshold),
        }
    if not state.candidate_actions:
        reason = "no improvement actions for this metadata (Self-Rubrics failed)"
        return {"status": "dropped", "response_source": None, "reason": reason}
    return {"status": "improving", "response_source": None, "reason": None}


def _undecided(state: InstructionState, scores: JudgeScores, threshold: float) -> str:
    """Why a pair still undecided at the last iteration is dropped: the target refused, its
    answer won but was cut (never data), or the judge did not tell the answers apart."""
    after = f"after {state.iteration} iteration(s)"
    if state.target_refused:
        return f"target refused at the last iteration (gap {scores.gap:g}) {after}"
    if state.target_cut and scores.gap < -threshold:
        return (
            f"target won (gap {scores.gap:g}) with an answer cut at its budget, never data, {after}"
        )
    return f"|gap| {abs(scores.gap):g} <= threshold {threshold:g} {after}"


@JUDGE.node
async def judge(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 6b: the strong model scores both answers, twice with the order swapped.

    Both orders go out at once; judging runs at temperature 0 so a replay scores the same.
    A conversation is scored turn by turn (every turn's judges at once), and its scores
    are the turns' mean: each assistant turn is trained on, so each counts alike.
    """
    ctx = pipeline_context(runtime)
    users = state.user_turns
    strong, target = state.answers("strong"), state.answers("target")
    per_turn, usage = await judge_turns(ctx.strong, ctx.prompts, users, strong, target, JUDGE)
    scores = per_turn[0] if len(per_turn) == 1 else mean_scores(per_turn)
    decision = gap_decision(state, scores, ctx.config.threshold, ctx.config.max_iterations)
    turns = {"turn_scores": per_turn} if len(per_turn) > 1 else {}
    return {"scores": scores, **turns, **decision, **spent_per_turn("judge", strong=usage)}


NO_REWRITE = " (no usable rewrite: "
"""How ``actions_applied`` records an action whose rewrite could not be used."""


def choose_action(state: InstructionState, seed: int) -> str:
    """Step 5's random action: seeded per instruction and iteration, so a re-run picks the same.

    Without replacement across iterations (the paper is silent): an action already tried
    on this instruction is only drawn again once every action has been.
    """
    tried = {applied.split(NO_REWRITE)[0] for applied in state.actions_applied}
    unused = [a for a in state.candidate_actions if a not in tried]
    rng = random.Random(f"{seed}:{state.id}:{state.iteration}")
    return rng.choice(unused or state.candidate_actions)


#: The longest instruction kept when nothing is known of the models' context (characters).
INSTRUCTION_CHARS = 12_000


def instruction_room(ctx: PipelineContext) -> int:
    """The longest instruction both models can still answer in full: each model's context
    less its answer budget, at about 3 characters a token."""
    room = INSTRUCTION_CHARS
    for model in (ctx.strong, ctx.target):
        if model.context_tokens:
            room = min(room, 3 * (model.context_tokens - model.max_tokens - 64))
    return max(room, 200)


@IMPROVE.node
async def improve(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 5: rewrite the instruction with one action, harder; the next iteration begins.

    A rewrite that cannot be used (cut at the ceiling of ``max_tokens``, or longer than the
    models' context leaves room for) is recorded with the action, and the instruction goes
    on from its last good version: the next iteration draws another action. In a
    conversation it rewrites the turn the judge told apart least (``nodes.turns``), and the
    turns after it are written anew (``write_turns`` comes next).
    """
    ctx = pipeline_context(runtime)
    action = choose_action(state, ctx.config.seed)
    turn = turn_to_improve(state)
    prompt = improve_prompt(ctx, state, turn, action)
    room = instruction_room(ctx)
    rewrite, why = state.user_turns[turn - 1], None
    try:
        with in_turn(turn):
            reply, usage = await ctx.strong.structured(prompt, ImprovedInstruction)
        if declines_task(reply.instruction):  # declined, in the JSON a grammar asked for
            why = "refused"
        elif len(reply.instruction) > room:
            why = f"{len(reply.instruction):,} characters, over the {room:,} the context allows"
        else:
            rewrite = reply.instruction
    except CutReply as exc:
        usage, why = exc.usage or TokenUsage(), str(exc)
    applied = action if why is None else f"{action}{NO_REWRITE}{why})"
    several = ctx.config.turns > 1
    return {
        **rewritten(state, turn, rewrite),
        "iteration": state.iteration + 1,
        "actions_applied": [*state.actions_applied, applied],
        "improved_turns": [*state.improved_turns, turn] if several else [],
        "strong_answer": None,
        "target_answer": None,
        "strong_follow_up_answers": [],
        "target_follow_up_answers": [],
        "target_refused": False,
        "target_cut": False,
        "scores": None,  # they judged the answers just cleared: a judge of these sets new ones
        "turn_scores": [],
        "status": "pending",
        **spent(turn_node("improve", turn), strong=usage),
    }


def route_after_judge(state: InstructionState) -> str:
    """Trivial on purpose: the decision was made and stored by ``judge``."""
    return "improve" if state.status == "improving" else END


def route_start_rubrics_only(state: InstructionState, answers: str = "answer_strong") -> str:
    """codeclm-rubrics: improve once with a Self-Rubrics action, if the entry has any."""
    return "improve" if state.candidate_actions else answers


def record_failure(state: InstructionState, error: NodeError) -> Command[Any]:
    """Error handler: after its retries, a failing step ends this instruction as 'failed'."""
    reason = f"{error.node}: {describe_error(error.error)}"
    return Command(
        update={"status": "failed", "reason": reason, "failed_node": error.node}, goto=END
    )
