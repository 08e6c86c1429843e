"""The records a run and an evaluation write, as models shared by the writers and readers.

``run.json`` (``RunRecord``), ``metadata.jsonl`` (``MetadataEntry``, the state's own
model), eval's ``eval.json`` (``EvalRecord``), and what a shared store keeps for its
workers (``StoredInputs``); the rows of ``dataset.jsonl`` and the others are in
``codeclm.rows``. Readers accept files written by earlier versions: every field added
later has a default, and unknown fields are ignored (pydantic's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from codeclm.config import ConfigError
from codeclm.judge_figures import JudgeFigures
from codeclm.methods import MethodSpec, method_spec
from codeclm.state import (
    Failure,
    LabelMap,
    MetadataEntry,
    PoolReview,
    Seed,
    TokenUsage,
    Update,
)


class Counts(BaseModel):
    """What a run made, from the seeds to the kept pairs."""

    seeds: int = 0
    user_metadata: int = 0
    metadata_pool: int = 0
    metadata_encoded: int = 0
    metadata_augmented: int = 0
    instructions_requested: int = 0
    instructions_decoded: int = 0
    repeats_dropped: int = 0
    self_instruct_rejected: int = 0
    instructions: int = 0
    kept: int = 0
    kept_strong: int = 0
    kept_target: int = 0
    kept_by_iteration: dict[str, int] = Field(default_factory=dict)
    dropped: int = 0
    duplicates: int = 0
    surplus: int = 0
    """``--pairs``: kept pairs beyond N, left out of a sample spread over the metadata
    entries (in dropped.jsonl)."""
    contaminated: int = 0
    """Kept pairs that copy or nearly copy an evaluation item (``--decontaminate``), in
    dropped.jsonl as 'contaminated': never data."""
    pairs_requested: int | None = None
    """``--pairs``: the budget in kept pairs (``instructions_requested``: what it took)."""
    failed: int = 0
    unfinished: int = 0
    target_refused: int = 0
    """Kept pairs whose target refused (the strong answer kept; see ``DatasetRow``)."""
    target_cut: int = 0
    """Kept pairs whose target's answer was cut at its budget (the strong answer kept)."""

    @property
    def missing(self) -> int:
        """Instructions of the budget that did not enter the loop (see ``prepare_failures``)."""
        return self.instructions_requested - self.instructions


class ModelRecord(BaseModel):
    """One role's model and endpoint, never its key (the URL's password is redacted)."""

    model: str
    base_url: str | None = None
    embedded: bool = False
    structured_output: str = "json_schema"
    """How its server took structured replies: json_schema, json_object (it rejected
    json_schema), or prompt (it rejected both; the prompts ask for the JSON)."""


class EndpointStats(BaseModel):
    """How many requests one server (base URL) took at once during the run
    (``llm.admission``): the limit now, its range, and why it was cut."""

    adaptive: bool = True
    ceiling: int = 0
    limit: int = 0
    lowest: int = 0
    highest: int = 0
    refused: int = 0
    """Requests the server answered 429 (too many requests)."""
    rate_limited: int = 0
    """Of those, the 429s read as a rate limit (its window spent, or at a level the server
    took lately): waited out, the limit not cut."""
    cuts: dict[str, int] = Field(default_factory=dict)
    """Cuts of the limit by cause: 429, 503 (overload), queueing (latency)."""
    undone: int = 0
    """Cuts on a 429 undone: a rate limit came below the level that 429 came at."""


