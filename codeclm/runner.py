"""A whole run: the 'prepare' thread, then one checkpointed thread per instruction.

Each instruction is its own LangGraph thread in one SQLite checkpoint DB, so a failing
instruction never cancels or re-runs another, and a re-run of the same command picks up
where the last one stopped: finished threads are skipped, partial ones resume from their
last checkpoint (``durability="sync"``: after a hard kill only the node in flight re-runs).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite, RetryPolicy
from pydantic import BaseModel

from codeclm import __version__
from codeclm.config import ConfigError, ModelSettings, RunConfig, differing_keys
from codeclm.context import PipelineContext
from codeclm.graph import (
    TimedSqliteSaver,
    build_instruction_graph,
    build_prepare_graph,
    open_checkpointer,
    retry_policy,
    thread_config,
)
from codeclm.graph.instruction import RESTART_FROM
from codeclm.llm.cache import ResponseCache
from codeclm.llm.client import RoleModel
from codeclm.llm.preflight import preflight
from codeclm.llm.roles import role_models
from codeclm.outputs import (
    CACHE,
    CHECKPOINTS,
    DATASET,
    DROPPED,
    EVAL_JSON,
    FAILED,
    METADATA,
    RUN_JSON,
    JsonlWriter,
    dataset_row,
    dropped_row,
    metadata_row,
    write_json,
    write_jsonl,
)
from codeclm.prompts import Prompts, load_prompts
from codeclm.seeds import check_fits_context
from codeclm.state import (
    BasicInstruction,
    InstructionState,
    MetadataEntry,
    PrepareState,
    Seed,
    TokenUsage,
    add_usage,
)

PREPARE_THREAD = "prepare"
FINISHED = ("kept", "dropped", "failed")


@dataclass
class RunStats:
    """Live counters, read by the progress display."""

    total: int = 0
    kept: int = 0
    dropped: int = 0
    failed: int = 0
    in_flight: int = 0
    phase: str = "starting"
    usage: dict[str, TokenUsage] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.kept + self.dropped + self.failed

    def count(self, values: dict[str, Any]) -> None:
        """A thread ended (now, or in an earlier run) with these final values."""
        status = values.get("status")
        if status in FINISHED:
            setattr(self, status, getattr(self, status) + 1)

    def add_usage(self, usage: dict[str, TokenUsage]) -> None:
        self.usage = add_usage(self.usage, usage)


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]


class RunError(RuntimeError):
    """The run could not produce anything (e.g. no seed could be encoded)."""


def _redact_url(url: str | None) -> str | None:
    """Drop any user:password@ from a base URL before it is written anywhere."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def models_record(config: ModelSettings, models: dict[str, RoleModel]) -> dict[str, Any]:
    """Each role's model and endpoint for a record (run.json, eval.json), with no secret."""
    return {
        role: {
            "model": model.model_name,
            "base_url": _redact_url(model.chat.openai_api_base),
            "embedded": config.role(role).embedded,
        }
        for role, model in models.items()
    }


def check_fingerprint(out_dir: Path, config: RunConfig) -> None:
    """Refuse to continue a run in ``out_dir`` that was started with other settings."""
    if (out_dir / EVAL_JSON).is_file():
        raise ConfigError(f"{out_dir} holds an evaluation, not a run; use another --out")
    path = out_dir / RUN_JSON
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not valid JSON; use another --out") from None
    if previous.get("fingerprint") != config.fingerprint():
        keys = differing_keys(previous.get("config_fingerprinted", {}), config.fingerprint_fields())
        raise ConfigError(
            f"{out_dir} holds a run with different settings ({', '.join(keys) or 'unknown'}); "
            "use the same settings to resume it, or another --out"
        )
    recorded = previous.get("config") or {}
    for key in RunConfig.GROWABLE:
        before, now = recorded.get(key), getattr(config, key)
        if isinstance(before, int) and now < before:
            raise ConfigError(
                f"{out_dir} holds a run of --{key} {before}; a run can grow but not shrink "
                f"(--{key} {now}); use {before} or more, or another --out"
            )


