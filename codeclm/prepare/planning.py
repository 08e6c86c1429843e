"""Pure bookkeeping of the 'prepare' loop: who decodes how many, and what counts as new.

No model calls here, so every function is deterministic and cheap to re-run on resume.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from codeclm.analysis.metrics import NoveltyFilter, tokens
from codeclm.methods import method_spec
from codeclm.state import BasicInstruction, MetadataEntry, RubricSet

_ENUMERATION = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|[a-z][.)])\s+", re.IGNORECASE)
_NON_WORD = re.compile(r"[\W_]+")


def normalized(text: str) -> str:
    """The text as a repeat check sees it: no list marker, case, punctuation or spacing."""
    return " ".join(_NON_WORD.sub(" ", _ENUMERATION.sub("", text).casefold()).split())


def distinct(items: Iterable[str], known: Iterable[str] = ()) -> list[str]:
    """``items`` in order without normalised repeats of each other or of ``known``."""
    seen = {normalized(text) for text in known}
    kept = []
    for text in items:
        key = normalized(text)
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def _key(text: str) -> bytes:
    """A stable 8-byte digest of a normalised text (collisions: ~1e-11 at 10^4 texts)."""
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def shares(
    pool: Sequence[MetadataEntry],
    floors: dict[str, int],
    capped: set[str],
    total: int,
    seed: int,
) -> dict[str, int]:
    """Each entry's share of ``total``: as equal as possible, never below what it has.

    Water-filling: units go one at a time to the entry with the fewest, ties broken by a
    seeded key per entry (so the remainder lands on random entries, and the same run
    always picks the same ones). ``capped`` entries (their model gave no new instruction)
    keep what they have; their part goes to the others. A fresh pool gets the paper's
    equal shares; a grown budget or pool tops up the smallest first.
    """
    targets = {entry.id: floors.get(entry.id, 0) for entry in pool}
    remaining = total - sum(targets.values())
    heap = [
        (targets[entry.id], random.Random(f"{seed}:share:{entry.id}").random(), entry.id)
        for entry in pool
        if entry.id not in capped
    ]
    heapq.heapify(heap)
    while remaining > 0 and heap:
        count, tie, ident = heapq.heappop(heap)
        targets[ident] = count + 1
        remaining -= 1
        heapq.heappush(heap, (count + 1, tie, ident))
    return targets


class Acceptance:
    """Which decoded instructions count, offered one at a time in rank order.

    A repeat is the same normalised text as any accepted instruction in the pool, or a
    ROUGE-L of at least ``similarity`` (the Self-Instruct measure) with one of the same
    metadata entry, where near copies come from (the same prompt, asked again). Across
    entries only exact repeats are looked for: a pool-wide ROUGE check grows with the
    square of the run (``run --dedup`` compares kept pairs by meaning). No entry gets more
    than its ``targets`` share. Whether an item counts depends only on the items offered
    before it, so the engine can decide an early entry's items before the rest of its
    round has come back.
    """

    def __init__(
        self,
        similarity: float,
        targets: dict[str, int],
        accepted: Iterable[BasicInstruction] = (),
    ) -> None:
        self.targets = targets
        self.similarity = similarity
        self.seen: set[bytes] = set()
        """Digests of the accepted texts, normalised: a tenth of the texts' memory."""
        self.novelty: dict[str, NoveltyFilter] = {}
        self.unindexed: dict[str, list[str]] = {}
        """Accepted texts of entries no item was offered for yet: a round offers items of
        the few entries still short, so only theirs are indexed (memory stays flat)."""
        self.per_entry: Counter[str] = Counter()
        self.repeats = 0
        for item in accepted:
            self._take(item)

    def _take(self, item: BasicInstruction) -> None:
        self.seen.add(_key(normalized(item.instruction)))
        ident = item.metadata_id
        if ident in self.novelty:
            self.novelty[ident].add(tokens(item.instruction))
        else:
            self.unindexed.setdefault(ident, []).append(item.instruction)
        self.per_entry[ident] += 1

    def _novelty(self, entry_id: str) -> NoveltyFilter:
        if entry_id not in self.novelty:
            texts = self.unindexed.pop(entry_id, [])
            self.novelty[entry_id] = NoveltyFilter(self.similarity, texts)
        return self.novelty[entry_id]

    def offer(self, item: BasicInstruction) -> bool:
        """Whether ``item`` counts (and it is then remembered as accepted)."""
        if self.per_entry[item.metadata_id] >= self.targets.get(item.metadata_id, 0):
            return False  # more than its share (a smaller share after a pool grew): unused
        key = normalized(item.instruction)
        near = not self._novelty(item.metadata_id).is_novel(tokens(item.instruction))
        if not key or _key(key) in self.seen or near:
            self.repeats += 1
            return False
        self._take(item)
        return True


