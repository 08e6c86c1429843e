"""The metadata pool, built pure and seeded from the encoded seeds (step 2 of the method).

The encoder's labels are merged into canonical ones (``encoded_labels``), seeds with the
same metadata become one base entry (``base_pool``), and mix-and-match fills the pool up to
``--metadata`` following the seeds' use-case and skill distribution (``augment_pool``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from codeclm.analysis.embeddings import EmbeddingsUnavailable
from codeclm.analysis.labels import canonical_labels
from codeclm.config import MetadataField
from codeclm.state import EncodedSeed, Extra, LabelMap, MetadataEntry, PrepareState, Update


def encoded_labels(
    encoded: list[EncodedSeed], threshold: float, earlier: LabelMap | None = None
) -> LabelMap:
    """The encoded labels' canonical forms (``analysis.labels``), counted by seed.

    ``earlier``: the map of a run being updated, and ``encoded`` its new seeds only: the
    labels the run already has stay canonical (they are ranked first), and a new spelling
    of one of them maps onto it. Without the embedding model installed, spelling is
    normalised only (threshold 1).
    """
    use_cases = Counter(item.use_case for item in encoded)
    skills = Counter(skill for item in encoded for skill in item.skills)
    earlier = earlier or LabelMap(threshold=threshold)
    anchors = {
        "use_case": Counter({label: _ANCHOR for label in set(earlier.use_case.values())}),
        "skills": Counter({label: _ANCHOR for label in set(earlier.skills.values())}),
    }
    try:
        merged = {
            kind: canonical_labels(counts + anchors[kind], threshold)
            for kind, counts in (("use_case", use_cases), ("skills", skills))
        }
    except EmbeddingsUnavailable:
        threshold = 1.0
        merged = {
            kind: canonical_labels(counts, 1.0)
            for kind, counts in (("use_case", use_cases), ("skills", skills))
        }
    return LabelMap(
        threshold=threshold,
        use_case={**earlier.use_case, **_only(merged["use_case"], use_cases)},
        skills={**earlier.skills, **_only(merged["skills"], skills)},
    )


_ANCHOR = 10**6
"""A canonical label of an earlier run counts as this many seeds: it keeps its name."""


def _only(mapping: dict[str, str], raw: Counter[str]) -> dict[str, str]:
    return {label: canonical for label, canonical in mapping.items() if label in raw}


def base_pool(
    state: PrepareState,
    labels: LabelMap | None = None,
    encoded: list[EncodedSeed] | None = None,
    start: int = 0,
) -> list[MetadataEntry]:
    """The user's metadata, or the encoded seeds (``encoded``: these only) in canonical
    labels, identical metadata merged (one entry, all its seed ids), numbered from
    ``start``."""
    if state.user_metadata:
        return [entry.model_copy() for entry in state.user_metadata]
    labels = labels or LabelMap()
    pool: list[MetadataEntry] = []
    by_key: dict[tuple[str, frozenset[str]], MetadataEntry] = {}
    for item in sorted(state.encoded if encoded is None else encoded, key=lambda e: e.seed_index):
        entry = MetadataEntry(
            id=f"m{start + len(pool):04d}",
            use_case=labels.use_case_of(item.use_case),
            skills=labels.skills_of(item.skills),
            origin="encoded",
            seed_ids=[item.seed_id],
            extra=item.extra,
        )
        if (known := by_key.get(entry.key())) is not None:
            known.seed_ids.append(item.seed_id)
            continue
        by_key[entry.key()] = entry
        pool.append(entry)
    return pool


SPREAD, MAX_SPREAD, RETRIES = 0.05, 1000.0, 8
"""Weight every label gets besides its shortfall; doubled after every ``RETRIES`` draws in
a row of pairs already in the pool (up to a near-uniform draw), reset after a new one."""


class _Mix:
    """One kind of label (use cases, skills, a declared field): its share of the seeds and
    its count in the pool so far; draws favour the labels furthest behind their share."""

    def __init__(self) -> None:
        self.seeds: Counter[str] = Counter()
        self.have: Counter[str] = Counter()

    def draw(
        self, rng: random.Random, k: int, spread: float, among: set[str] | None = None
    ) -> list[str]:
        """``k`` distinct labels (from ``among``, if given), without replacement."""
        total_seeds = sum(self.seeds.values())
        slots = sum(self.have.values()) + k
        chosen: list[str] = []
        for _ in range(k):
            left = [
                x for x in sorted(self.seeds) if x not in chosen and (among is None or x in among)
            ]
            if not left:
                break
            weights = [
                max(self.seeds[x] / total_seeds * slots - self.have[x], 0.0) + spread for x in left
            ]
            chosen.append(rng.choices(left, weights)[0])
        return chosen


@dataclass
class _SeedMix:
    """The seeds' distribution the pool follows: how many seeds each use case, skill and
    declared field value comes from, which values each use case has (``within`` fields),
    which seed first showed each skill, and the base entries under each use case."""

    use_cases: _Mix = field(default_factory=_Mix)
    skills: _Mix = field(default_factory=_Mix)
    fields: dict[str, _Mix] = field(default_factory=dict)
    under: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    skill_owner: dict[str, str] = field(default_factory=dict)
    donors: dict[str, list[MetadataEntry]] = field(default_factory=dict)

    @classmethod
    def of(cls, base: list[MetadataEntry], fields: tuple[MetadataField, ...]) -> _SeedMix:
        mix = cls(fields={f.name: _Mix() for f in fields}, under={f.name: {} for f in fields})
        for entry in base:
            weight = len(entry.seed_ids) or 1
            mix.use_cases.seeds[entry.use_case] += weight
            mix.donors.setdefault(entry.use_case, []).append(entry)
            for skill in entry.skills:
                mix.skills.seeds[skill] += weight
                mix.skill_owner.setdefault(skill, entry.seed_ids[0] if entry.seed_ids else "")
            for name, value in entry.extra.items():
                for item in _as_list(value):
                    if name in mix.fields:
                        mix.fields[name].seeds[item] += weight
                        mix.under[name].setdefault(entry.use_case, set()).add(item)
        return mix

    def draw_extra(
        self,
        rng: random.Random,
        base: list[MetadataEntry],
        fields: tuple[MetadataField, ...],
        use_case: str,
        spread: float,
    ) -> Extra:
        """The declared fields' values of a new entry of ``use_case``."""
        extra: Extra = {}
        for declared in fields:
            name = declared.name
            among = self.under[name].get(use_case, set()) if declared.within else None
            if not self.fields[name].seeds or among == set():
                continue
            if declared.multiple:
                sizes = [len(_as_list(e.extra[name])) for e in base if name in e.extra]
                extra[name] = self.fields[name].draw(rng, rng.choice(sizes), spread, among)
            else:
                extra[name] = self.fields[name].draw(rng, 1, spread, among)[0]
        return extra


