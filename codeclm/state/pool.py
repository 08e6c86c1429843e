"""The 'prepare' pass's parts: seeds, metadata entries, their reviews and rubrics, the
basic instructions decoded from them, and the pass's failures and updates."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Seed(BaseModel):
    """One seed instruction from the user's file."""

    id: str
    instruction: str
    input: str = ""

    @property
    def text(self) -> str:
        """The seed as the encoder sees it: instruction, then its input if any."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


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
    """False: too few distinct actions (``prepare.nodes.least_actions``); the entry's share
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