def initial_state(entry: MetadataEntry | None, instruction: BasicInstruction) -> InstructionState:
    """A thread's first state; the baselines have no metadata entry (``entry`` is None)."""
    return InstructionState(
        id=instruction.id,
        metadata_id=instruction.metadata_id,
        use_case=entry.use_case if entry else "",
        skills=entry.skills if entry else [],
        seed_ids=entry.seed_ids if entry else instruction.seed_ids,
        candidate_actions=entry.actions if entry else [],
        basic_instruction=instruction.instruction,
        instruction=instruction.instruction,
    )


async def _stream(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    graph_input: Any,
    config: RunnableConfig,
    context: Any,
    stats: RunStats,
) -> dict[str, Any]:
    """Run a thread to its end, feeding token usage to the live counters as nodes finish.

    Returns the thread's final values (the last ``values`` event), so the caller needs no
    second read of the checkpoint.
    """
    final: dict[str, Any] = {}
    async for mode, data in graph.astream(
        graph_input,
        config,
        context=context,
        stream_mode=["updates", "values"],
        durability="sync",
    ):
        if mode == "values":
            final = cast(dict[str, Any], data)
            continue
        for node_update in cast(dict[str, Any], data).values():
            if isinstance(node_update, dict) and node_update.get("usage"):
                stats.add_usage(node_update["usage"])
    return final


def needs_another_pass(state: PrepareState, config: RunConfig) -> bool:
    """A finished 'prepare' pass left work a new one can do: failures to retry, a shortfall
    to ask again for, or a budget or pool the user grew."""
    return (
        any(not f.permanent for f in state.failures)
        or len(state.instructions) < config.instructions
        or (bool(state.pool) and len(state.pool) < config.metadata)
    )


async def run_prepare(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    context: PipelineContext,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
) -> PrepareState:
    """Encode, augment, write rubrics, decode: a pass of the 'prepare' thread.

    A pass that was interrupted is resumed; a finished one is taken up again only when
    ``needs_another_pass`` (failed steps are asked again, permanent failures kept).
    """
    cfg = context.config
    config = thread_config(PREPARE_THREAD, max_concurrency=cfg.concurrency)
    snapshot = await graph.aget_state(config)
    if not snapshot.values:
        start = PrepareState(
            method=cfg.method, budget=cfg.instructions, seeds=seeds, user_metadata=user_metadata
        )
        await _stream(graph, start, config, context, stats)
    else:
        state = PrepareState.model_validate(snapshot.values)
        # Judge by our own flag, not ``snapshot.next``: when every task of a step had
        # finished but the step's checkpoint was not yet written, ``next`` is empty.
        if not state.done:
            await _stream(graph, None, config, context, stats)
        elif needs_another_pass(state, cfg):
            new_pass = {
                "done": False,
                "budget": cfg.instructions,
                "passes": state.passes + 1,
                "rounds_this_pass": 0,
                "exhausted": [],
                "failures": Overwrite([f for f in state.failures if f.permanent]),
            }
            await _stream(graph, new_pass, config, context, stats)
    snapshot = await graph.aget_state(config)
    return PrepareState.model_validate(snapshot.values)


async def _reset_failed(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    config: RunnableConfig,
    failed_node: str | None,
    restart_from: dict[str, tuple[str, str]],
) -> None:
    """Make a failed thread's next step its failed node again, as if that node never ran."""
    first = next(iter(restart_from.values()))
    as_node, status = restart_from.get(failed_node or "", first)
    reset = {"status": status, "reason": None, "failed_node": None}
    await graph.aupdate_state(config, reset, as_node=as_node)


