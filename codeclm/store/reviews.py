"""A person's reviews, kept with the run in its store: typed reads and writes.

Two kinds: the metadata pool's review (a ``draft`` a person builds up, then the ``approved``
decision the waiting run resumes with) and one review per kept pair. Runs only read them,
so a re-run never overwrites one; they live in the store (``reviews.sqlite`` in the run
folder, or a table of the run's PostgreSQL schema), beside the checkpoints they refer to.
"""

from __future__ import annotations

from codeclm.rows import PairReview
from codeclm.state import PoolReview
from codeclm.store.base import Store

POOL, PAIR = "pool", "pair"
DRAFT, APPROVED = "draft", "approved"


class Reviews:
    """The reviews of one run, over its store. ``where``: how commands name the run (its
    folder, or ``--store URL --run NAME``), for messages."""

    def __init__(self, store: Store, where: str = "DIR") -> None:
        self.store = store
        self.where = where

    async def pool_draft(self) -> PoolReview:
        """The pool review being built (empty: every entry as the model made it)."""
        body = (await self.store.read_reviews(POOL)).get(DRAFT)
        return PoolReview.model_validate(body) if body else PoolReview()

    async def save_pool_draft(self, review: PoolReview) -> None:
        await self.store.save_review(POOL, DRAFT, review.model_dump(mode="json"))

    async def approved_pool(self) -> PoolReview | None:
        """The decision a run waiting for review resumes with, once a person approved."""
        body = (await self.store.read_reviews(POOL)).get(APPROVED)
        return PoolReview.model_validate(body) if body is not None else None

    async def approve_pool(self, review: PoolReview) -> None:
        await self.store.save_review(POOL, APPROVED, review.model_dump(mode="json"))

    async def pairs(self) -> dict[str, PairReview]:
        """Every pair's latest review, by instruction id."""
        rows = await self.store.read_reviews(PAIR)
        return {ident: PairReview.model_validate(body) for ident, body in rows.items()}

    async def save_pair(self, review: PairReview) -> None:
        await self.store.save_review(PAIR, review.id, review.model_dump(mode="json"))

    async def withdraw_pair(self, ident: str) -> None:
        await self.store.save_review(PAIR, ident, None)
