"""Steps shared by a run's instruction threads and ``codeclm eval``: answer a pair, judge it.

Only a real, complete answer is ever kept. In the filter, the strong answer (the data) is
asked for with the role's ``max_tokens``, a reply cut there is asked again with twice the
budget up to the role's ceiling (``RoleModel.text``), and a refusal (or an empty reply) with
another sampling seed, up to ``ANSWER_ASKS`` times. The target answers within its own
``max_tokens``, as the paper's target does at 2,048: an answer cut there is judged as it
stands (rambling past the budget is the weakness the method looks for), and flagged, never
kept. An evaluation takes each model's first answer (``FIRST_ANSWER``): a refusal or a cut
answer is what the model said. Whatever is not an answer says why in its ``problem``; the
caller decides (a run drops the instruction, or flags the target).

The judges follow the paper: the Vicuna-style pairwise comparison, a single line with the
two scores (the filter's prompt ``judge.md`` asks for nothing else; the evaluation's
``judge_eval.md`` asks for an explanation after it), sent in both orders and averaged.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from codeclm.llm.client import RoleModel
from codeclm.llm.parsing import Refusal, UnparseableReply, is_refusal, without_reasoning
from codeclm.llm.reply import Reply, sampling_seed
from codeclm.llm.request import History
from codeclm.prompts import Prompts, conversation_text
from codeclm.state import JudgeScores, TokenUsage, in_turn
from codeclm.steps import Step

ANSWER_ASKS = 3
"""Asks for an answer while the model refuses (each with its own sampling seed)."""


@dataclass(frozen=True)
class AnswerPolicy:
    """How a role's answer is asked for: ``asks`` while it refuses or is empty, and
    whether a reply cut at ``max_tokens`` is asked again with a larger budget (``grow``)."""

    asks: int = ANSWER_ASKS
    grow: bool = True


#: The filter's strong answer is the data: asked until it is a real, complete answer.
STRONG_ANSWER = AnswerPolicy()
#: The filter's target answers within its budget, as the paper's (its refusals asked again).
TARGET_ANSWER = AnswerPolicy(grow=False)
#: An evaluation measures what each model says first, refusals and cut answers included.
FIRST_ANSWER = AnswerPolicy(asks=1, grow=False)


async def ask_answer(
    model: RoleModel,
    prompt: str,
    seed: int,
    history: History = (),
    policy: AnswerPolicy = STRONG_ANSWER,
) -> tuple[Reply, TokenUsage]:
    """The role's answer to ``prompt`` (after ``history``, the conversation before it):
    asked again while it refuses or is empty, as ``policy`` says."""
    usage = TokenUsage()
    for ask in range(policy.asks):
        overrides: dict[str, Any] = (
            {"seed": sampling_seed(seed, model.role, "answer", ask)} if ask else {}
        )
        reply, used = await model.text(prompt, complete=policy.grow, history=history, **overrides)
        usage = usage + used
        if not (reply.refused or not reply.content.strip()):
            break
        if reply.cut and not policy.grow:  # empty at its budget: the same budget, the same
            break
    return reply, usage


async def answer_conversation(
    model: RoleModel,
    prompts: Prompts,
    user_turns: list[str],
    seed: int,
    go_on: bool = False,
    policy: AnswerPolicy = STRONG_ANSWER,
) -> tuple[list[Reply], list[TokenUsage]]:
    """The role's answer to each user turn in order, each asked after the conversation so
    far with the role's own earlier answers in it (as MT-Bench asks its second turn). It
    stops at the first reply that is no answer (the last one returned says why); a target's
    refusal or cut answer is its answer, and the conversation goes on (``go_on``: whatever
    the replies, as an evaluation measures them). Its usage turn by turn."""
    history: History = ()
    replies: list[Reply] = []
    usage: list[TokenUsage] = []
    for turn, text in enumerate(user_turns, 1):
        prompt = prompts.render("answer", instruction=text)
        with in_turn(turn):
            reply, used = await ask_answer(model, prompt, seed, history, policy)
        usage.append(used)
        replies.append(reply)
        said = model.role == "target" and (reply.refused or reply.cut)
        if reply.problem and not (go_on or said):
            break
        history = (*history, ("user", prompt), ("assistant", reply.said))
    return replies, usage


async def answer_conversations(
    strong_model: RoleModel,
    target_model: RoleModel,
    prompts: Prompts,
    user_turns: list[str],
    seed: int,
    evaluation: bool = False,
) -> tuple[list[Reply], list[Reply], dict[str, list[TokenUsage]]]:
    """Both models' conversations over the same user turns, the two asked at once (and
    each one's usage turn by turn). ``evaluation``: each model's first answers, whatever
    they are (``FIRST_ANSWER``); else the filter's (``STRONG_ANSWER``, ``TARGET_ANSWER``)."""
    strong_policy = FIRST_ANSWER if evaluation else STRONG_ANSWER
    target_policy = FIRST_ANSWER if evaluation else TARGET_ANSWER
    (strong, strong_usage), (target, target_usage) = await asyncio.gather(
        answer_conversation(strong_model, prompts, user_turns, seed, evaluation, strong_policy),
        answer_conversation(target_model, prompts, user_turns, seed, evaluation, target_policy),
    )
    return strong, target, {"strong": strong_usage, "target": target_usage}


#: The judges' reply held to the paper's format, a line of two scores (llama.cpp's GBNF), for
#: a server that takes a grammar (``RoleModel.grammars``: the embedded one, whose toy model
#: answers "2+2 is 4" to a judge's prompt otherwise). Real models need no grammar.
SCORE_GRAMMAR = 'root ::= score " " score\nscore ::= "10" | [1-9]'