async def run_threads(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    context: Any,
    jobs: Iterable[tuple[str, Callable[[], BaseModel]]],
    stats: RunStats,
    restart_from: dict[str, tuple[str, str]],
    finished: tuple[str, ...],
) -> None:
    """Each job's thread to its end, ``concurrency`` workers taking them in turn.

    A job is a thread id and its first state. A fixed set of workers, not one task per
    job: memory does not grow with the run. A thread that finished in an earlier run is
    counted and skipped; one that failed runs its failed node again.
    """
    queue = iter(jobs)

    async def worker() -> None:
        for thread_id, start_state in queue:  # one shared iterator: each job to one worker
            await one(thread_id, start_state)

    async def one(thread_id: str, start_state: Callable[[], BaseModel]) -> None:
        config = thread_config(thread_id)
        snapshot = await graph.aget_state(config)
        status = snapshot.values.get("status")
        if status == "failed":  # retried: a failure may be gone by now (dropped is final)
            await _reset_failed(graph, config, snapshot.values.get("failed_node"), restart_from)
        # Finished means our stored status says so. ``snapshot.next`` is empty too when a
        # kill fell after a step's tasks wrote their results but before its checkpoint.
        elif status in finished:
            stats.count(snapshot.values)  # finished in an earlier run
            return
        start = None if snapshot.values else start_state()
        stats.in_flight += 1
        try:
            final = await _stream(graph, start, config, context, stats)
        finally:
            stats.in_flight -= 1
        stats.count(final)

    await asyncio.gather(*(worker() for _ in range(context.config.concurrency)))


async def run_instructions(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    context: PipelineContext,
    prepared: PrepareState,
    stats: RunStats,
) -> None:
    """Every instruction's thread (see ``run_threads``)."""
    entries = {entry.id: entry for entry in prepared.pool}
    stats.total = len(prepared.instructions)
    jobs = (
        (item.id, partial(initial_state, entries.get(item.metadata_id), item))
        for item in prepared.instructions
    )
    restart_from = RESTART_FROM[context.config.method]
    await run_threads(graph, context, jobs, stats, restart_from, FINISHED)


@dataclass
class Totals:
    """The instructions' outcomes, summed while the outputs are written.

    A run's states are never all held in memory at once: memory stays flat as runs grow.
    """

    instructions: int = 0
    kept: int = 0
    kept_strong: int = 0
    kept_target: int = 0
    kept_by_iteration: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    duplicate: int = 0
    failed: int = 0
    unfinished: int = 0
    usage: dict[str, TokenUsage] = field(default_factory=dict)
    usage_by_node: dict[str, TokenUsage] = field(default_factory=dict)

    def add(self, state: InstructionState) -> None:
        self.instructions += 1
        self.usage = add_usage(self.usage, state.usage)
        self.usage_by_node = add_usage(self.usage_by_node, state.usage_by_node)
        if state.status == "kept":
            self.kept += 1
            self.kept_strong += state.response_source == "strong"
            self.kept_target += state.response_source == "target"
            key = str(state.iteration)
            self.kept_by_iteration[key] = self.kept_by_iteration.get(key, 0) + 1
        elif state.status in ("dropped", "duplicate", "failed"):
            setattr(self, state.status, getattr(self, state.status) + 1)
        else:
            self.unfinished += 1


def _summary(
    config: RunConfig,
    prepared: PrepareState,
    totals: Totals,
    started: float,
    models: dict[str, RoleModel],
    inputs: dict[str, str | None],
) -> dict[str, Any]:
    usage = add_usage(dict(prepared.usage), totals.usage)
    usage_by_node = add_usage(dict(prepared.usage_by_node), totals.usage_by_node)
    origins = [entry.origin for entry in prepared.pool]
    return {
        "codeclm_version": __version__,
        "fingerprint": config.fingerprint(),
        "config": config.model_dump(mode="json"),
        "config_fingerprinted": config.fingerprint_fields(),
        "inputs": inputs,
        "models": models_record(config, models),
        "counts": {
            "seeds": len(prepared.seeds),
            "user_metadata": len(prepared.user_metadata),
            "metadata_pool": len(prepared.pool),
            "metadata_encoded": origins.count("encoded"),
            "metadata_augmented": origins.count("augmented"),
            "instructions_requested": config.instructions,
            "instructions_decoded": len(prepared.accepted) or len(prepared.instructions),
            "repeats_dropped": prepared.repeats,
            "self_instruct_rejected": prepared.rejected,
            "instructions": totals.instructions,
            "kept": totals.kept,
            "kept_strong": totals.kept_strong,
            "kept_target": totals.kept_target,
            "kept_by_iteration": totals.kept_by_iteration,
            "dropped": totals.dropped,
            "duplicates": totals.duplicate,
            "failed": totals.failed,
            "unfinished": totals.unfinished,
        },
        "prepare_failures": [f.model_dump() for f in prepared.failures],
        "usage": {role: u.model_dump() for role, u in sorted(usage.items())},
        "usage_by_node": {key: u.model_dump() for key, u in sorted(usage_by_node.items())},
        "wall_seconds": round(time.monotonic() - started, 2),
    }


