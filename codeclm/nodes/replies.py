"""Schemas of the strong model's structured replies, one per step.

Every string has a ``max_length`` and every list a ``max_items``: under grammar-constrained
decoding (llama.cpp, vLLM) a small model otherwise loops until ``max_tokens``. Schemas whose
list lengths depend on the run (skills, instructions per entry, rubrics) are built once per
size and cached. Schema names are stable: they are what a server (or the test mock) sees.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
)

from codeclm.config import MetadataField

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Sentence = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
InstructionText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1500)
]

_STRICT = ConfigDict(extra="forbid")


def _usable_items(most: int, longest: int) -> Callable[[Any], Any]:
    """Before validation: keep a list's usable strings, at most ``most`` of them.

    Real models return more items than asked, or a blank or over-long one among good
    ones; the good ones are kept rather than the whole reply failing. The schema sent to
    the server still says ``maxItems``, so grammar-constrained servers stop there.
    """

    def keep(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        usable = [v for v in value if isinstance(v, str) and 0 < len(v.strip()) <= longest]
        return usable[:most]

    return keep


def _items(kind: Any, most: int, longest: int, keep: int | None = None) -> Any:
    """``list[kind]`` of 1 to ``most`` items (the schema's ``maxItems``), lenient as
    ``_usable_items`` says; ``keep``: how many a reply may bring that the step will sort
    through itself (more than ``most``)."""
    return (
        Annotated[list[kind], BeforeValidator(_usable_items(keep or most, longest))],  # type: ignore[valid-type]
        Field(..., min_length=1, json_schema_extra={"maxItems": most}),
    )


def encoded_metadata(max_skills: int, fields: tuple[MetadataField, ...] = ()) -> type[BaseModel]:
    """``{"use_case": str, "skills": [str, ...]}`` with at most ``max_skills`` skills, and
    each declared field: one of its values (or a label), or a list of them."""
    shape = tuple((f.name, tuple(f.values or ()), f.multiple) for f in fields)
    return _encoded_metadata(max_skills, shape)


@cache
def _encoded_metadata(
    max_skills: int, fields: tuple[tuple[str, tuple[str, ...], bool], ...]
) -> type[BaseModel]:
    extra: dict[str, Any] = {}
    for name, values, multiple in fields:
        kind: Any = Literal[values] if values else Label  # type: ignore[valid-type]
        extra[name] = _items(kind, 3, 60) if multiple else (kind, ...)
    return create_model(
        "EncodedMetadata",
        __config__=_STRICT,
        use_case=(Label, ...),
        # more than asked are kept: the encoder drops repeats ('python', 'Python skills')
        # before it takes the first max_skills distinct ones
        skills=_items(Label, max_skills, 60, keep=4 * max_skills),
        **extra,
    )


class UserVoice(BaseModel):
    """A reply written in the user's voice (instructions, rewrites, later turns): a bare
    reply is a refusal only when it declines the task (``parsing.declines_task``), never
    for a first-person request such as "I can't log in to the billing portal"."""

    model_config = _STRICT
    USER_VOICE: ClassVar[bool] = True


@cache
def _instruction_list(name: str, n: int) -> type[BaseModel]:
    """``{"instructions": [str × n]}`` under the schema name ``name``."""
    return create_model(name, __base__=UserVoice, instructions=_items(InstructionText, n, 1500))


def decoded_instructions(n: int) -> type[BaseModel]:
    """The decoder's n basic instructions for one metadata entry."""
    return _instruction_list("DecodedInstructions", n)


@cache
def self_rubrics(k: int) -> type[BaseModel]:
    """``{"rubrics": [str × k], "actions": [str × k]}``."""
    return create_model(
        "SelfRubrics",
        __config__=_STRICT,
        rubrics=_items(Sentence, k, 200),
        actions=_items(Sentence, k, 200),
    )


#: What the improve step's schema tells a grammar-constrained server (characters): a small
#: model that loops stops here, within the default 2048-token budget. A longer rewrite from
#: a server without a grammar is taken if the models' context has room for it
#: (``nodes.instruction.instruction_room``), never refused for its length here.
REWRITE_CHARS = 6000


class FollowUp(UserVoice):
    """The user's next message in a conversation (``--turns``)."""

    model_config = _STRICT
    message: InstructionText


class ImprovedInstruction(UserVoice):
    """The rewritten, harder instruction."""

    model_config = _STRICT
    instruction: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": REWRITE_CHARS}),
    ]


class QualityRating(BaseModel):
    """AlpaGasus's rating of a pair's accuracy, 0 to 5, with a short explanation."""

    model_config = _STRICT
    score: Annotated[float, Field(ge=0, le=5)]
    explanation: Annotated[str, StringConstraints(max_length=2000)] = ""


class TreeInstruction(UserVoice):
    """Tree-Instruct's semantic tree, the tree with its added nodes, the new instruction."""

    model_config = _STRICT
    tree: Annotated[str, StringConstraints(max_length=3000)] = ""
    expanded_tree: Annotated[str, StringConstraints(max_length=4000)] = ""
    instruction: InstructionText


class EvolvedInstruction(UserVoice):
    """Evol-Instruct's rewritten (in depth) or newly created (in breadth) instruction."""

    model_config = _STRICT
    instruction: InstructionText


def bootstrapped_instructions(n: int) -> type[BaseModel]:
    """Self-Instruct's n new tasks from one prompt."""
    return _instruction_list("BootstrappedInstructions", n)
