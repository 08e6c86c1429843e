"""The rows a run and an evaluation write: ``dataset.jsonl`` (``DatasetRow``, a pair or a
conversation), ``dropped.jsonl`` and ``failed.jsonl`` (``DroppedRow``), a person's review
of a pair (``PairReview``) and eval's ``judgments.jsonl`` (``JudgmentRow``). Readers accept
rows of earlier versions: every field added later has a default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from codeclm.state import JudgeScores


class RowMetadata(BaseModel):
    """The metadata entry an instruction was decoded from (none for the baselines); the
    run's declared ``metadata_fields`` follow ``skills`` under their own names."""

    model_config = ConfigDict(extra="allow")

    use_case: str | None = None
    skills: list[str] = Field(default_factory=list)
    id: str | None = None


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str


def _empty(value: list[object]) -> bool:
    return not value


class DatasetRow(BaseModel):
    """A kept pair, with the chat ``messages`` fine-tuning tools read directly. A
    conversation (``--turns``) is one row: ``instruction`` and ``response`` are its first
    turn, ``messages`` has every turn, ``turn_scores`` each turn's scores."""

    id: str
    instruction: str
    response: str
    response_source: Literal["strong", "target"] | None = None
    metadata: RowMetadata = Field(default_factory=RowMetadata)
    iteration: int = 1
    scores: JudgeScores | None = None
    seed_ids: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    """The Self-Rubrics actions applied, in order, from the basic instruction to this one."""
    basic_instruction: str | None = None
    messages: list[Message] = Field(default_factory=list)
    target_refused: bool = False
    """The target model refused this instruction (a weakness of the target): the strong
    answer is the response. ``export --no-target-refusals`` leaves such pairs out."""
    target_cut: bool = False
    """The target's answer was cut at its budget (judged as it stood; the strong answer is
    the response: a cut answer is never data)."""
    rating: float | None = Field(None, exclude_if=lambda value: value is None)
    """alpagasus: the strong model's rating of the pair's accuracy (0 to 5)."""
    reasoning: str | None = Field(None, exclude_if=lambda value: value is None)
    """The response's reasoning, apart from it (only with ``--keep-reasoning``)."""
    turn_scores: list[JudgeScores] = Field(default_factory=list, exclude_if=_empty)
    """A conversation's scores, turn by turn (``scores``: their mean)."""
    improved_turns: list[int] = Field(default_factory=list, exclude_if=_empty)
    """The turn each of ``actions`` rewrote (a conversation's only)."""

    @property
    def turns(self) -> int:
        """The user turns of the pair (1: a single instruction)."""
        return max(1, sum(message.role == "user" for message in self.messages))


class DroppedRow(BaseModel):
    """An instruction not kept (dropped, duplicate or failed), with the reason why."""

    id: str
    status: str
    reason: str | None = None
    instruction: str | None = None
    metadata: RowMetadata = Field(default_factory=RowMetadata)
    iteration: int = 1
    scores: JudgeScores | None = None
    seed_ids: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    basic_instruction: str | None = None
    follow_ups: list[str] = Field(default_factory=list, exclude_if=_empty)
    """A conversation's later user turns."""
    turn_scores: list[JudgeScores] = Field(default_factory=list, exclude_if=_empty)
    improved_turns: list[int] = Field(default_factory=list, exclude_if=_empty)


Verdict = Literal["accepted", "rejected"]


class PairReview(BaseModel):
    """A person's review of one kept pair: accepted or rejected, with optional edits.

    ``export`` leaves rejected pairs out and applies the edits; the dataset files stay the
    run's own (a re-run rewrites them, never the reviews).
    """

    id: str
    verdict: Verdict
    instruction: str | None = None
    """The reviewer's instruction, when they edited it."""
    response: str | None = None
    """The reviewer's response, when they edited it."""
    note: str = ""
    reviewed_at: str = ""
    reviewer: str = ""
    """Who made the review: the name the reviewer gave (``--reviewer``, or the page's field)."""

    @property
    def edited(self) -> bool:
        return self.instruction is not None or self.response is not None

    def applied(self, row: DatasetRow) -> DatasetRow:
        """``row`` as the reviewer left it (edits in the text and in its messages: the
        first turn's, a conversation's later turns as they were)."""
        instruction = self.instruction if self.instruction is not None else row.instruction
        response = self.response if self.response is not None else row.response
        messages = [
            Message(role="user", content=instruction),
            Message(role="assistant", content=response),
            *row.messages[2:],
        ]
        return row.model_copy(
            update={"instruction": instruction, "response": response, "messages": messages}
        )


class JudgmentRow(BaseModel):
    """``codeclm eval``: one benchmark item, both answers, both orders' scores, the outcome."""

    id: str
    category: str
    instruction: str
    target_answer: str | None = None
    strong_answer: str | None = None
    outcome: str | None = None
    scores_strong_first: list[int] | None = None
    """(strong, target) when the strong answer was shown first."""
    scores_target_first: list[int] | None = None
    mean_scores: dict[str, float] | None = None
    follow_ups: list[str] = Field(default_factory=list, exclude_if=_empty)
    """The item's later user turns, as far as ``--turns`` judged them."""
    strong_follow_up_answers: list[str] = Field(default_factory=list, exclude_if=_empty)
    target_follow_up_answers: list[str] = Field(default_factory=list, exclude_if=_empty)
    turn_outcomes: list[str] = Field(default_factory=list, exclude_if=_empty)
    """Each turn's outcome (the first is ``outcome``)."""
    item_outcome: str | None = Field(None, exclude_if=lambda value: value is None)
    """A conversation's outcome, from its turns' mean scores in each order: what the
    tables of eval.json count (a single turn's is ``outcome``)."""
    turn_scores_strong_first: list[list[int | float]] = Field(
        default_factory=list, exclude_if=_empty
    )
    turn_scores_target_first: list[list[int | float]] = Field(
        default_factory=list, exclude_if=_empty
    )
