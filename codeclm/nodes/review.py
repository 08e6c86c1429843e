"""The paper's human check of the metadata pool, as a step of the 'prepare' graph.

``run --review metadata`` puts ``review_pool`` between augmentation and decoding: it stops
the thread with a LangGraph ``interrupt`` carrying the pool, and the engine resumes it with
the reviewer's approved ``PoolReview`` (``codeclm view`` or ``codeclm review``). The node
applies that decision, so the pool every decode and Self-Rubrics call sees is exactly the
approved one. ``apply_pool_review`` is also how a draft is checked before it is stored: a
malformed edit is refused there, with a message, and nothing is kept.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from codeclm.analysis.labels import clean_label, clean_skills
from codeclm.config import ConfigError
from codeclm.context import PipelineContext, pipeline_context
from codeclm.state import EntryEdit, MetadataEntry, PoolReview, PrepareState


class ReviewError(ConfigError):
    """A review that cannot apply (unknown id, empty label, a repeat): nothing is stored."""


def reviewed_entry(entry: MetadataEntry, edit: EntryEdit, max_skills: int) -> MetadataEntry:
    """``entry`` with a reviewer's fields, cleaned as the encoder's labels are."""
    update: dict[str, Any] = {}
    if edit.use_case is not None:
        update["use_case"] = clean_label(edit.use_case)
        if not update["use_case"]:
            raise ReviewError(f"{entry.id}: the use case cannot be empty")
    if edit.skills is not None:
        update["skills"] = clean_skills(edit.skills, max_skills)
        if not update["skills"]:
            raise ReviewError(f"{entry.id}: an entry needs at least one skill")
        if len({clean_label(s) for s in edit.skills if clean_label(s)}) > max_skills:
            raise ReviewError(f"{entry.id}: at most {max_skills} skills (max_skills)")
    return entry.model_copy(update=update)


def apply_pool_review(
    pool: list[MetadataEntry], review: PoolReview, max_skills: int
) -> list[MetadataEntry]:
    """The approved pool: ``pool`` less the dropped entries, edits applied, additions last.

    Raises ``ReviewError`` for an id the pool does not hold, an empty label, an entry that
    would repeat another (same use case and skills), or a pool left empty.
    """
    known = {entry.id for entry in pool} | {entry.id for entry in review.added}
    for ident in [*review.dropped, *review.edited]:
        if ident not in known:
            raise ReviewError(f"no metadata entry {ident!r} in the pool")
    dropped = set(review.dropped)
    result: list[MetadataEntry] = []
    seen: dict[tuple[str, frozenset[str]], str] = {}
    for entry in [*pool, *review.added]:
        if entry.id in dropped:
            continue
        edit = review.edited.get(entry.id)
        if entry.origin == "review" and edit is None:
            edit = EntryEdit(use_case=entry.use_case, skills=entry.skills)  # checked as edits
        if edit is not None:
            entry = reviewed_entry(entry, edit, max_skills)
        if (other := seen.get(entry.key())) is not None:
            raise ReviewError(f"{entry.id} would repeat {other} ({entry.use_case})")
        seen[entry.key()] = entry.id
        result.append(entry)
    if not result:
        raise ReviewError("the approved pool would be empty: keep or add at least one entry")
    return result


def waits_for_review(state: PrepareState, review: str) -> bool:
    """This pass stops for a review: asked for, not given yet, and nothing decoded."""
    return review == "metadata" and state.pool_review is None and not state.decoded


def review_pool(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Wait (an ``interrupt``) for a person's decision on the pool, then apply it.

    The interrupt's value is the pool, for any LangGraph client; the resume value is a
    ``PoolReview``. Re-run from the top on resume, as every interrupted node is.
    """
    cfg = pipeline_context(runtime).config
    if not waits_for_review(state, cfg.review):
        return {}
    decision = interrupt({"pool": [entry.model_dump(mode="json") for entry in state.pool]})
    review = PoolReview.model_validate(decision)
    return {
        "pool": apply_pool_review(state.pool, review, cfg.max_skills),
        "pool_review": review,
    }
