"""Steps 1 and 2 as nodes of the 'prepare' graph: encode the seeds, then augment the pool.

Encoding fans out with ``Send`` (a task per seed, or per few seeds in a large run); after a
crash a task runs again and its finished calls come from the response cache. Augmentation
is pure and seeded, so re-running it is free.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from codeclm.analysis.labels import clean_label, clean_skills
from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.parsing import UnparseableReply
from codeclm.llm.reply import describe_error, is_permanent, is_transient
from codeclm.nodes.fields import encode_fields_text, read_extra
from codeclm.nodes.replies import encoded_metadata
from codeclm.prepare.pool import augment_pool, base_pool, encoded_labels, updated_pool
from codeclm.state import EncodedSeed, EncodeTask, Failure, PrepareState, Seed, TokenUsage, spent
from codeclm.steps import Step

EncodeNode = Callable[[EncodeTask, Runtime[PipelineContext]], Awaitable[dict[str, Any]]]


ENCODE_SEED = Step(
    name="encode_seed",
    prompts=("encode",),
    output_tokens=60,
    reply="EncodedMetadata",
    unit="seeds",
    calls=lambda scale: (scale.seeds, scale.seeds),
    typical=lambda t: t.render("encode", instruction=t.seed, max_skills=t.config.max_skills),
    runs_for=lambda method: method.makes_metadata,
)


def encode_seed_node(max_attempts: int) -> EncodeNode:
    """The ``encode_seed`` node of a graph whose retry policy makes ``max_attempts``."""

    async def encode_seed(task: EncodeTask, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
        return await encode_seeds(task, runtime, max_attempts)

    return ENCODE_SEED.node(encode_seed)


async def encode_seeds(
    task: EncodeTask, runtime: Runtime[PipelineContext], max_attempts: int
) -> dict[str, Any]:
    """Step 1: each seed of the task → its use case and at most ``max_skills`` skills.

    A task's seeds are asked side by side. A failure worth another attempt fails the task
    (LangGraph's retry policy asks again; the seeds answered come from the response cache,
    or are paid again with ``--no-cache``), until the last of ``max_attempts``: then each
    seed that failed is recorded with its own reason, as the error handler records a
    task's, and the others are kept.
    """
    ctx = pipeline_context(runtime)
    seeds = task.seeds()
    results = await asyncio.gather(
        *(_encode_one(ctx, index, seed) for index, seed in seeds), return_exceptions=True
    )
    info = runtime.execution_info
    last = info is None or info.node_attempt >= max_attempts
    encoded: list[EncodedSeed] = []
    failures: list[Failure] = []
    usage = TokenUsage()
    for (_, seed), result in zip(seeds, results, strict=True):
        if isinstance(result, tuple):
            encoded.append(result[0])
            usage = usage + result[1]
        elif not isinstance(result, Exception) or (is_transient(result) and not last):
            raise result
        else:
            reason, permanent = describe_error(result), is_permanent(result)
            failures.append(
                Failure(step="encode_seed", subject=seed.id, reason=reason, permanent=permanent)
            )
    return {"encoded": encoded, "failures": failures, **spent("encode_seed", strong=usage)}


async def _encode_one(
    ctx: PipelineContext, index: int, seed: Seed
) -> tuple[EncodedSeed, TokenUsage]:
    fields = tuple(ctx.config.metadata_fields)
    prompt = ctx.prompts.render(
        "encode",
        instruction=seed.text,
        max_skills=ctx.config.max_skills,
        fields=encode_fields_text(fields),
    )
    # The run's own sampling seed every time: a seed retried by a later run sends the very
    # request it would have sent, so the pool comes out as an uninterrupted run's.
    schema = encoded_metadata(ctx.config.max_skills, fields)
    reply, usage = await ctx.strong.structured(prompt, schema)
    use_case = clean_label(reply.use_case)  # type: ignore[attr-defined]
    skills = clean_skills(reply.skills, ctx.config.max_skills)  # type: ignore[attr-defined]
    if not use_case or not skills:
        raise UnparseableReply("encoder gave no usable use case or skills")
    encoded = EncodedSeed(
        seed_index=index,
        seed_id=seed.id,
        use_case=use_case,
        skills=skills,
        extra=read_extra(reply, fields),
    )
    return encoded, usage


def augment(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 2 as a node: pure and seeded, so a re-run gives the same pool.

    Before the first pool is built, the encoded labels are merged into canonical ones
    (``label_similarity``); the map is kept in the state (and run.json), the raw labels in
    ``encoded``. A run whose pool was built before canonical labels existed keeps its own.

    The pool is built once every seed is encoded (or refused for good): mixing and
    matching draws on all of them, so a seed that failed for a passing reason holds it
    back until a re-run encodes it. A grown ``--metadata`` extends the pool; the entries
    it had (and their instructions) stay as they are. So does ``run --update``, whose new
    seeds' entries follow their own distribution (``pool.updated_pool``).
    """
    cfg = pipeline_context(runtime).config
    encoded = {item.seed_id for item in state.encoded}
    left_out = {f.subject for f in state.failures if f.step == "encode_seed" and f.permanent}
    if any(s.id not in encoded and s.id not in left_out for s in state.seeds):
        return {}  # the failures say which seeds; a re-run encodes them
    if state.updates and state.updates[-1].pool_start < 0:  # run --update: new seeds
        fields = tuple(cfg.metadata_fields)
        return updated_pool(
            state, state.updates[-1], cfg.label_similarity, cfg.max_skills, cfg.seed, fields
        )
    if state.pool and (len(state.pool) >= cfg.metadata or state.pool_review is not None):
        return {}  # (a reviewed pool is the one the person approved)
    update: dict[str, Any] = {}
    labels = state.label_map
    if labels is None and not state.pool and not state.user_metadata:
        labels = update["label_map"] = encoded_labels(state.encoded, cfg.label_similarity)
    base = base_pool(state, labels)
    if not base:
        return {"failures": [Failure(step="augment", subject="pool", reason="no seed was encoded")]}
    grown = augment_pool(
        base,
        cfg.metadata,
        cfg.max_skills,
        random.Random(cfg.seed),
        tuple(cfg.metadata_fields),
    )
    return {**update, "pool": state.pool + grown[len(state.pool) :]}
