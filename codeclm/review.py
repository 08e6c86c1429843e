"""A person's review of a run: the metadata pool before decoding, and the kept pairs after.

One place for what ``codeclm review`` and the ``codeclm view`` page both do, each change
checked before it is stored (a malformed one is refused with a message, nothing kept):

- the pool, while a ``--review metadata`` run waits for it: drop, edit or add entries in a
  *draft*, then approve (the draft, or every entry as the model made it); the waiting run
  resumes with exactly that pool (``engine.prepare.wait_for_approval``);
- a kept pair: accept or reject it, edit its instruction or response, with a note.

Reviews live in the run's store (``store.reviews``) and are only ever written here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from codeclm.handle import RunHandle, RunView
from codeclm.nodes.review import ReviewError, apply_pool_review, waits_for_review
from codeclm.outputs import CHECKPOINTS
from codeclm.rows import PairReview, Verdict
from codeclm.state import EntryEdit, InstructionState, MetadataEntry, PoolReview, PrepareState

PoolPhase = Literal["not asked", "not built yet", "waiting", "approved"]


@dataclass
class PoolStatus:
    """Where the pool's review stands, and the pool as the draft would leave it."""

    phase: PoolPhase
    pool: list[MetadataEntry]
    """The pool as the model made it (waiting), or as approved (approved)."""
    draft: PoolReview
    preview: list[MetadataEntry]
    """``pool`` with the draft applied (waiting); else ``pool``."""
    problem: str | None = None
    """Why the draft cannot apply as it stands (it was checked when stored; an entry it
    names may have changed since), or None."""

    @property
    def changes(self) -> str:
        """What the draft changes, in words; "" when it changes nothing."""
        return draft_changes(self.draft)


class RunSession:
    """A run opened for reading and reviewing (no lease is taken, no model is called)."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.store = view.store
        self.config = view.handle.config
        self.reviews = view.reviews
        self.prepare = view.prepare
        self.instructions = view.instructions

    @property
    def max_skills(self) -> int:
        return self.config.max_skills

    async def prepared(self) -> PrepareState | None:
        """The 'prepare' thread's state (None before the run started it)."""
        return await self.view.prepared()

    async def instruction_state(self, ident: str) -> InstructionState | None:
        return await self.view.instruction_state(ident)

    # ---- the metadata pool ------------------------------------------------------------

    async def pool_status(self) -> PoolStatus:
        state = await self.prepared()
        draft = await self.reviews.pool_draft()
        if state is not None and state.pool_review is not None:  # the run took it up
            return PoolStatus("approved", state.pool, state.pool_review, state.pool)
        asked = self.config.review == "metadata"
        pool = state.pool if state else []
        if not asked or state is None or not waits_for_review(state, "metadata"):
            return PoolStatus("not asked" if not asked else "not built yet", pool, draft, pool)
        if not pool:
            return PoolStatus("not built yet", pool, draft, pool)
        if (approved := await self.reviews.approved_pool()) is not None:  # not taken up yet
            return PoolStatus("approved", pool, approved, self._apply(pool, approved)[0])
        preview, problem = self._apply(pool, draft)
        return PoolStatus("waiting", pool, draft, preview, problem)

    def _apply(
        self, pool: list[MetadataEntry], review: PoolReview
    ) -> tuple[list[MetadataEntry], str | None]:
        try:
            return apply_pool_review(pool, review, self.max_skills), None
        except ReviewError as exc:
            return pool, str(exc)

    async def _waiting_pool(self) -> tuple[list[MetadataEntry], PoolReview]:
        status = await self.pool_status()
        if status.phase != "waiting":
            raise ReviewError(
                {
                    "not asked": "this run does not wait for a review of its pool "
                    "(start it with --review metadata)",
                    "not built yet": "the metadata pool is not built yet: the run waits for "
                    "review once every seed is encoded",
                    "approved": "the metadata pool was approved already",
                }[status.phase]
            )
        return status.pool, status.draft

    async def edit_pool(
        self,
        *,
        drop: Sequence[str] = (),
        keep: Sequence[str] = (),
        edit: dict[str, EntryEdit] | None = None,
        add: Sequence[EntryEdit] = (),
        note: str | None = None,
        reviewer: str = "",
    ) -> PoolStatus:
        """Change the draft; refused (and nothing stored) if the result would not apply.

        ``keep`` takes a drop back; an edit of an entry merges with its earlier edit.
        """
        pool, draft = await self._waiting_pool()
        dropped = [i for i in draft.dropped if i not in keep]
        dropped += [i for i in drop if i not in dropped]
        edited = dict(draft.edited)
        for ident, change in (edit or {}).items():
            before = edited.get(ident, EntryEdit())
            edited[ident] = before.model_copy(update=change.model_dump(exclude_none=True))
        added = list(draft.added)
        for change in add:
            added.append(
                MetadataEntry(
                    id=f"r{len(added):04d}",
                    use_case=change.use_case or "",
                    skills=change.skills or [],
                    origin="review",
                )
            )
        new = PoolReview(
            dropped=dropped,
            edited=edited,
            added=added,
            note=draft.note if note is None else note,
            reviewer=reviewer or draft.reviewer,
        )
        apply_pool_review(pool, new, self.max_skills)  # raises: nothing stored
        await self.reviews.save_pool_draft(new)
        return await self.pool_status()

    async def approve_pool(
        self, *, as_built: bool = False, discard_draft: bool = False, reviewer: str = ""
    ) -> list[MetadataEntry]:
        """Approve the draft (``as_built``: every entry as the model made it); the waiting
        run resumes with exactly the returned pool.

        A person's draft is never set aside silently: ``as_built`` over a draft that changes
        the pool is refused, naming its changes, unless ``discard_draft`` says to."""
        pool, draft = await self._waiting_pool()
        if as_built and not discard_draft and (changes := draft_changes(draft)):
            raise ReviewError(
                f"the draft {changes}: approve it with --approve, or set it aside on purpose "
                "with --approve-all --discard-draft"
            )
        review = PoolReview(note=draft.note) if as_built else draft
        review = review.model_copy(update={"reviewer": reviewer or draft.reviewer})
        approved = apply_pool_review(pool, review, self.max_skills)
        await self.reviews.approve_pool(review)
        return approved

    # ---- the kept pairs ---------------------------------------------------------------

    async def check_pair(
        self, ident: str, instruction: str | None = None, response: str | None = None
    ) -> None:
        """Refuse a review of a pair that is not kept, or an edit to empty text."""
        state = await self.instruction_state(ident)
        if state is None:
            raise ReviewError(f"no instruction {ident!r} in this run (see: codeclm inspect)")
        if state.status != "kept":
            raise ReviewError(f"{ident} is {state.status}, not kept: only kept pairs are reviewed")
        for name, text in (("instruction", instruction), ("response", response)):
            if text is not None and not text.strip():
                raise ReviewError(f"{ident}: the edited {name} cannot be empty")

    async def review_pair(
        self,
        ident: str,
        verdict: Verdict | None = None,
        *,
        instruction: str | None = None,
        response: str | None = None,
        note: str | None = None,
        reviewer: str = "",
    ) -> PairReview:
        """Accept, reject or edit one kept pair. Without a verdict, an earlier one stands
        (a pair reviewed for the first time is accepted); so do its earlier edits and note."""
        await self.check_pair(ident, instruction, response)
        before = (await self.reviews.pairs()).get(ident)
        review = PairReview(
            id=ident,
            verdict=verdict or (before.verdict if before else "accepted"),
            instruction=instruction if instruction is not None else _kept(before, "instruction"),
            response=response if response is not None else _kept(before, "response"),
            note=note if note is not None else (before.note if before else ""),
            reviewed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            reviewer=reviewer,
        )
        await self.reviews.save_pair(review)
        return review


