"""Conversations (``--turns T``): the user's later turns, and which turn an action rewrites.

The user's turns 2 to T are written once, before any answer, from the metadata entry (use
case and skills), what the user said before and a follow-up plan, by the strong model as a
user would write them. They are written without the answers, as MT-Bench's second turns
are: both models then meet the same user, each in its own conversation with its own
earlier answers (``nodes.pairs.answer_conversation``).
"""

from __future__ import annotations

import random
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime

from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.parsing import Refusal, declines_task
from codeclm.llm.reply import sampling_seed
from codeclm.nodes.pairs import ANSWER_ASKS
from codeclm.nodes.replies import FollowUp
from codeclm.state import InstructionState, TokenUsage, in_turn, turn_node
from codeclm.steps import Step, Typical

#: What a user of a use case asks next: one plan per later turn, drawn without repeats
#: (seeded per instruction). The turns are written before any answer, so each plan must
#: make sense whatever was answered: none presumes an error, a claim or a choice the
#: answer may not have made (a kept conversation would teach a model to "fix" mistakes it
#: never made, or to defend choices it did not take).
FOLLOW_UP_PLANS = (
    "change one constraint of the task (a limit, the audience, a tool, the length), and "
    "ask for the result under the new one",
    "bring a new case, input or example the result must also handle",
    "ask to extend the result, to shorten it, or to present it in another format",
    "pose an edge case as a question: what should happen when an unusual input or condition holds",
)


def _follow_up_prompt(typical: Typical, turn: int) -> str:
    return typical.render(
        "follow_up",
        user_turns=typical.instruction * (turn - 1),
        turn=turn,
        plan="a plan",
        **typical.labels,
    )


WRITE_TURNS = Step(
    name="write_turns",
    prompts=("follow_up",),
    output_tokens=60,
    reply="FollowUp",
    # Each later turn, once per instruction and again after each rewrite (written anew).
    calls=lambda scale: (
        scale.instructions + scale.rewrites()[0],
        scale.instructions + scale.rewrites()[1],
    ),
    turns="later",
    later_turn=_follow_up_prompt,
)


def follow_up_plans(seed: int, instruction_id: str, later_turns: int) -> list[str]:
    """The plans of turns 2 to T: distinct while there are enough, seeded per instruction."""
    rng = random.Random(f"{seed}:{instruction_id}:follow-ups")
    plans = list(FOLLOW_UP_PLANS)
    rng.shuffle(plans)
    return [plans[i % len(plans)] for i in range(later_turns)]


def numbered(turns: list[str]) -> str:
    """The user's turns as a prompt lists them."""
    return "\n\n".join(f"Turn {i}: {text}" for i, text in enumerate(turns, 1))


@WRITE_TURNS.node
async def write_turns(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """The user's turns the conversation lacks, up to T, each written after the ones
    before it (the turns it has stay: after ``improve``, those up to the rewritten one)."""
    ctx = pipeline_context(runtime)
    follow_ups = list(state.follow_ups)
    plans = follow_up_plans(ctx.config.seed, state.id, ctx.config.turns - 1)
    usage: dict[str, TokenUsage] = {}
    for turn in range(len(follow_ups) + 2, ctx.config.turns + 1):
        prompt = ctx.prompts.render(
            "follow_up",
            use_case=state.use_case or "any",  # (the baselines have no metadata)
            skills=", ".join(state.skills) or "any",
            user_turns=numbered([state.instruction, *follow_ups]),
            turn=turn,
            plan=plans[turn - 2],
        )
        with in_turn(turn):
            message, used = await _ask_turn(ctx, prompt, state.id, turn)
        usage[f"{turn_node('write_turns', turn)}/strong"] = used
        if message is None:  # refused every time: dropped for good, as a refused answer is
            reason = f"strong (turn {turn}) refused to write the user's turn"
            return {"status": "dropped", "response_source": None, "reason": reason, **_spent(usage)}
        follow_ups.append(message)
    return {"follow_ups": follow_ups, **_spent(usage)}


async def _ask_turn(
    ctx: PipelineContext, prompt: str, instruction_id: str, turn: int
) -> tuple[str | None, TokenUsage]:
    """The user's turn the strong model writes, asked again with other sampling seeds
    while it refuses (as an answer is); None: it refused every time."""
    used = TokenUsage()
    for ask in range(ANSWER_ASKS):
        seed = {"seed": sampling_seed(ctx.config.seed, instruction_id, turn, ask)} if ask else {}
        try:
            reply, spent = await ctx.strong.structured(prompt, FollowUp, **seed)
        except Refusal as exc:
            used = used + (exc.usage or TokenUsage())
            continue
        used = used + spent
        if not declines_task(reply.message):  # (a decline inside the JSON a grammar asked for)
            return reply.message, used
    return None, used


def _spent(by_node: dict[str, TokenUsage]) -> dict[str, Any]:
    """The usage fields' update, per turn in ``usage_by_node``."""
    return {"usage": {"strong": sum(by_node.values(), TokenUsage())}, "usage_by_node": by_node}


def route_after_write_turns(state: InstructionState, answers: str) -> str:
    """Trivial on purpose: ``write_turns`` decided whether there is a conversation."""
    return END if state.status == "dropped" else answers


def turn_to_improve(state: InstructionState) -> int:
    """The turn an action rewrites: the one whose answers the judge told apart least
    (the smallest gap: there the conversation fails to separate the models); the latest
    such. Turn 1 for a single turn."""
    if not state.turn_scores:
        return 1
    gaps = [abs(scores.gap) for scores in state.turn_scores]
    closest = min(gaps)
    return max(turn for turn, gap in enumerate(gaps, 1) if gap == closest)


def improve_prompt(ctx: PipelineContext, state: InstructionState, turn: int, action: str) -> str:
    """The improve step's prompt for ``turn``: the instruction's own (``improve.md``) for
    the first, ``improve_turn.md`` with what the user said before for a later one."""
    if turn == 1:
        return ctx.prompts.render(
            "improve",
            instruction=state.instruction,
            action=action,
            use_case=state.use_case,
            skills=", ".join(state.skills),
        )
    users = state.user_turns
    return ctx.prompts.render(
        "improve_turn",
        instruction=users[turn - 1],
        action=action,
        use_case=state.use_case,
        skills=", ".join(state.skills),
        earlier=numbered(users[: turn - 1]),
        turn=turn,
    )


def rewritten(state: InstructionState, turn: int, text: str) -> dict[str, Any]:
    """The state's update that puts ``text`` in place of ``turn``; the turns after it are
    let go (``write_turns`` writes them anew, following the new one)."""
    if turn == 1:
        return {"instruction": text, "follow_ups": []}
    return {"follow_ups": [*state.follow_ups[: turn - 2], text]}
