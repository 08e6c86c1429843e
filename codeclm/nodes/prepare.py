"""Nodes of the 'prepare' graph: encode seeds → augment the pool → Self-Rubrics and decode.

Encoding, Self-Rubrics and decoding fan out with ``Send`` (one task per seed or metadata
entry), so LangGraph keeps each finished task's result as a pending write: a crash re-runs
only the unfinished tasks. Augmentation is pure and seeded, so re-running it is free.
"""

from __future__ import annotations

import random
import re
from typing import Any

from langgraph.errors import NodeError
from langgraph.runtime import Runtime

from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.client import UnparseableReply, describe_error
from codeclm.nodes.replies import decoded_instructions, encoded_metadata, self_rubrics
from codeclm.state import (
    BasicInstruction,
    EncodedSeed,
    EncodeTask,
    Failure,
    MetadataEntry,
    MetadataTask,
    PrepareState,
    RubricSet,
    spent,
)

_BANNED_WORDS = re.compile(r"\b(skills?|knowledge)\b", re.IGNORECASE)


def clean_label(label: str) -> str:
    """Lower-case a label and strip the words the paper forbids ('skill', 'knowledge')."""
    return " ".join(_BANNED_WORDS.sub(" ", label).lower().split())


def clean_skills(skills: list[str], max_skills: int) -> list[str]:
    cleaned: list[str] = []
    for skill in skills:
        label = clean_label(skill)
        if label and label not in cleaned:
            cleaned.append(label)
    return cleaned[:max_skills]


def _join(items: list[str]) -> str:
    return ", ".join(items)


