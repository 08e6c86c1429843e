"""Metadata fields a config declares beside use case and skills (``[[metadata_fields]]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RESERVED_FIELDS = frozenset(
    {
        "id",
        "use_case",
        "skills",
        "origin",
        "seed_ids",
        "rubrics",
        "actions",
        "n_instructions",
        "extra",
    }
)


class MetadataField(BaseModel):
    """A metadata field beside use case and skills, declared in a config's
    ``[[metadata_fields]]`` (the paper's richer metadata: domain, difficulty, format …)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}$")
    description: str = Field(min_length=1, description="what the encoder is asked for")
    values: list[str] | None = Field(None, description="the allowed values; unset: free text")
    multiple: bool = Field(False, description="a list of values rather than one")
    within: Literal["use_case"] | None = Field(
        None,
        description="use_case: a sub-label of the use case (a hierarchy); augmentation then "
        "pairs a value only with a use case it was seen under",
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_FIELDS:
            raise ValueError(f"{value!r} is a field codeclm already has")
        return value

    @field_validator("values")
    @classmethod
    def _some_values(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one value, or leave values unset for free text")
        return value
