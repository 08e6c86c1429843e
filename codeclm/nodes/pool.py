"""The metadata pool, built pure and seeded from the encoded seeds (step 2 of the method).

The encoder's labels are merged into canonical ones (``encoded_labels``), seeds with the
same metadata become one base entry (``base_pool``), and mix-and-match fills the pool up to
``--metadata`` following the seeds' use-case and skill distribution (``augment_pool``).
"""

from __future__ import annotations

import random
from collections import Counter

from codeclm.analysis.embeddings import EmbeddingsUnavailable
from codeclm.analysis.labels import canonical_labels
from codeclm.state import EncodedSeed, LabelMap, MetadataEntry, PrepareState


def encoded_labels(encoded: list[EncodedSeed], threshold: float) -> LabelMap:
    """The encoded labels' canonical forms (``analysis.labels``), counted by seed.

    Without the embedding model installed, spelling is normalised only (threshold 1).
    """
    use_cases = Counter(item.use_case for item in encoded)
    skills = Counter(skill for item in encoded for skill in item.skills)
    try:
        return LabelMap(
            threshold=threshold,
            use_case=canonical_labels(use_cases, threshold),
            skills=canonical_labels(skills, threshold),
        )
    except EmbeddingsUnavailable:
        return LabelMap(
            threshold=1.0,
            use_case=canonical_labels(use_cases, 1.0),
            skills=canonical_labels(skills, 1.0),
        )


def base_pool(state: PrepareState, labels: LabelMap | None = None) -> list[MetadataEntry]:
    """The user's metadata, or the encoded seeds in canonical labels, identical metadata
    merged (one entry, all its seed ids)."""
    if state.user_metadata:
        return [entry.model_copy() for entry in state.user_metadata]
    labels = labels or LabelMap()
    pool: list[MetadataEntry] = []
    by_key: dict[tuple[str, frozenset[str]], MetadataEntry] = {}
    for item in sorted(state.encoded, key=lambda e: e.seed_index):
        entry = MetadataEntry(
            id=f"m{len(pool):04d}",
            use_case=labels.use_case_of(item.use_case),
            skills=labels.skills_of(item.skills),
            origin="encoded",
            seed_ids=[item.seed_id],
        )
        if (known := by_key.get(entry.key())) is not None:
            known.seed_ids.append(item.seed_id)
            continue
        by_key[entry.key()] = entry
        pool.append(entry)
    return pool


SPREAD, MAX_SPREAD, RETRIES = 0.05, 1000.0, 8
"""Weight every label gets besides its deficit; doubled after every ``RETRIES`` draws in a
row of pairs already in the pool (up to a near-uniform draw), reset after a new one."""


def _deficit_weights(
    share: dict[str, float], have: Counter[str], total: float, left: list[str], spread: float
) -> list[float]:
    """How far each label in ``left`` falls behind its share of ``total``, plus ``spread``
    for every label: the draw stays varied, and widens when it keeps hitting known pairs."""
    return [max(share[x] * total - have[x], 0.0) + spread for x in left]


def augment_pool(
    base: list[MetadataEntry], size: int, max_skills: int, rng: random.Random
) -> list[MetadataEntry]:
    """Step 2: mix and match up to ``size`` entries, following the seeds' distribution.

    The paper samples a use case from the encoded ones and skills without replacement from
    the union of all skills. Here both draws follow the seeds' own frequencies (each base
    entry weighs as many seeds as it came from): a use case, then each skill in turn, is
    drawn in proportion to how far the pool so far falls short of its share of the seeds.
    So the pool's use-case and skill mix tracks the seeds' (issue #14), where a uniform
    draw over the union gives a skill seen once as much room as one seen in every seed.
    How many skills: the paper is silent; we draw the count from the base entries' own
    counts, so the pool keeps the seeds' shape. Pairs already in the pool are redrawn. A
    base larger than ``size`` is kept whole: dropping encoded seeds would lose coverage.
    """
    pool = list(base)
    if not pool:
        return pool
    known = {entry.key() for entry in pool}
    use_case_seeds: Counter[str] = Counter()
    skill_seeds: Counter[str] = Counter()
    skill_owner: dict[str, str] = {}
    donors: dict[str, list[MetadataEntry]] = {}
    for entry in base:
        weight = len(entry.seed_ids) or 1
        use_case_seeds[entry.use_case] += weight
        donors.setdefault(entry.use_case, []).append(entry)
        for skill in entry.skills:
            skill_seeds[skill] += weight
            skill_owner.setdefault(skill, entry.seed_ids[0] if entry.seed_ids else "")
    use_case_share = _shares(use_case_seeds)
    skill_share = _shares(skill_seeds)
    use_cases, all_skills = sorted(use_case_share), sorted(skill_share)
    have_use_cases = Counter(entry.use_case for entry in pool)
    have_skills = Counter(skill for entry in pool for skill in entry.skills)
    attempts, spread, misses = 0, SPREAD, 0
    while len(pool) < size and attempts < size * 50:
        attempts += 1
        total = len(pool) + 1
        use_case = rng.choices(
            use_cases, _deficit_weights(use_case_share, have_use_cases, total, use_cases, spread)
        )[0]
        count = min(len(rng.choice(base).skills), max_skills, len(all_skills))
        slots = sum(have_skills.values()) + count
        skills: list[str] = []
        for _ in range(count):
            left = [skill for skill in all_skills if skill not in skills]
            weights = _deficit_weights(skill_share, have_skills, slots, left, spread)
            skills.append(rng.choices(left, weights)[0])
        donor = rng.choice(donors[use_case])
        seed_ids = {*donor.seed_ids[:1], *(skill_owner[s] for s in skills)} - {""}
        entry = MetadataEntry(
            id=f"m{len(pool):04d}",
            use_case=use_case,
            skills=skills,
            origin="augmented",
            seed_ids=sorted(seed_ids),
        )
        if entry.key() in known:
            misses += 1
            if misses % RETRIES == 0:  # the likeliest pairs are taken: look further afield
                spread = min(spread * 2, MAX_SPREAD)
            continue
        spread, misses = SPREAD, 0
        known.add(entry.key())
        pool.append(entry)
        have_use_cases[use_case] += 1
        have_skills.update(skills)
    return pool


def _shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()}
