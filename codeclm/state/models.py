"""Graph state, as pydantic models in an importable module.

The checkpointer stores the *whole* state at every step, so each model here is kept small:
an instruction thread carries one instruction, its metadata's few actions and the latest
answers, never the pool or the dataset. Every model is listed in ``STATE_MODELS`` so the
saver's serializer can be told about all of them (an unlisted one comes back as a dict).
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Bumped when a state model changes incompatibly; stored in every thread.
SCHEMA_VERSION = 2

Role = Literal["strong", "target"]


class Seed(BaseModel):
    """One seed instruction from the user's file."""

    id: str
    instruction: str
    input: str = ""

    @property
    def text(self) -> str:
        """The seed as the encoder sees it: instruction, then its input if any."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


class TokenUsage(BaseModel):
    """Calls and tokens spent by one role."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    """Every token generated, reasoning included (providers bill reasoning as output)."""
    reasoning_tokens: int = 0
    """Of ``output_tokens``, those the server says went to reasoning."""
    cached_calls: int = 0
    """Requests answered from the response cache: nothing sent, no tokens spent."""

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_calls=self.cached_calls + other.cached_calls,
        )


def add_usage(left: dict[str, TokenUsage], right: dict[str, TokenUsage]) -> dict[str, TokenUsage]:
    """Reducer: sum usage per role, so parallel nodes can each report their own."""
    merged = dict(left)
    for role, usage in right.items():
        merged[role] = merged.get(role, TokenUsage()) + usage
    return merged


Usage = Annotated[dict[str, TokenUsage], add_usage]


def spent(node: str, **by_role: TokenUsage) -> dict[str, dict[str, TokenUsage]]:
    """A node's update of both usage fields: per role, and per ``node/role`` (for report)."""
    return {
        "usage": dict(by_role),
        "usage_by_node": {f"{node}/{role}": usage for role, usage in by_role.items()},
    }


Extra = dict[str, str | list[str]]
"""Declared metadata fields beyond use case and skills (``metadata_fields``), by name."""


class MetadataEntry(BaseModel):
    """A use case and its skills: the unit the decoder and Self-Rubrics work on."""

    id: str
    use_case: str
    skills: list[str]
    extra: Extra = Field(default_factory=dict)
    origin: Literal["encoded", "augmented", "user", "review"]
    """'review': added by a person reviewing the pool (``run --review metadata``)."""
    seed_ids: list[str] = Field(default_factory=list)
    rubrics: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    n_instructions: int = 0
    note: str | None = None
    """Why the entry came up short, if it did: Self-Rubrics stalled below k, or its model
    ran out of new instructions (the rest of its share went to other entries)."""

    def key(self) -> tuple[str, frozenset[str]]:
        """Identity for de-duplication: the same use case with the same skills (and the
        same declared fields)."""
        skills = frozenset(s.lower() for s in self.skills)
        if self.extra:
            skills |= {
                f"{name}={sorted(value) if isinstance(value, list) else value}"
                for name, value in self.extra.items()
            }
        return (self.use_case.lower(), skills)


class EntryEdit(BaseModel):
    """A reviewer's change to one metadata entry: the fields given replace the model's."""

    model_config = ConfigDict(extra="forbid")

    use_case: str | None = None
    skills: list[str] | None = None


class PoolReview(BaseModel):
    """A person's decision on the augmented metadata pool (``run --review metadata``).

    Kept in the 'prepare' state once approved, so the pool decoded from is exactly the
    approved one and a later pass neither grows nor re-asks it.
    """

    model_config = ConfigDict(extra="forbid")

    dropped: list[str] = Field(default_factory=list)
    edited: dict[str, EntryEdit] = Field(default_factory=dict)
    added: list[MetadataEntry] = Field(default_factory=list)
    """Entries the reviewer wrote (origin 'review', ids ``r0000``…)."""
    note: str = ""
    reviewer: str = ""
    """Who last changed the draft, or approved it: the name they gave."""


class LabelMap(BaseModel):
    """The encoder's raw labels merged into canonical ones (``analysis.labels``): raw →
    canonical, only for the labels that changed. The raw labels stay in ``encoded``."""

    threshold: float = 1.0
    """The MiniLM cosine at which labels merged; 1: normalised only."""
    use_case: dict[str, str] = Field(default_factory=dict)
    skills: dict[str, str] = Field(default_factory=dict)

    def use_case_of(self, raw: str) -> str:
        return self.use_case.get(raw, raw)

    def skills_of(self, raw: list[str]) -> list[str]:
        """Canonical skills, in order, a skill two raw spellings merged into counted once."""
        canonical: list[str] = []
        for skill in raw:
            if (label := self.skills.get(skill, skill)) not in canonical:
                canonical.append(label)
        return canonical


