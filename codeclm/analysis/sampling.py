"""Samples of a run's rows that represent it: seeded, and spread over metadata entries.

Rows are written in pool order (encoded entries first, augmented ones last), so the first
N rows of a run come from a few entries. A comparison at equal pairs (``export --limit``,
the ``--pairs`` surplus) takes this sample instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def spread_sample(groups: Sequence[str], n: int, seed: int) -> list[int]:
    """The indices (ascending) of ``n`` of the items whose groups are ``groups``, spread
    evenly: round by round, one item from each group that has one left, so no group gets
    more than its share while another still has items. Groups and their items are taken
    in an order seeded by ``seed`` (the same call always gives the same sample)."""
    if n >= len(groups):
        return list(range(len(groups)))
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    rng = random.Random(f"codeclm-spread:{seed}")
    order = sorted(members)
    rng.shuffle(order)
    for group in order:
        rng.shuffle(members[group])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for group in order:
            if depth < len(members[group]) and len(chosen) < n:
                chosen.append(members[group][depth])
        depth += 1
    return sorted(chosen)