def rank(item: BasicInstruction, order: dict[str, int]) -> tuple[int, int, int]:
    """Earlier rounds first, then pool order, then each entry's own order: what was accepted
    in one round stays accepted in the next."""
    return (item.round, order.get(item.metadata_id, 0), item.index)


def accept_round(
    accepted: Sequence[BasicInstruction],
    decoded: Iterable[BasicInstruction],
    order: dict[str, int],
    targets: dict[str, int],
    similarity: float,
) -> tuple[list[BasicInstruction], int]:
    """The items of ``decoded`` that are no repeat of an earlier one (of ``accepted``, the
    earlier rounds', or of this round's ranked before it), and how many were.

    Earlier rounds rank first, so what they accepted stays accepted and only this round's
    items are offered: the same answer as ranking everything again, for one round's cost.
    """
    acceptance = Acceptance(similarity, targets, accepted)
    ranked = sorted(decoded, key=lambda item: rank(item, order))
    return [item for item in ranked if acceptance.offer(item)], acceptance.repeats


def with_rubrics(
    pool: Sequence[MetadataEntry],
    rubric_sets: Sequence[RubricSet],
    exhausted: Sequence[str] = (),
) -> list[MetadataEntry]:
    """The pool with each entry's Self-Rubrics (rubrics and actions) attached, where written,
    and a note on each entry that came up short (Self-Rubrics stalled, or ``exhausted``:
    it gave no new unique instruction before its share was full)."""
    written = {r.metadata_id: r for r in rubric_sets}
    dry = set(exhausted)
    entries = []
    for entry in pool:
        update: dict[str, object] = {}
        if (r := written.get(entry.id)) is not None:
            update = {"rubrics": r.rubrics, "actions": r.actions, "note": r.note}
        if entry.id in dry:
            ran_dry = "its model gave no new unique instruction: the rest of its share went "
            ran_dry += "to other entries"
            update["note"] = "; ".join(filter(None, [update.get("note"), ran_dry]))  # type: ignore[list-item]
        entries.append(entry.model_copy(update=update) if update else entry)
    return entries


def ready_instructions(
    method: str,
    pool: Sequence[MetadataEntry],
    accepted: Sequence[BasicInstruction],
    rubric_sets: Sequence[RubricSet],
) -> list[tuple[MetadataEntry | None, BasicInstruction]]:
    """The accepted instructions whose thread can start, each with its entry (and actions).

    An instruction waits for its entry's Self-Rubrics where the method uses them; the
    baselines' instructions have no entry.
    """
    spec = method_spec(method)
    if not spec.makes_metadata:
        return [(None, item) for item in accepted]
    written = {r.metadata_id for r in rubric_sets if r.usable}
    entries = {
        entry.id: entry
        for entry in with_rubrics(pool, rubric_sets)
        if entry.id in written or not spec.uses_rubrics
    }
    return [(entries[i.metadata_id], i) for i in accepted if i.metadata_id in entries]