class EncodedSeed(BaseModel):
    """The encoder's output for one seed, before de-duplication into the pool."""

    seed_index: int
    seed_id: str
    use_case: str
    skills: list[str]
    extra: Extra = Field(default_factory=dict)


class RubricSet(BaseModel):
    """Self-Rubrics output for one metadata entry (computed once, reused by every instruction)."""

    metadata_id: str
    rubrics: list[str]
    actions: list[str]
    usable: bool = True
    """False: too few distinct actions (``nodes.prepare.least_actions``); the entry's share
    of instructions went to other entries."""
    note: str | None = None
    """Why the set has fewer than k rubrics or actions, when it has."""


class BasicInstruction(BaseModel):
    """A decoded (or, for the baselines, bootstrapped or sampled) instruction."""

    id: str
    metadata_id: str
    instruction: str
    seed_ids: list[str] = Field(default_factory=list)
    """Set when there is no metadata entry to take them from (the baselines)."""
    round: int = 0
    """The decode round that wrote it: earlier rounds win when two repeat each other."""
    index: int = 0
    """Its place among everything its entry decoded (the ``-NN`` of its id)."""

    @classmethod
    def decoded(
        cls, *, id: str, metadata_id: str, instruction: str, round: int, index: int
    ) -> BasicInstruction:
        """One the decode step made from its own checked values: built without validating
        them again, all sharing one set of field names. Half a validated one's memory, and
        the 'prepare' state holds every instruction of a run."""
        return cls.model_construct(
            _fields_set=_DECODED_FIELDS,
            id=id,
            metadata_id=metadata_id,
            instruction=instruction,
            round=round,
            index=index,
        )


_DECODED_FIELDS = {"id", "metadata_id", "instruction", "round", "index"}


class Failure(BaseModel):
    """A step that failed after its retries, kept with its reason instead of crashing the run."""

    step: str
    subject: str
    reason: str
    permanent: bool = False
    """No later run would fare better (a refusal, a request the server rejects): a seed
    whose encode failed so is left out of the pool; anything else is retried by a re-run."""


class Update(BaseModel):
    """One ``run --update``: new seeds (a shifted distribution), and what they add."""

    number: int
    seed_ids: list[str]
    instructions: int
    """The run's budget once this update is done (its new instructions: the difference)."""
    metadata: int
    """The pool's size once this update is done."""
    pool_start: int = -1
    """Where this update's entries begin in the pool; -1 until they are built."""


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
    bootstrap_rounds: int = 0
    """self-instruct: generation rounds so far (each one a checkpointed step)."""
    rejected: int = 0
    """self-instruct: generated instructions the ROUGE-L novelty filter turned away."""
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

    def accepted_items(self) -> list[BasicInstruction]:
        """The accepted instructions, in rank order."""
        by_id = {item.id: item for item in self.decoded}
        return [by_id[ident] for ident in self.accepted]


class EncodeTask(BaseModel):
    """Input of one encode task (sent once per seed)."""

    seed_index: int
    seed: Seed


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


Status = Literal["pending", "improving", "kept", "dropped", "failed", "duplicate", "surplus"]
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
    iteration: int = 1
    actions_applied: list[str] = Field(default_factory=list)
    strong_answer: str | None = None
    target_answer: str | None = None
    target_refused: bool = False
    """The target declined to answer (asked again with other seeds): a real weakness of
    the target, so the pair is judged, but a refusal is never kept as the response."""
    strong_reasoning: str | None = None
    target_reasoning: str | None = None
    """Each answer's reasoning, kept apart from it only with ``keep_reasoning``."""
    scores: JudgeScores | None = None
    status: Status = "pending"
    response_source: Role | None = None
    reason: str | None = None
    failed_node: str | None = None
    """The node whose retries ran out (status 'failed'): a later run restarts there."""
    usage: Usage = Field(default_factory=dict)
    usage_by_node: Usage = Field(default_factory=dict)


Outcome = Literal["win", "tie", "loss"]


class EvalItemState(BaseModel):
    """One benchmark item's thread in ``codeclm eval``: a pair of answers and its verdict."""

    schema_version: int = SCHEMA_VERSION
    id: str
    instruction: str
    category: str = ""
    strong_answer: str | None = None
    target_answer: str | None = None
    scores: JudgeScores | None = None
    outcome: Outcome | None = None
    """The target's result: a win or a loss only when both orders agree."""
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