class _NearDuplicates:
    """``run --dedup``: a kept pair whose instruction repeats an earlier kept one, by meaning.

    Greedy in instruction order: each kept instruction is compared (embedding cosine) with
    the kept instructions before it that were not duplicates themselves.
    """

    def __init__(self, threshold: float) -> None:
        from codeclm.analysis.embeddings import embedding_model

        self.model = embedding_model()
        self.threshold = threshold
        self.ids: list[str] = []
        self.vectors: list[Any] = []

    def check(self, states: list[InstructionState]) -> list[str | None]:
        """For each state: why it is a duplicate, or None; the others join the kept set."""
        import numpy as np

        reasons: list[str | None] = []
        for state, vector in zip(
            states, self.model.encode([s.instruction for s in states]), strict=True
        ):
            if self.vectors:
                sims = np.stack(self.vectors) @ vector
                best = int(np.argmax(sims))
                if sims[best] >= self.threshold:
                    reasons.append(
                        f"near-duplicate of {self.ids[best]} (cosine {sims[best]:.3f} >= "
                        f"{self.threshold:g})"
                    )
                    continue
            self.ids.append(state.id)
            self.vectors.append(vector)
            reasons.append(None)
        return reasons


async def _write_outputs(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    prepared: PrepareState,
    out_dir: Path,
    dedup: float | None = None,
) -> Totals:
    """The three result files, rebuilt whole from the checkpoints (never appended).

    A few threads' states at a time are read and written out; threads never started are
    left out. With ``dedup``, kept near-duplicates go to dropped.jsonl as 'duplicate'.
    """
    totals = Totals()
    duplicates = _NearDuplicates(dedup) if dedup else None
    with (
        JsonlWriter(out_dir / DATASET) as dataset,
        JsonlWriter(out_dir / DROPPED) as dropped,
        JsonlWriter(out_dir / FAILED) as failed,
    ):

        def flush(kept: list[InstructionState]) -> None:
            reasons = duplicates.check(kept) if duplicates else [None] * len(kept)
            for state, reason in zip(kept, reasons, strict=True):
                if reason is None:
                    totals.add(state)
                    dataset.write(dataset_row(state))
                else:
                    state = state.model_copy(update={"status": "duplicate", "reason": reason})
                    totals.add(state)
                    dropped.write(dropped_row(state))

        batch: list[InstructionState] = []
        for instruction in prepared.instructions:
            snapshot = await graph.aget_state(thread_config(instruction.id))
            if not snapshot.values:
                continue
            state = InstructionState.model_validate(snapshot.values)
            if state.status == "kept":
                batch.append(state)
                if len(batch) == 64:
                    flush(batch)
                    batch = []
                continue
            totals.add(state)
            if state.status in ("dropped", "failed"):
                (dropped if state.status == "dropped" else failed).write(dropped_row(state))
        flush(batch)
    return totals


@dataclass
class Workspace:
    """An output folder opened for work: the roles' models, prompts and the checkpointer."""

    models: dict[str, RoleModel]
    prompts: Prompts
    retry: RetryPolicy
    saver: TimedSqliteSaver


@asynccontextmanager
async def open_workspace(
    config: ModelSettings,
    out_dir: Path,
    check_inputs: Callable[[dict[str, RoleModel], Prompts], None] = lambda m, p: None,
) -> AsyncIterator[Workspace]:
    """Models (and the embedded server if needed), response cache and checkpointer.

    Nothing is written before the endpoints answered the preflight and ``check_inputs``
    (which sees each role's context size) accepted the input.
    """
    prompts = load_prompts(config.prompts_dir)
    shared_limit = asyncio.Semaphore(config.concurrency)
    cache = ResponseCache(out_dir / CACHE) if config.cache else None
    with role_models(config, shared_limit, cache) as built:  # a missing key fails here
        try:
            models = await preflight(built, config)
            check_inputs(models, prompts)
            out_dir.mkdir(parents=True, exist_ok=True)
            if cache is not None:
                await cache.open()
            try:
                async with open_checkpointer(out_dir / CHECKPOINTS) as saver:
                    retry = retry_policy(config.attempts, config.backoff)
                    yield Workspace(models=models, prompts=prompts, retry=retry, saver=saver)
            finally:
                if cache is not None:
                    await cache.close()
        finally:
            for model in built.values():
                await model.aclose()


