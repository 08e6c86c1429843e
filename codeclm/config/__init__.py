"""Run configuration: defaults from the paper, a config file, then command-line flags.

The resolved config is what ``run.json`` records. It holds the *name* of each role's API-key
variable, never the key, so nothing written from it can leak a secret.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, ValidationError, model_validator

from codeclm.config.base import MAX_TURNS, ConfigError, ModelSettings
from codeclm.config.eval_config import EvalConfig
from codeclm.config.fields import RESERVED_FIELDS, MetadataField
from codeclm.config.roles import DEFAULT_API_KEY_ENV, Price, RoleConfig
from codeclm.methods import METHODS, Method, methods_help

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "MAX_TURNS",
    "RESERVED_FIELDS",
    "ConfigError",
    "EvalConfig",
    "MetadataField",
    "ModelSettings",
    "Price",
    "RoleConfig",
    "RunConfig",
    "changed_settings",
    "differing_keys",
    "load_config_file",
    "resolve_config",
    "resolve_settings",
]


class RunConfig(ModelSettings):
    """Everything that shapes a run. Defaults are the paper's where it gives one."""

    method: Method = Field(
        "codeclm",
        description=methods_help(),
    )
    instructions: int = Field(
        2000, gt=0, description="basic instructions that enter the loop, in total"
    )
    pairs: int | None = Field(
        None,
        gt=0,
        description="the budget in kept pairs, as the paper counts it: decode and run more "
        "instructions, wave after wave, until this many pairs are kept (or the pool runs "
        "dry); --instructions is then the first wave's size",
    )
    metadata: int = Field(200, gt=0, description="size of the augmented metadata pool")
    threshold: float = Field(3.0, ge=0, description="θ of the signed gap rule (10-point scale)")
    max_iterations: int = Field(
        4, ge=1, description="iterations per instruction, the basic one counting"
    )
    turns: int = Field(
        1,
        ge=1,
        le=MAX_TURNS,
        strict=True,  # (true in a config file is no number of turns)
        description="user turns per conversation: the strong model writes turns 2 to T as "
        "the entry's user would follow up; both models answer every turn, each after its own "
        "earlier answers, and the judge scores each turn",
    )
    rubrics: int = Field(4, ge=1, description="rubrics and actions per metadata entry")
    max_skills: int = Field(3, ge=1, description="skills per metadata entry")
    decode_batch: int = Field(
        5, ge=1, description="instructions asked for per decode call (a reply that fits max_tokens)"
    )
    repeat_similarity: float = Field(
        0.9,
        gt=0,
        le=1,
        description="a decoded instruction whose ROUGE-L with an earlier one reaches this is a "
        "near repeat, dropped before any answer is paid for",
    )
    label_similarity: float = Field(
        0.8,
        gt=0,
        le=1,
        description="merge encoded use cases (and skills) whose MiniLM cosine reaches this "
        "into one canonical label, e.g. 'customer service' and 'customers service'; 1: "
        "normalise spelling only",
    )
    metadata_fields: list[MetadataField] = Field(
        default_factory=list,
        description="metadata fields beside use case and skills (config file only)",
    )
    dedup: float | None = Field(
        None,
        gt=0,
        le=1,
        description="move a kept pair whose instruction has MiniLM embedding cosine >= this "
        "with an earlier kept one to dropped.jsonl as a duplicate (e.g. 0.9); unset: keep all",
    )
    decontaminate: list[str] = Field(
        default_factory=list,
        description="benchmark JSONL or text files (an item a line) whose items are never "
        "data: a pair that copies one (a shared 13-word n-gram, or MiniLM cosine >= 0.9) "
        "goes to dropped.jsonl as contaminated",
    )
    review: Literal["none", "metadata"] = Field(
        "none",
        description="metadata: wait after augmentation for a person to review the pool "
        "(codeclm view DIR or codeclm review DIR), then decode from the approved pool",
    )
    keep_reasoning: bool = Field(
        False,
        description="save each kept response's reasoning (a reasoning model's, from "
        "reasoning_content or a <think> block) in its row, beside the response; reasoning "
        "is never part of a response, an improved instruction, or what the judge sees",
    )
    evol_rounds: int = Field(4, ge=1, description="evol-instruct: evolution rounds per seed")
    tree_nodes: int = Field(
        10, ge=1, le=20, description="tree-instruct: nodes added to each instruction's tree"
    )
    rating_threshold: float = Field(
        4.5, ge=0, le=5, description="alpagasus: the rating (0 to 5) a pair needs to be kept"
    )
    rouge_threshold: float = Field(
        0.7, gt=0, le=1, description="self-instruct: ROUGE-L above which a new one is rejected"
    )

    #: Settings a re-run may raise: the run grows, keeping every finished pair.
    GROWABLE: ClassVar[tuple[str, ...]] = ("instructions", "metadata", "pairs")

    def fingerprint_fields(self) -> dict[str, Any]:
        """Settings a method does not use are left out, as are the later-added ones at
        their defaults (a run begun before they existed keeps its fingerprint) and the
        ones a run may grow by (checked on their own: they may only go up)."""
        fields = super().fingerprint_fields()
        # review: a gate (the pool records its outcome); keep_reasoning: a column of the rows;
        # decontaminate: a screen of the outputs, rebuilt whole at the end of every run
        for key in (*self.GROWABLE, "review", "keep_reasoning", "decontaminate"):
            fields.pop(key, None)
        unused = {
            "method": self.method == "codeclm",
            "dedup": self.dedup is None,
            "label_similarity": self.label_similarity == 0.8,
            "metadata_fields": not self.metadata_fields,
            "turns": self.turns == 1,
        }
        own = set(METHODS[self.method].settings)
        for spec in METHODS.values():  # settings of another method
            unused.update((key, True) for key in spec.settings if key not in own)
        return {key: value for key, value in fields.items() if not unused.get(key)}

    @model_validator(mode="after")
    def _first_wave(self) -> RunConfig:
        """With a budget in pairs and no --instructions, the first wave is one instruction
        per pair wanted (later waves follow the share the filter kept)."""
        if self.pairs is not None and "instructions" not in self.model_fields_set:
            self.instructions = self.pairs
        return self

    @model_validator(mode="after")
    def _fields_once(self) -> RunConfig:
        names = [field.name for field in self.metadata_fields]
        if len(names) != len(set(names)):
            raise ValueError("metadata_fields: each name once")
        return self

    @model_validator(mode="after")
    def _review_needs_a_pool(self) -> RunConfig:
        if self.review == "metadata" and not METHODS[self.method].makes_metadata:
            raise ValueError(f"review 'metadata': the method {self.method} makes no metadata pool")
        return self


