"""Steps shared by a run's instruction threads and ``codeclm eval``: answer a pair, judge it.

Both send the same prompts (``answer.md``, ``judge.md``), so a run's contrastive filter and
the evaluation's CRR see answers and scores made the same way.
"""

from __future__ import annotations

import asyncio

from codeclm.llm.client import RoleModel
from codeclm.nodes.replies import PairwiseScores
from codeclm.prompts import Prompts
from codeclm.state import JudgeScores, TokenUsage


async def answer_pair(
    strong_model: RoleModel, target_model: RoleModel, prompts: Prompts, instruction: str
) -> tuple[str, str, dict[str, TokenUsage]]:
    """The strong and the target answer to ``instruction``, both requests sent at once."""
    prompt = prompts.render("answer", instruction=instruction)
    (strong, strong_usage), (target, target_usage) = await asyncio.gather(
        strong_model.text(prompt), target_model.text(prompt)
    )
    return strong, target, {"strong": strong_usage, "target": target_usage}


async def judge_pair(
    judge: RoleModel, prompts: Prompts, instruction: str, strong_answer: str, target_answer: str
) -> tuple[JudgeScores, TokenUsage]:
    """Both answers scored twice, once in each order, at temperature 0 (both calls at once).

    The order swap cancels a judge's preference for the first (or second) position.
    """
    strong_first_prompt = prompts.render(
        "judge", instruction=instruction, answer_1=strong_answer, answer_2=target_answer
    )
    target_first_prompt = prompts.render(
        "judge", instruction=instruction, answer_1=target_answer, answer_2=strong_answer
    )
    (forward, usage_1), (swapped, usage_2) = await asyncio.gather(
        judge.structured(strong_first_prompt, PairwiseScores, temperature=0),
        judge.structured(target_first_prompt, PairwiseScores, temperature=0),
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
    return scores, usage_1 + usage_2