@dataclass
class OpenRun:
    """A run folder opened for work: models, checkpointer and both compiled graphs."""

    context: PipelineContext
    models: dict[str, RoleModel]
    prepare: CompiledStateGraph[Any, Any, Any, Any]
    instructions: CompiledStateGraph[Any, Any, Any, Any]
    saver: TimedSqliteSaver


def run_context(
    config: RunConfig, models: dict[str, RoleModel], prompts: Prompts
) -> PipelineContext:
    return PipelineContext(
        strong=models["strong"], target=models["target"], prompts=prompts, config=config
    )


@asynccontextmanager
async def open_run(
    config: RunConfig,
    out_dir: Path,
    check_inputs: Callable[[PipelineContext], None] = lambda context: None,
) -> AsyncIterator[OpenRun]:
    """A workspace with the run's two graphs, the instruction graph of the run's method."""
    async with open_workspace(
        config, out_dir, lambda models, prompts: check_inputs(run_context(config, models, prompts))
    ) as space:
        graph = build_instruction_graph(space.retry, config.method, evol_rounds=config.evol_rounds)
        yield OpenRun(
            context=run_context(config, space.models, space.prompts),
            models=space.models,
            prepare=build_prepare_graph(space.retry).compile(checkpointer=space.saver),
            instructions=graph.compile(checkpointer=space.saver),
            saver=space.saver,
        )


async def execute(
    config: RunConfig,
    out_dir: Path,
    *,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    inputs: dict[str, str | None] | None = None,
    seed_locations: list[str] | None = None,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> RunResult:
    """Run (or resume) the whole pipeline into ``out_dir`` and write its outputs.

    ``seed_locations``: where each seed stands in its file (``file:line``), for messages.
    """
    started = time.monotonic()
    inputs = inputs or {}
    check_fingerprint(out_dir, config)
    if config.dedup:
        from codeclm.analysis.embeddings import model_dir

        model_dir()  # the embedding model is there, before anything runs

    def check_seeds_fit(context: PipelineContext) -> None:
        window = context.strong.context_tokens
        if seeds and window:
            overhead = context.prompts.render(
                "encode", instruction="", max_skills=config.max_skills
            )
            where = seed_locations or [f"seed {seed.id}" for seed in seeds]
            located = list(zip(where, seeds, strict=True))
            check_fits_context(located, overhead, window, config.strong.max_tokens, "strong")

    async with open_run(config, out_dir, check_seeds_fit) as run:
        # Record the settings first, so a later run against this folder is checked.
        write_json(
            out_dir / RUN_JSON,
            _summary(config, PrepareState(), Totals(), started, run.models, inputs),
        )

        on_phase("preparing metadata, rubrics and instructions")
        prepared = await run_prepare(run.prepare, run.context, seeds, user_metadata, stats)
        write_jsonl(out_dir / METADATA, (metadata_row(e) for e in prepared.pool))
        if not prepared.instructions:
            totals = await _write_outputs(run.instructions, prepared, out_dir, config.dedup)
            write_json(
                out_dir / RUN_JSON, _summary(config, prepared, totals, started, run.models, inputs)
            )
            reasons = "; ".join(f"{f.step} {f.subject}: {f.reason}" for f in prepared.failures)
            raise RunError(
                f"no instructions were produced ({reasons or 'empty pool'}); "
                "run the same command again to retry what failed"
            )

        on_phase("answering, judging and improving instructions")
        try:
            await run_instructions(run.instructions, run.context, prepared, stats)
        finally:  # on Ctrl-C too: whatever has finished is written out
            totals = await _write_outputs(run.instructions, prepared, out_dir, config.dedup)
            summary = _summary(config, prepared, totals, started, run.models, inputs)
            summary["checkpointing"] = run.saver.stats()
            write_json(out_dir / RUN_JSON, summary)
    return RunResult(out_dir=out_dir, summary=summary)