S = TypeVar("S", bound=ModelSettings)

"""Role settings that change how fast a run goes, never what it produces."""


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{source}: {where}: {message}"


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a plain dict (validated later, with the flags)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}".splitlines()[
                0
            ]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings")
    return data


def resolve_settings(
    kind: type[S], file_values: dict[str, Any], overrides: dict[str, Any], source: str
) -> S:
    """Merge flags over the file's values; role overrides merge key by key."""
    merged: dict[str, Any] = {k: v for k, v in file_values.items()}
    for role in kind.ROLES:
        if role in merged and not isinstance(merged[role], dict):
            raise ConfigError(
                f"{source}: {role}: a table of the role's settings ([{role}] with model = "
                f"…, base_url = …), not {type(merged[role]).__name__}"
            )
    for key, value in overrides.items():
        if value is None:
            continue
        if key in kind.ROLES:
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    try:
        return kind.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None


def resolve_config(
    file_values: dict[str, Any], overrides: dict[str, Any], source: str
) -> RunConfig:
    """A run's settings: flags over the file's values over the defaults."""
    return resolve_settings(RunConfig, file_values, overrides, source)


def differing_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of the settings that differ between two fingerprinted configs."""
    keys: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


#: What ``run --update`` may change: the amounts; every other setting is the run's own.
UPDATABLE = frozenset({"instructions", "metadata", "concurrency", "cache"})


def check_update(recorded: dict[str, Any], given: dict[str, Any]) -> None:
    """``run --update`` keeps the run's settings: any given one but the amounts (a value
    equal to the run's own is no change) is refused in one line naming each."""
    changed = [
        f"--{name.replace('_', '-').replace('.', '-')} {now} (the run's: {was})"
        for name, was, now in changed_settings(recorded, given)
        if name not in UPDATABLE
    ]
    if changed:
        raise ConfigError(
            f"--update keeps the run's own settings, and {'; '.join(changed)} "
            f"differ{'s' if len(changed) == 1 else ''}: give only SEEDS, --out, --instructions, "
            "--metadata and --concurrency, or the run's own values"
        )


def changed_settings(
    recorded: dict[str, Any], given: dict[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """(name, recorded value, given value) of each *given* setting that differs from the
    recorded one (``run --update``: a value equal to the run's own is no change)."""
    found = []
    for key, now in given.items():
        was = recorded.get(key)
        if isinstance(now, dict) and isinstance(was, dict):
            found += changed_settings(was, now, f"{prefix}{key}.")
        elif now != was:
            found.append((f"{prefix}{key}", was, now))
    return found