_SCORE_LABEL = re.compile(r"assistant[ _]?[12]|\bscores?\b", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"\s*/\s*10\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")


def parse_score_line(content: str) -> tuple[float, float]:
    """The judge's two scores from the first line of its reply (the Vicuna protocol: "8 3").

    Reasoning is set aside first; a line of prose before it ("Here are my scores:"),
    labels ("Assistant 1: 8") and "/10" are tolerated. The first line with numbers must
    hold exactly two from 1 to 10, or the reply is ``UnparseableReply``.
    """
    text = without_reasoning(content).strip().strip("`").strip()
    for line in text.splitlines():
        cleaned = _OUT_OF_TEN.sub("", _SCORE_LABEL.sub(" ", line)).replace(",", " ")
        numbers = [float(n) for n in _NUMBER.findall(cleaned)]
        if len(numbers) == 2 and all(1 <= n <= 10 for n in numbers):
            return numbers[0], numbers[1]
        if numbers:  # the first line with numbers is the score line, right or wrong
            break
    if is_refusal(text):
        raise Refusal(f"refused: {' '.join(text.split())[:200]}")
    raise UnparseableReply(f"the judge gave no line of two scores from 1 to 10 ({text[:80]!r})")


async def judge_pair(
    judge: RoleModel,
    prompts: Prompts,
    instruction: str,
    strong_answer: str,
    target_answer: str,
    step: Step,
) -> tuple[JudgeScores, TokenUsage]:
    """Both answers scored twice, once in each order, at temperature 0 (both calls at once).

    The order swap cancels a judge's preference for the first (or second) position. A reply
    cut at ``max_tokens`` (a judge that thinks first) is asked again with a larger budget;
    one without a line of two scores is not kept (nor cached): the step's retry asks again.
    ``step``: the judge's declaration (its prompts, how its reply reads, its grammar).
    """
    prompt = step.prompts[0]
    strong_first_prompt = prompts.render(
        prompt, instruction=instruction, answer_1=strong_answer, answer_2=target_answer
    )
    target_first_prompt = prompts.render(
        prompt, instruction=instruction, answer_1=target_answer, answer_2=strong_answer
    )
    return await _both_orders(judge, strong_first_prompt, target_first_prompt, step)


async def judge_turns(
    judge: RoleModel,
    prompts: Prompts,
    user_turns: list[str],
    strong_answers: list[str],
    target_answers: list[str],
    step: Step,
) -> tuple[list[JudgeScores], list[TokenUsage]]:
    """Every turn both models answered, scored in both orders (every call at once); each
    turn's scores and usage. ``step``: the filter's judge, or the evaluation's."""
    turns = min(len(user_turns), len(strong_answers), len(target_answers))
    conversations = (judge, prompts, user_turns, strong_answers, target_answers)
    judged = await asyncio.gather(
        *(judge_turn(*conversations, turn, step) for turn in range(1, turns + 1))
    )
    return [scores for scores, _ in judged], [usage for _, usage in judged]


async def judge_turn(
    judge: RoleModel,
    prompts: Prompts,
    user_turns: list[str],
    strong_answers: list[str],
    target_answers: list[str],
    turn: int,
    step: Step,
) -> tuple[JudgeScores, TokenUsage]:
    """Turn ``turn``'s answers scored in both orders, each conversation shown up to it.

    Turn 1 has nothing before it: the single-turn judge (``judge.md``, the paper's) scores
    it. A later turn's judge (``judge_turn.md``) sees both conversations to that turn: the
    step's first and second prompts.
    """
    later = step.prompts[1]
    if turn == 1:
        args = (user_turns[0], strong_answers[0], target_answers[0])
        return await judge_pair(judge, prompts, *args, step)
    users = user_turns[:turn]
    strong, target = strong_answers[:turn], target_answers[:turn]

    def render(first: list[str], second: list[str]) -> str:
        return prompts.render(
            later,
            instruction=users[-1],
            conversation_1=conversation_text(users, first, "Assistant 1"),
            conversation_2=conversation_text(users, second, "Assistant 2"),
            turn=turn,
        )

    with in_turn(turn):  # (the ledger files these calls under the turn)
        return await _both_orders(judge, render(strong, target), render(target, strong), step)


def mean_scores(per_turn: list[JudgeScores]) -> JudgeScores:
    """A conversation's scores: each turn's, averaged (every turn is trained on alike)."""
    n = len(per_turn)

    def mean(values: list[float]) -> float:
        return round(sum(values) / n, 3)

    return JudgeScores(
        strong=mean([s.strong for s in per_turn]),
        target=mean([s.target for s in per_turn]),
        gap=mean([s.gap for s in per_turn]),
        strong_first=(
            _plain(mean([float(s.strong_first[0]) for s in per_turn])),
            _plain(mean([float(s.strong_first[1]) for s in per_turn])),
        ),
        target_first=(
            _plain(mean([float(s.target_first[0]) for s in per_turn])),
            _plain(mean([float(s.target_first[1]) for s in per_turn])),
        ),
    )


async def _both_orders(
    judge: RoleModel, strong_first_prompt: str, target_first_prompt: str, step: Step
) -> tuple[JudgeScores, TokenUsage]:
    """Scores from one prompt per order (the strong answer first, then second), averaged:
    each reply read as the judge's step declares, held to its grammar where the server
    takes one."""
    read = step.parse
    assert read is not None, f"the judge step {step.name} declares how its reply reads"
    grammar = step.grammar if judge.grammars else None
    held: dict[str, Any] = {"grammar": grammar} if grammar else {}

    def _scores(reply: Reply) -> tuple[float, float]:
        one, two = read(reply.content)
        return float(one), float(two)

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