def draft_changes(draft: PoolReview) -> str:
    """What a draft changes, in words ("drops m0001, edits m0003 and adds 1 entry"), or ""."""
    parts = []
    if draft.dropped:
        parts.append(f"drops {', '.join(draft.dropped)}")
    if draft.edited:
        parts.append(f"edits {', '.join(draft.edited)}")
    if draft.added:
        parts.append(f"adds {len(draft.added)} entr{'y' if len(draft.added) == 1 else 'ies'}")
    return (
        ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + (parts[-1] if parts else "")
    )


def _kept(before: PairReview | None, field: str) -> str | None:
    return getattr(before, field) if before is not None else None


@asynccontextmanager
async def open_session(handle: RunHandle) -> AsyncIterator[RunSession]:
    """The run, opened for review."""
    async with handle.read() as view:
        yield RunSession(view)


async def pair_reviews(handle: RunHandle) -> dict[str, PairReview]:
    """The pair reviews of the run (none when it holds no store)."""
    if not handle.spec.shared and not handle.folder_has(CHECKPOINTS):
        return {}
    async with open_session(handle) as session:
        return await session.reviews.pairs()


def entry_edit(fields: dict[str, Any]) -> EntryEdit:
    """An ``EntryEdit`` from ``field=value`` pairs; skills as a list or comma-separated."""
    unknown = set(fields) - {"use_case", "skills"}
    if unknown:
        raise ReviewError(f"{', '.join(sorted(unknown))}: a metadata entry has use_case and skills")
    skills = fields.get("skills")
    if isinstance(skills, str):
        skills = [s.strip() for s in skills.split(",") if s.strip()]
    return EntryEdit(use_case=fields.get("use_case"), skills=skills)


__all__ = ["PoolStatus", "ReviewError", "RunSession", "entry_edit", "open_session", "pair_reviews"]