def augment_pool(
    base: list[MetadataEntry],
    size: int,
    max_skills: int,
    rng: random.Random,
    fields: tuple[MetadataField, ...] = (),
    taken: list[MetadataEntry] | None = None,
) -> list[MetadataEntry]:
    """Step 2: mix and match up to ``size`` entries, following the seeds' distribution.

    The paper samples a use case from the encoded ones and skills without replacement from
    the union of all skills. Here both draws follow the seeds' own frequencies (each base
    entry weighs as many seeds as it came from): a use case, then each skill in turn, is
    drawn in proportion to how far the pool so far falls short of its share of the seeds.
    So the pool's use-case and skill mix tracks the seeds' (issue #14), where a uniform
    draw over the union gives a skill seen once as much room as one seen in every seed.
    Declared ``fields`` are drawn the same way; one ``within`` the use case only among the
    values seen under the drawn use case (a hierarchy). How many skills (or values of a
    list field): the paper is silent; we draw the count from the base entries' own counts,
    so the pool keeps the seeds' shape. Pairs already in the pool are redrawn. A base
    larger than ``size`` is kept whole: dropping encoded seeds would lose coverage.

    ``taken``: a pool this one adds to (``run --update``): its entries are not drawn again
    and the new ids follow its own, while the shares are ``base``'s alone, so what is added
    follows the new seeds.
    """
    taken = taken or []
    known = {entry.key() for entry in taken}
    pool = [entry for entry in base if entry.key() not in known]  # (an update's repeats)
    if taken:
        pool = [e.model_copy(update={"id": f"m{len(taken) + i:04d}"}) for i, e in enumerate(pool)]
    if not base:
        return pool
    known |= {entry.key() for entry in pool}
    mix = _SeedMix.of(base, fields)
    use_cases, skills_mix, mixes = mix.use_cases, mix.skills, mix.fields
    for entry in pool:
        _count(entry, use_cases, skills_mix, mixes)
    attempts, spread, misses = 0, SPREAD, 0
    while len(pool) < size and attempts < size * 50:
        attempts += 1
        use_case = use_cases.draw(rng, 1, spread)[0]
        count = min(len(rng.choice(base).skills), max_skills, len(skills_mix.seeds))
        skills = skills_mix.draw(rng, count, spread)
        extra = mix.draw_extra(rng, base, fields, use_case, spread)
        donor = rng.choice(mix.donors[use_case])
        seed_ids = {*donor.seed_ids[:1], *(mix.skill_owner[s] for s in skills)} - {""}
        entry = MetadataEntry(
            id=f"m{len(taken) + len(pool):04d}",
            use_case=use_case,
            skills=skills,
            origin="augmented",
            seed_ids=sorted(seed_ids),
            extra=extra,
        )
        if entry.key() in known:
            misses += 1
            if misses % RETRIES == 0:  # the likeliest pairs are taken: look further afield
                spread = min(spread * 2, MAX_SPREAD)
            continue
        spread, misses = SPREAD, 0
        known.add(entry.key())
        pool.append(entry)
        _count(entry, use_cases, skills_mix, mixes)
    return pool


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _count(entry: MetadataEntry, use_cases: _Mix, skills: _Mix, fields: dict[str, _Mix]) -> None:
    use_cases.have[entry.use_case] += 1
    skills.have.update(entry.skills)
    for name, value in entry.extra.items():
        if name in fields:
            fields[name].have.update(_as_list(value))


def updated_pool(
    state: PrepareState,
    update: Update,
    threshold: float,
    max_skills: int,
    seed: int,
    fields: tuple[MetadataField, ...],
) -> dict[str, Any]:
    """``run --update``: the new seeds' entries and mix-and-match, following the new seeds'
    distribution, appended to the pool (whose entries and instructions stay as they are).

    Labels the run has stay canonical; the new seeds' spellings merge onto them.
    """
    new_ids = set(update.seed_ids)
    new_items = [item for item in state.encoded if item.seed_id in new_ids]
    labels = encoded_labels(new_items, threshold, state.label_map)
    start = len(state.pool)
    base = base_pool(state, labels, new_items, start)
    rng = random.Random(f"{seed}:update:{update.number}")
    grown = augment_pool(base, update.metadata - start, max_skills, rng, fields, taken=state.pool)
    done = update.model_copy(update={"pool_start": start})
    return {
        "pool": state.pool + grown,
        "label_map": labels,
        "updates": [*state.updates[:-1], done],
    }
