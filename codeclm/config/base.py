"""What every command's settings share: the roles, pacing and caching (``ModelSettings``),
and the error a bad setting raises."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codeclm.config.roles import (
    CEILING_DEFAULT,
    ROLE_PACING,
    RoleConfig,
)

MAX_TURNS = 4
"""The most user turns a conversation may have (``--turns``)."""


THREADS_PER_SLOT = 2
"""Threads run at once per request slot: a thread between its requests (parsing its reply,
writing its checkpoint, waiting out a pause a server asked for) leaves its slot to another,
so the slots stay full; the gate and ``--concurrency`` still bound the requests."""


class ConfigError(ValueError):
    """Bad configuration; the CLI prints it as one line and exits 2."""


class ModelSettings(BaseModel):
    """What every command that calls models shares: its roles, pacing, retries and cache."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    #: The model roles this command uses, each a ``RoleConfig`` field of the same name.
    ROLES: ClassVar[tuple[str, ...]] = ("strong", "target")

    concurrency: int = Field(
        8, ge=1, description="LLM requests in flight at once (and twice as many threads run)"
    )
    adaptive: bool = Field(
        True,
        description="adapt each endpoint's requests in flight to what it takes (fewer on "
        "429s, 503s and queueing; more while it keeps up), never above --concurrency",
    )
    seed: int = Field(0, description="seeds every random choice, so a run is reproducible")
    attempts: int = Field(
        5,
        ge=1,
        description="tries per LLM step before it is recorded failed (5: a 503 or 429 three "
        "times in a row is ordinary at a busy provider)",
    )
    backoff: float = Field(1.0, ge=0, description="seconds before the first retry (doubles)")
    cache: bool = Field(True, description="answer repeated requests from DIR/llm_cache.sqlite")
    batch: bool = Field(
        False,
        description="send the requests through the providers' Batch API (half price; "
        "replies within hours): docs/cost.md",
    )
    batch_poll_seconds: float = Field(30.0, gt=0, description="seconds between batch polls")
    batch_quiet_seconds: float = Field(
        1.0, gt=0, description="a batch is submitted once no new request came for this long"
    )
    batch_max_lines: int = Field(50_000, ge=1, description="requests per batch file at most")
    max_cost: float | None = Field(
        None,
        gt=0,
        description="USD the run may spend in all; it stops before a request that could pass "
        "it (counting requests in flight at their max_tokens) and goes on when run again "
        "with a higher cap",
    )
    prompts_dir: str | None = Field(None, description="folder of prompt files overriding ours")
    strong: RoleConfig = Field(default_factory=RoleConfig)
    target: RoleConfig = Field(default_factory=RoleConfig)

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_dir_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_dir():
            raise ValueError(f"prompts_dir {value!r} is not a folder")
        return value

    @property
    def workers(self) -> int:
        """Threads (and 'prepare' tasks) run at once: ``THREADS_PER_SLOT`` for each of
        ``--concurrency``'s requests in flight."""
        return self.concurrency * THREADS_PER_SLOT

    def role(self, name: str) -> RoleConfig:
        role: RoleConfig = getattr(self, name)
        return role

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that change what a run produces (limits and retrying do not)."""
        pacing = set(ROLE_PACING)
        exclude: dict[str, Any] = {
            key: True
            for key in (
                "concurrency",
                "adaptive",
                "attempts",
                "backoff",
                "cache",
                "max_cost",
                "batch",
                "batch_poll_seconds",
                "batch_quiet_seconds",
                "batch_max_lines",
            )
        }
        exclude.update({role: pacing for role in self.ROLES})
        fields = self.model_dump(exclude=exclude, mode="json")
        for role in self.ROLES:  # added later: at its default, a run begun before keeps going
            if fields[role].get("max_tokens_ceiling") == CEILING_DEFAULT:
                del fields[role]["max_tokens_ceiling"]
        return fields

    def fingerprint(self) -> str:
        blob = json.dumps(self.fingerprint_fields(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
