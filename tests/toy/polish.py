"""The toy step: the strong model polishes the strong answer it wrote (after
``answer_strong``). Its node and its declaration, and nothing else of codeclm changed."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel

from codeclm.context import PipelineContext, pipeline_context
from codeclm.state import InstructionState, spent
from codeclm.steps import ANSWER_TOKENS, Step


class PolishedAnswer(BaseModel):
    answer: str


POLISH = Step(
    name="polish",
    prompts=("polish",),
    output_tokens=ANSWER_TOKENS,
    reply="PolishedAnswer",
    entered_as="kept",  # the pair was answered
    typical=lambda t: t.render("polish", instruction=t.instruction, answer=t.answer),
)


@POLISH.node
async def polish(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """The strong answer, polished; an instruction with no answer is left as it is."""
    if state.status != "kept":
        return {}
    ctx = pipeline_context(runtime)
    prompt = ctx.prompts.render("polish", instruction=state.instruction, answer=state.strong_answer)
    reply, usage = await ctx.strong.structured(prompt, PolishedAnswer)
    return {"strong_answer": reply.answer, **spent("polish", strong=usage)}
