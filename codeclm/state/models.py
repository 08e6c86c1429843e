"""Graph state, as pydantic models in an importable module.

The checkpointer stores the *whole* state at every step, so each model here is kept small:
an instruction thread carries one instruction, its metadata's few actions and the latest
answers, never the pool or the dataset. Every model is listed in ``STATE_MODELS`` so the
saver's serializer can be told about all of them (an unlisted one comes back as a dict).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codeclm.methods import MethodProgress, method_spec

# The models of the pool and of usage live in their own modules; old checkpoints name them
# as classes of this module, which is why it imports them all (``state/serde.py``).
from codeclm.state.pool import (
    BasicInstruction,
    EncodedSeed,
    EntryEdit,
    Extra,
    Failure,
    LabelMap,
    MetadataEntry,
    PoolReview,
    RubricSet,
    Seed,
    Update,
)
from codeclm.state.usage import Role, TokenUsage, Usage

#: Bumped when a state model changes incompatibly; stored in every thread.
SCHEMA_VERSION = 2


class PrepareState(BaseModel):
    """The one 'prepare' thread: seeds → metadata pool → rubrics and basic instructions."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    schema_version: int = SCHEMA_VERSION
    method: str = "codeclm"
    budget: int = 0
    """Instructions to produce in total (the run's ``instructions``)."""
    passes: int = 1
    """How many times a run has taken this thread up (a re-run after failures, or growing)."""
    seeds: list[Seed] = Field(default_factory=list)
    user_metadata: list[MetadataEntry] = Field(default_factory=list)
    encoded: Annotated[list[EncodedSeed], operator.add] = Field(default_factory=list)
    pool: list[MetadataEntry] = Field(default_factory=list)
    rubric_sets: Annotated[list[RubricSet], operator.add] = Field(default_factory=list)
    decoded: Annotated[list[BasicInstruction], operator.add] = Field(default_factory=list)
    """Everything decoded, each entry's items distinct; repeats across entries included."""
    accepted: list[str] = Field(default_factory=list)
    """Ids of ``decoded`` without exact and near repeats across the pool, in rank order:
    the budget's count. Ids, not copies: the state is written whole at every step."""
    repeats: int = 0
    """Decoded instructions left out as repeats of earlier ones."""
    pending_rubrics: list[str] = Field(default_factory=list)
    pending_decode: list[str] = Field(default_factory=list)
    """Entry ids the current decode round asks (set by ``plan``)."""
    exhausted: list[str] = Field(default_factory=list)
    """Entries whose last ask gave no new unique instruction: their share goes elsewhere."""
    ran_dry: Annotated[list[str], operator.add] = Field(default_factory=list)
    """An entry id each time it was exhausted: a later ask of it samples anew."""
    came_up_short: Annotated[list[str], operator.add] = Field(default_factory=list)
    """Checkpoints of earlier versions: an entry id each time its Self-Rubrics came up
    short (a later ask sampled anew). Self-Rubrics now stall within the run instead."""
    shortfall: str | None = None
    """Set by ``finalize`` when the pass ends short of the budget with nothing to retry:
    how many instructions are missing and why (the pool ran dry)."""
    decode_round: int = 0
    rounds_this_pass: int = 0
    failures: Annotated[list[Failure], operator.add] = Field(default_factory=list)
    """This pass's failures, and permanent ones from earlier passes."""
    usage: Usage = Field(default_factory=dict)
    usage_by_node: Usage = Field(default_factory=dict)
    progress: dict[str, Any] = Field(default_factory=dict)
    """The method's own bookkeeping, as its registry entry types it (``method_progress``)."""
    bootstrap_rounds: int = 0
    rejected: int = 0
    """Checkpoints of earlier versions: self-instruct's bookkeeping, now in ``progress``."""
    updates: list[Update] = Field(default_factory=list)
    """``run --update`` calls, in order: each one's seeds follow all earlier ones."""
    label_map: LabelMap | None = None
    """How the encoded labels were merged into the pool's canonical ones (once per run)."""
    pool_review: PoolReview | None = None
    """The reviewer's approved decision on the pool, when the run asked for one."""
    done: bool = False
    """This pass has finished (whatever it could do); see ``engine.prepare.prepare_stream``."""

    @field_validator("accepted", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        """Checkpoints of codeclm 0.4 hold the accepted instructions themselves."""
        if isinstance(value, list):
            return [getattr(x, "id", x["id"] if isinstance(x, dict) else x) for x in value]
        return value

    def method_progress(self) -> MethodProgress:
        """The method's bookkeeping, typed by its entry in the registry (``methods.py``)."""
        kind = method_spec(self.method).progress
        if not self.progress and (self.bootstrap_rounds or self.rejected):  # an older run
            return kind.model_validate({"rounds": self.bootstrap_rounds, "rejected": self.rejected})
        return kind.model_validate(self.progress)

    def accepted_items(self) -> list[BasicInstruction]:
        """The accepted instructions, in rank order."""
        by_id = {item.id: item for item in self.decoded}
        return [by_id[ident] for ident in self.accepted]


class EncodeTask(BaseModel):
    """Input of one encode task: one seed, or several side by side in a run with more seeds
    than ``prepare.graph.MAX_ENCODE_TASKS``."""

    seed_index: int
    """The first seed's place in the run's seeds."""
    seed: Seed
    """The first seed."""
    more: list[tuple[int, Seed]] = Field(default_factory=list)
    """The task's other seeds, with their places."""

    @classmethod
    def of(cls, seeds: list[tuple[int, Seed]]) -> EncodeTask:
        (index, first), *more = seeds
        return cls(seed_index=index, seed=first, more=more)

    def seeds(self) -> list[tuple[int, Seed]]:
        """Every seed of the task, with its place."""
        return [(self.seed_index, self.seed), *self.more]


class MetadataTask(BaseModel):
    """Input of one per-metadata task (Self-Rubrics, or one decode round of an entry)."""

    entry: MetadataEntry
    want: int = 0
    """decode: new instructions this round should add."""
    have: list[str] = Field(default_factory=list)
    """decode: what the entry already decoded (asked not to repeat, and filtered out)."""
    round: int = 0
    salt: int = 0
    """How often this step came up short for this entry before (ran dry, too few rubrics):
    with the entry's progress, it picks the asks' sampling seeds, so a retry after a
    passing failure sends the very requests of the first try, and one after a short
    answer samples anew."""


class JudgeScores(BaseModel):
    """Averaged pairwise scores of one iteration, with both orders kept for audit."""

    strong: float
    target: float
    gap: float
    strong_first: tuple[int | float, int | float]
    """(strong, target) when the strong answer was shown first."""
    target_first: tuple[int | float, int | float]
    """(strong, target) when the target answer was shown first."""


Status = Literal[
    "pending", "improving", "kept", "dropped", "failed", "duplicate", "surplus", "contaminated"
]
"""'duplicate' and 'surplus' are never stored: ``run --dedup`` gives the first to a kept
pair in the outputs, ``run --pairs`` the second to the pairs kept beyond its N."""


class InstructionState(BaseModel):
    """One instruction's thread: answers, judge, gap rule, improvement loop."""

    schema_version: int = SCHEMA_VERSION
    id: str
    metadata_id: str
    use_case: str
    skills: list[str]
    seed_ids: list[str]
    candidate_actions: list[str]
    extra: Extra = Field(default_factory=dict)
    basic_instruction: str
    instruction: str
    """The conversation's first user turn (its only one with ``--turns 1``)."""
    follow_ups: list[str] = Field(default_factory=list)
    """The user's turns 2 to T (``--turns``), written by the strong model."""
    iteration: int = 1
    actions_applied: list[str] = Field(default_factory=list)
    improved_turns: list[int] = Field(default_factory=list)
    """The turn each action rewrote (1: the instruction), beside ``actions_applied``;
    empty for a single turn."""
    strong_answer: str | None = None
    target_answer: str | None = None
    """Each model's answer to the first turn; the later turns' in ``*_follow_up_answers``."""
    strong_follow_up_answers: list[str] = Field(default_factory=list)
    target_follow_up_answers: list[str] = Field(default_factory=list)
    target_refused: bool = False
    """The target declined to answer (asked again with other seeds): a real weakness of
    the target, so the pair is judged, but a refusal is never kept as the response."""
    rating: float | None = None
    """alpagasus: the strong model's rating of the pair's accuracy (0 to 5)."""
    target_cut: bool = False
    """The target's answer stopped at its ``max_tokens`` (the paper's budget, never asked
    again larger): judged as it stands, never kept as the response."""
    strong_reasoning: str | None = None
    target_reasoning: str | None = None
    """Each answer's reasoning, kept apart from it only with ``keep_reasoning``."""
    scores: JudgeScores | None = None
    """The pair's scores: with several turns, the mean of ``turn_scores``."""
    turn_scores: list[JudgeScores] = Field(default_factory=list)
    """Each turn's scores (several turns only)."""
    status: Status = "pending"
    response_source: Role | None = None
    reason: str | None = None
    failed_node: str | None = None
    """The node whose retries ran out (status 'failed'): a later run restarts there."""
    usage: Usage = Field(default_factory=dict)
    usage_by_node: Usage = Field(default_factory=dict)

    @property
    def user_turns(self) -> list[str]:
        """What the user says, turn by turn."""
        return [self.instruction, *self.follow_ups]

    def answers(self, role: Role) -> list[str]:
        """The role's answers, turn by turn (as far as it answered)."""
        if role == "strong":
            first, later = self.strong_answer, self.strong_follow_up_answers
        else:
            first, later = self.target_answer, self.target_follow_up_answers
        return [] if first is None else [first, *later]


Outcome = Literal["win", "tie", "loss"]


class EvalItemState(BaseModel):
    """One benchmark item's thread in ``codeclm eval``: a pair of answers and its verdict."""

    schema_version: int = SCHEMA_VERSION
    id: str
    instruction: str
    category: str = ""
    follow_ups: list[str] = Field(default_factory=list)
    """The benchmark's later user turns (MT-Bench's second), as far as ``--turns`` asks."""
    strong_answer: str | None = None
    target_answer: str | None = None
    strong_follow_up_answers: list[str] = Field(default_factory=list)
    target_follow_up_answers: list[str] = Field(default_factory=list)
    scores: JudgeScores | None = None
    outcome: Outcome | None = None
    """The target's result on the first turn: a win or a loss only when both orders agree."""
    turn_scores: list[JudgeScores] = Field(default_factory=list)
    turn_outcomes: list[Outcome] = Field(default_factory=list)
    """Each turn's scores and outcome (several turns only; the first is ``outcome``'s)."""
    refused: dict[str, int] = Field(default_factory=dict)
    cut: dict[str, int] = Field(default_factory=dict)
    """Per role, the turns whose first answer was a refusal, or cut at the budget (judged
    as they were)."""
    status: Literal["pending", "judged", "failed"] = "pending"
    reason: str | None = None
    failed_node: str | None = None
    usage: Usage = Field(default_factory=dict)
    usage_by_node: Usage = Field(default_factory=dict)


STATE_MODELS: tuple[type[BaseModel], ...] = (
    Seed,
    TokenUsage,
    MetadataEntry,
    EntryEdit,
    PoolReview,
    LabelMap,
    Update,
    EncodedSeed,
    RubricSet,
    BasicInstruction,
    Failure,
    PrepareState,
    EncodeTask,
    MetadataTask,
    JudgeScores,
    InstructionState,
    EvalItemState,
)
