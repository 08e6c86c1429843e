"""Steps shared by a run's instruction threads and ``codeclm eval``: answer a pair, judge it.

Only a real, complete answer is ever judged or kept. An answer is asked for with the role's
``max_tokens``; a reply cut there is asked again with twice the budget up to the role's
ceiling (``RoleModel.text``); a refusal (or an empty reply) is asked again with another
sampling seed, up to ``ANSWER_ASKS`` times. Whatever is still not an answer says why in its
``problem``; the caller decides (a run drops the instruction, or flags a refusing target).

The judges follow the paper: the Vicuna-style pairwise comparison, a single line with the
two scores (the filter's prompt ``judge.md`` asks for nothing else; the evaluation's
``judge_eval.md`` asks for an explanation after it), sent in both orders and averaged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from codeclm.llm.client import RoleModel
from codeclm.llm.parsing import parse_score_line
from codeclm.llm.reply import Reply, sampling_seed
from codeclm.prompts import Prompts
from codeclm.state import JudgeScores, TokenUsage

ANSWER_ASKS = 3
"""Asks for an answer while the model refuses (each with its own sampling seed)."""


async def ask_answer(model: RoleModel, prompt: str, seed: int) -> tuple[Reply, TokenUsage]:
    """The role's answer to ``prompt``: asked again while it refuses or is empty."""
    usage = TokenUsage()
    for ask in range(ANSWER_ASKS):
        overrides: dict[str, Any] = (
            {"seed": sampling_seed(seed, model.role, "answer", ask)} if ask else {}
        )
        reply, used = await model.text(prompt, complete=True, **overrides)
        usage = usage + used
        if not (reply.refused or not reply.content.strip()):
            break
    return reply, usage


async def answer_pair(
    strong_model: RoleModel,
    target_model: RoleModel,
    prompts: Prompts,
    instruction: str,
    seed: int,
) -> tuple[Reply, Reply, dict[str, TokenUsage]]:
    """The strong and the target answer to ``instruction``, both asked at once."""
    prompt = prompts.render("answer", instruction=instruction)
    (strong, strong_usage), (target, target_usage) = await asyncio.gather(
        ask_answer(strong_model, prompt, seed), ask_answer(target_model, prompt, seed)
    )
    return strong, target, {"strong": strong_usage, "target": target_usage}


def _scores(reply: Reply) -> tuple[float, float]:
    return parse_score_line(reply.content)


async def judge_pair(
    judge: RoleModel,
    prompts: Prompts,
    instruction: str,
    strong_answer: str,
    target_answer: str,
    *,
    prompt: str = "judge",
) -> tuple[JudgeScores, TokenUsage]:
    """Both answers scored twice, once in each order, at temperature 0 (both calls at once).

    The order swap cancels a judge's preference for the first (or second) position. A reply
    cut at ``max_tokens`` (a judge that thinks first) is asked again with a larger budget;
    one without a line of two scores is not kept (nor cached): the step's retry asks again.
    """
    strong_first_prompt = prompts.render(
        prompt, instruction=instruction, answer_1=strong_answer, answer_2=target_answer
    )
    target_first_prompt = prompts.render(
        prompt, instruction=instruction, answer_1=target_answer, answer_2=strong_answer
    )
    held: dict[str, Any] = {"grammar": judge.score_grammar} if judge.score_grammar else {}

    async def ask(text: str) -> tuple[Reply, TokenUsage]:
        return await judge.text(text, complete=True, check=_scores, temperature=0, **held)

    (forward, usage_1), (swapped, usage_2) = await asyncio.gather(
        ask(strong_first_prompt), ask(target_first_prompt)
    )
    one, two = _scores(forward)
    swapped_one, swapped_two = _scores(swapped)
    strong_score = (one + swapped_two) / 2
    target_score = (two + swapped_one) / 2
    scores = JudgeScores(
        strong=strong_score,
        target=target_score,
        gap=strong_score - target_score,
        strong_first=(_plain(one), _plain(two)),
        target_first=(_plain(swapped_two), _plain(swapped_one)),
    )
    return scores, usage_1 + usage_2


def _plain(score: float) -> int | float:
    """A whole score as an int (rows read "9", not "9.0"), a half as it is."""
    return int(score) if score.is_integer() else score