async def encode_seed(task: EncodeTask, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 1: one seed → its use case and skills (few-shot, structured)."""
    ctx = pipeline_context(runtime)
    prompt = ctx.prompts.render(
        "encode", instruction=task.seed.text, max_skills=ctx.config.max_skills
    )
    reply, usage = await ctx.strong.structured(prompt, encoded_metadata(ctx.config.max_skills))
    use_case = clean_label(reply.use_case)  # type: ignore[attr-defined]
    skills = clean_skills(reply.skills, ctx.config.max_skills)  # type: ignore[attr-defined]
    if not use_case or not skills:
        raise UnparseableReply("encoder gave no usable use case or skills")
    encoded = EncodedSeed(
        seed_index=task.seed_index, seed_id=task.seed.id, use_case=use_case, skills=skills
    )
    return {"encoded": [encoded], **spent("encode_seed", strong=usage)}


def base_pool(state: PrepareState) -> list[MetadataEntry]:
    """The user's metadata, or the encoded seeds with identical metadata merged."""
    if state.user_metadata:
        return [entry.model_copy() for entry in state.user_metadata]
    pool: list[MetadataEntry] = []
    by_key: dict[tuple[str, frozenset[str]], MetadataEntry] = {}
    for item in sorted(state.encoded, key=lambda e: e.seed_index):
        entry = MetadataEntry(
            id=f"m{len(pool):04d}",
            use_case=item.use_case,
            skills=item.skills,
            origin="encoded",
            seed_ids=[item.seed_id],
        )
        if (known := by_key.get(entry.key())) is not None:
            known.seed_ids.append(item.seed_id)
            continue
        by_key[entry.key()] = entry
        pool.append(entry)
    return pool


def augment_pool(
    base: list[MetadataEntry], size: int, max_skills: int, rng: random.Random
) -> list[MetadataEntry]:
    """Step 2: mix and match up to ``size`` entries.

    A use case is drawn from the base entries (so frequent use cases stay frequent, which
    is the tailoring); its skills are drawn *without replacement* from the union of all
    skills. How many skills: the paper is silent; we draw the count from the base entries'
    own counts, so the pool keeps the seeds' shape. Pairs already in the pool are redrawn.
    A base larger than ``size`` is kept whole: dropping encoded seeds would lose coverage.
    """
    pool = list(base)
    if not pool:
        return pool
    known = {entry.key() for entry in pool}
    skill_owner: dict[str, str] = {}
    for entry in base:
        for skill in entry.skills:
            skill_owner.setdefault(skill, entry.seed_ids[0])
    all_skills = sorted(skill_owner)
    attempts = 0
    while len(pool) < size and attempts < size * 50:
        attempts += 1
        donor = rng.choice(base)
        count = min(len(rng.choice(base).skills), max_skills, len(all_skills))
        skills = rng.sample(all_skills, count)
        entry = MetadataEntry(
            id=f"m{len(pool):04d}",
            use_case=donor.use_case,
            skills=skills,
            origin="augmented",
            seed_ids=sorted({donor.seed_ids[0], *(skill_owner[s] for s in skills)}),
        )
        if entry.key() in known:
            continue
        known.add(entry.key())
        pool.append(entry)
    return pool


def allocate_instructions(pool: list[MetadataEntry], total: int, rng: random.Random) -> None:
    """Give each entry an equal share of ``total``; the remainder goes to random entries."""
    if not pool:
        return
    share, remainder = divmod(total, len(pool))
    lucky = set(rng.sample(range(len(pool)), remainder))
    for index, entry in enumerate(pool):
        entry.n_instructions = share + (1 if index in lucky else 0)


def augment(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 2 as a node: pure and seeded, so a re-run gives the same pool."""
    cfg = pipeline_context(runtime).config
    rng = random.Random(cfg.seed)
    pool = augment_pool(base_pool(state), cfg.metadata, cfg.max_skills, rng)
    allocate_instructions(pool, cfg.instructions, rng)
    failures = []
    if not pool:
        failures.append(Failure(step="augment", subject="pool", reason="no seed was encoded"))
    return {"pool": pool, "failures": failures}


async def write_rubrics(task: MetadataTask, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 4, Self-Rubrics: k rubrics and k matching actions, once per metadata entry."""
    ctx = pipeline_context(runtime)
    k = ctx.config.rubrics
    prompt = ctx.prompts.render(
        "rubrics", k=k, use_case=task.entry.use_case, skills=_join(task.entry.skills)
    )
    reply, usage = await ctx.strong.structured(prompt, self_rubrics(k))
    rubric_set = RubricSet(
        metadata_id=task.entry.id,
        rubrics=list(dict.fromkeys(reply.rubrics)),  # type: ignore[attr-defined]
        actions=list(dict.fromkeys(reply.actions)),  # type: ignore[attr-defined]
    )
    return {"rubric_sets": [rubric_set], **spent("write_rubrics", strong=usage)}


async def decode(task: MetadataTask, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 3: N basic instructions for one metadata entry, in one call."""
    ctx = pipeline_context(runtime)
    entry = task.entry
    n = entry.n_instructions
    prompt = ctx.prompts.render("decode", n=n, use_case=entry.use_case, skills=_join(entry.skills))
    reply, usage = await ctx.strong.structured(prompt, decoded_instructions(n))
    unique: list[str] = []
    for text in reply.instructions:  # type: ignore[attr-defined]
        if text.casefold() not in {u.casefold() for u in unique}:
            unique.append(text)
    decoded = [
        BasicInstruction(id=f"{entry.id}-{j:02d}", metadata_id=entry.id, instruction=text)
        for j, text in enumerate(unique[:n])
    ]
    return {"decoded": decoded, **spent("decode", strong=usage)}


def finalize(state: PrepareState) -> dict[str, Any]:
    """Join: attach each entry's rubrics, order the instructions, mark the pool done."""
    rubrics = {r.metadata_id: r for r in state.rubric_sets}
    pool = []
    for entry in state.pool:
        rubric_set = rubrics.get(entry.id)
        if rubric_set is not None:
            entry = entry.model_copy(
                update={"rubrics": rubric_set.rubrics, "actions": rubric_set.actions}
            )
        pool.append(entry)
    instructions = sorted(state.decoded, key=lambda i: i.id)
    return {"pool": pool, "instructions": instructions, "done": True}


def record_prepare_failure(state: Any, error: NodeError) -> dict[str, Any]:
    """Error handler: a seed or entry whose step failed after retries is recorded, not fatal."""
    subject = "run"
    if isinstance(state, EncodeTask):
        subject = state.seed.id
    elif isinstance(state, MetadataTask):
        subject = state.entry.id
    failure = Failure(step=error.node, subject=subject, reason=describe_error(error.error))
    return {"failures": [failure]}