class RunInputs(BaseModel):
    """Where a run's inputs came from (absolute paths), so ``resume`` can read them again
    when the 'prepare' thread never checkpointed them."""

    seeds: str | None = None
    user_metadata: str | None = None
    field: str | None = None
    """``--field``: the seeds file's column holding the instruction."""
    update_seeds: str | None = None
    """The seeds file of the last ``run --update`` (written only once there is one)."""

    @model_serializer(mode="wrap")
    def _no_update_yet(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("update_seeds") is None:
            data.pop("update_seeds", None)
        return data


class StoredInputs(BaseModel):
    """What a shared store keeps beside the run's record: the inputs a worker needs to
    start the 'prepare' thread, or an evaluation's fingerprint (one kind per name)."""

    seeds: list[Seed] = Field(default_factory=list)
    user_metadata: list[MetadataEntry] = Field(default_factory=list)
    eval_fingerprint: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return not (self.seeds or self.user_metadata or self.eval_fingerprint)


PER_MILLION = 1_000_000


class RolePrice(BaseModel):
    """A role's price as the run used it, and where it came from."""

    model: str
    source: Literal["config", "table", "local"]
    """config: the role's [price] table; table: the price database; local: a server on
    this machine or network, free unless a price is set."""
    input: float
    output: float
    cached_input: float
    batch_discount: float = 0.5
    """The share of the price a Batch API request pays (``--batch``)."""

    def cost(self, usage: TokenUsage) -> float:
        """USD for ``usage``: input tokens (those read from the provider's prompt cache at
        their own price) and output tokens, reasoning included."""
        fresh = max(usage.input_tokens - usage.cached_input_tokens, 0)
        return (
            fresh * self.input + usage.cached_input_tokens * self.cached_input
        ) / PER_MILLION + usage.output_tokens * self.output / PER_MILLION


class CostRecord(BaseModel):
    """What a run (or an evaluation) cost, in USD: from its ledger of paid requests, priced
    per role; None wherever a price is unknown."""

    table: str = ""
    """The price database and its version (``genai-prices 0.2.5``)."""
    price_source: str = ""
    """Where the prices came from, as they were: the config, the database, or both (and
    which roles ran free on this machine, or unpriced)."""
    prices: dict[str, RolePrice | None] = Field(default_factory=dict)
    paid: dict[str, TokenUsage] = Field(default_factory=dict)
    """Every request each role was paid for, over the run's whole life (the ledger)."""
    by_role: dict[str, float | None] = Field(default_factory=dict)
    total: float | None = 0.0
    by_node: dict[str, float | None] = Field(default_factory=dict)
    """Per ``node/role``, from the ledger's steps (they sum to ``total``); from the threads'
    current branches for a ledger begun by an earlier version, or moved aside."""
    cache_saved: float | None = 0.0
    """What the response cache's answers would have cost."""
    per_kept_pair: float | None = None
    cap: float | None = None
    stopped_at_cap: str | None = None
    """The cap the run stopped before (it goes on when run again with a higher one)."""


class Decontamination(BaseModel):
    """What a run's pairs were checked against: the test files (``--decontaminate``, or
    the evaluation part ``codeclm split`` wrote beside the seeds), their items, the rule."""

    files: list[str] = Field(default_factory=list)
    items: int = 0
    rule: str = ""
    from_split: bool = False
    """The test file was found beside the seeds (``split.json``), not named by a flag."""


class RunRecord(BaseModel):
    """``run.json``: the settings (checked on every later run), counts, usage and failures."""

    codeclm_version: str = ""
    fingerprint: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    config_fingerprinted: dict[str, Any] = Field(default_factory=dict)
    inputs: RunInputs = Field(default_factory=RunInputs)
    store: str | None = None
    """The PostgreSQL store the run lives in, without its password; None: this folder."""
    run_name: str | None = None
    """The run's name in that store (``--run``)."""
    models: dict[str, ModelRecord] = Field(default_factory=dict)
    counts: Counts = Field(default_factory=Counts)
    prepare_failures: list[Failure] = Field(default_factory=list)
    shortfall: str | None = None
    """How many instructions the budget misses and why, when the metadata pool ran dry."""
    notes: list[str] = Field(default_factory=list)
    """What the run did otherwise than its settings say, and why (said in the summary too):
    a pool larger than --metadata, labels merged by spelling only."""
    pool_review: PoolReview | None = None
    """The person's approved decision on the metadata pool (``--review metadata``)."""
    label_map: LabelMap | None = None
    """The encoder's raw labels that were merged into canonical ones (raw → canonical)."""
    updates: list[Update] = Field(default_factory=list)
    """``run --update`` calls: each one's seeds, budget and where its pool entries begin."""
    usage: dict[str, TokenUsage] = Field(default_factory=dict)
    usage_by_node: dict[str, TokenUsage] = Field(default_factory=dict)
    judge: JudgeFigures | None = None
    """The judge's position and length biases (a method that judges, once pairs are)."""
    wall_seconds: float = 0.0
    checkpointing: dict[str, Any] | None = None
    cost: CostRecord | None = None
    endpoints: dict[str, EndpointStats] = Field(default_factory=dict)
    """Each server's concurrency (by base URL): adapted to what it takes."""
    waves_stalled: bool = False
    """``--pairs``: the last wave kept no new pair, which ended the waves (the same command
    run again adds none: it would only pay for more of the same)."""
    decontamination: Decontamination | None = None
    """``--decontaminate``: the evaluation items no pair may copy, and the rule."""

    @property
    def method(self) -> MethodSpec:
        """The run's method; a run recorded before there were methods: codeclm."""
        return method_spec(str(self.config.get("method", "codeclm")))


class Tally(BaseModel):
    """An evaluation's outcomes over some items: CRR = (wins + ties) / total."""

    total: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    crr: float | None = None
    """None when no item was judged."""


class EvalResult(Tally):
    """The whole benchmark's tally, and each category's."""

    by_category: dict[str, Tally] = Field(default_factory=dict)
    by_turn: dict[str, Tally] = Field(default_factory=dict, exclude_if=lambda value: not value)
    """Each turn's tally, when the items had several (MT-Bench's two): the overall and
    the categories' tallies then count every turn judged."""


class EvalRecord(BaseModel):
    """``eval.json``, and what ``codeclm.evaluate`` returns: settings, fingerprint, result."""

    codeclm_version: str = ""
    benchmark: str = ""
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    """The settings that shape the judgments and the benchmark's digest (checked on resume)."""
    config: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, ModelRecord] = Field(default_factory=dict)
    store: str | None = None
    run_name: str | None = None
    result: EvalResult | None = None
    """None until the first pass has ended."""
    self_judged: bool = False
    """The strong model judged its own answers (``--self-judge``), not a third model."""
    refused: dict[str, int] = Field(default_factory=dict)
    cut: dict[str, int] = Field(default_factory=dict)
    """Per role, the judged turns whose (first and only) answer was a refusal, or cut at
    the evaluation's budget: judged as they were."""
    items: int = 0
    failed: int = 0
    unfinished: int = 0
    usage: dict[str, TokenUsage] = Field(default_factory=dict)
    judge: JudgeFigures | None = None
    """The judge's position and length biases, over the items judged in both orders."""
    wall_seconds: float = 0.0
    cost: CostRecord | None = None

    @property
    def crr(self) -> float | None:
        return self.result.crr if self.result else None


def grouped_failures(failures: list[Failure], shown: int = 3) -> str:
    """Failures that share a step and a reason, said once with how many and which: an error
    no retry fixes (a wrong model name, a rejected request) fails every seed alike."""
    groups: dict[tuple[str, str], list[str]] = {}
    for failure in failures:
        groups.setdefault((failure.step, failure.reason), []).append(failure.subject)
    parts = []
    for (step, reason), subjects in list(groups.items())[:shown]:
        names = ", ".join(subjects[:3])
        if len(subjects) > 3:
            names += f" and {len(subjects) - 3} more"
        parts.append(f"{step} {names}: {reason}")
    if len(groups) > shown:
        parts.append(f"and {len(groups) - shown} other reasons (run.json)")
    return "; ".join(parts)


Row = TypeVar("Row", bound=BaseModel)


def read_rows(path: Path, model: type[Row]) -> list[Row]:
    """The rows of one of a run's JSONL files; none when it is missing or empty."""
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(model.model_validate_json(line))
            except ValidationError as error:
                why = error.errors()[0]["msg"]
                raise ConfigError(f"{path}:{number}: not a {model.__name__} row ({why})") from None
    return rows
