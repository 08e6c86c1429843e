"""``codeclm eval``'s settings: the judge beside the two roles, the turns judged."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from codeclm.config.base import MAX_TURNS, ModelSettings
from codeclm.config.roles import RoleConfig


class EvalConfig(ModelSettings):
    """``codeclm eval``: target and strong answer each benchmark item, the judge scores."""

    ROLES: ClassVar[tuple[str, ...]] = ("strong", "target", "judge")

    judge: RoleConfig = Field(default_factory=RoleConfig)
    limit: int | None = Field(None, gt=0, description="evaluate only the first N items")
    turns: int | None = Field(
        None,
        ge=1,
        le=MAX_TURNS,
        strict=True,
        description="judge each item's first T turns (MT-Bench has 2; each later turn asked "
        "after the model's own earlier answers); default: every turn an item has; 1: the "
        "first turn only",
    )

    answers: Literal["first"] = Field(
        "first",
        description="which answers are judged: each model's first, at its max_tokens "
        "(recorded: an evaluation that asked again while a model refused resumes no more)",
    )
    self_judge: bool = Field(
        False,
        strict=True,
        description="let the strong model judge its own answers (not the paper's protocol, "
        "which judges with a third model: --judge-model)",
    )

    @property
    def judge_named(self) -> bool:
        """The judge names its own model or endpoint (a third model, as the paper's)."""
        return bool(self.judge.model or self.judge.base_url)

    def fingerprint_fields(self) -> dict[str, Any]:
        """As a run's; ``limit`` is left out, so a later call may evaluate more items (and
        ``self_judge``: the judge's own settings are in it)."""
        fields = super().fingerprint_fields()
        fields.pop("limit", None)
        fields.pop("self_judge", None)
        if self.turns in (None, 1):  # the first turn only: as before --turns existed
            fields.pop("turns", None)
        return fields

    @model_validator(mode="before")
    @classmethod
    def _judge_defaults_to_strong(cls, values: Any) -> Any:
        """With ``self_judge``, the strong model judges (unless the judge names its own model
        or endpoint, which ``api.evaluate`` refuses beside it); the judge's own settings
        (e.g. ``max_tokens``) apply on top of the strong model's."""
        if not isinstance(values, dict) or values.get("self_judge") is not True:
            return values
        judge, strong = values.get("judge") or {}, values.get("strong") or {}
        if not isinstance(judge, dict) or not isinstance(strong, dict):
            return values  # (said in one line by the validation)
        judge = dict(judge)
        if not judge.get("model") and not judge.get("base_url"):
            values = {**values, "judge": {**dict(values.get("strong") or {}), **judge}}
        return values
