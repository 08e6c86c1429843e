"""How far to trust the judge: its position and length biases, read from the order-swapped
comparisons every run and evaluation already makes (issue #35). Pure functions, no I/O.

- **Position flips**: a pair is judged twice, the strong answer shown first, then the
  target's. A judge that decides on the answers prefers the same one both times; one that
  prefers whichever comes first flips. The flip rate counts the pairs where both orders
  prefer an answer (ties apart) and the two preferences differ.
- **Length**: Spearman's correlation between the answers' length difference (strong minus
  target, in characters) and the score gap (strong minus target); 0 when either is the
  same for every pair (length can explain none of the gaps), none below 3 pairs. Some correlation is
  expected (a fuller answer is often a better one); a strong one says the judge rewards
  length itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from codeclm.judge_figures import HumanAgreement, JudgeFigures

STRONG_CORRELATION = 0.5
"""|ρ| from which the length correlation is called strong (Cohen's "large" effect): a
judge whose gap follows length that closely is rewarding length, not only what it brings."""
LEAST_PAIRS = 20
"""Fewer judged pairs than this: a correlation says too little to warn about."""

Scores = tuple[float, float]
"""(strong, target) scores from one order."""


def preferred(scores: Scores) -> int:
    """+1: the strong answer scored higher; -1: the target's; 0: a tie."""
    strong, target = scores
    return (strong > target) - (strong < target)


def flipped(strong_first: Scores, target_first: Scores) -> bool | None:
    """Whether swapping the order changed the preferred answer; None: a tie in either order."""
    one, two = preferred(strong_first), preferred(target_first)
    return None if 0 in (one, two) else one != two


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given the mean of their ranks (as Spearman's ρ needs)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            result[i] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on the ranks); None: fewer than 3 pairs, or
    one side constant."""
    if len(xs) < 3:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / (vx * vy) ** 0.5


@dataclass
class JudgeTally:
    """The judged pairs of a run or an evaluation, a few numbers each, added one by one
    while the outputs are written (never all states at once)."""

    flips: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    """'' (all), 'iteration N' and 'use case X' -> each untied pair: flipped or not."""
    first_wins: int = 0
    """Orders (two per pair) that preferred the answer shown first."""
    orders: int = 0
    """Orders that preferred an answer (not a tie)."""
    length_gaps: list[tuple[int, float]] = field(default_factory=list)
    """(strong length - target length, score gap) per pair."""

    def add(
        self,
        strong_first: Scores,
        target_first: Scores,
        lengths: tuple[int, int],
        groups: Sequence[str] = (),
    ) -> None:
        """One judged pair: both orders' (strong, target) scores, the answers' lengths
        (strong, target), and the groups it counts in (its iteration, its use case)."""
        flip = flipped(strong_first, target_first)
        if flip is not None:
            for group in ("", *groups):
                self.flips[group].append(flip)
        # strong first: the first is strong when +1; target first: when -1
        for scores, first in ((strong_first, 1), (target_first, -1)):
            if side := preferred(scores):
                self.orders += 1
                self.first_wins += side == first
        gap = (strong_first[0] + target_first[0] - strong_first[1] - target_first[1]) / 2
        self.length_gaps.append((lengths[0] - lengths[1], gap))

    def figures(self, self_judged: bool, judge_model: str) -> JudgeFigures:
        """What the judge showed, as ``run.json`` and ``eval.json`` keep it."""
        rates = {group: sum(f) / len(f) for group, f in self.flips.items() if f}
        pairs = len(self.length_gaps)
        correlation = spearman(
            [float(d) for d, _ in self.length_gaps], [g for _, g in self.length_gaps]
        )
        if correlation is None and pairs >= 3:  # one side constant: length explains nothing
            correlation = 0.0
        return JudgeFigures(
            judge_model=judge_model,
            self_judged=self_judged,
            pairs=len(self.length_gaps),
            untied_pairs=len(self.flips.get("", [])),
            # every pair tied in an order: none turned around (untied_pairs says on what)
            position_flip_rate=rates.get("", 0.0 if pairs else None),
            position_flip_rate_by_iteration=_group(rates, "iteration "),
            position_flip_rate_by_use_case=_group(rates, "use case "),
            first_preferred_rate=self.first_wins / self.orders if self.orders else None,
            length_correlation=correlation,
            length_warning=correlation is not None
            and abs(correlation) >= STRONG_CORRELATION
            and len(self.length_gaps) >= LEAST_PAIRS,
        )


def _group(rates: dict[str, float], prefix: str) -> dict[str, float]:
    """The rates of one kind of group, by name (iterations by number: 2 before 10)."""
    found = {
        key.removeprefix(prefix): rate for key, rate in rates.items() if key.startswith(prefix)
    }
    return dict(
        sorted(
            found.items(),
            key=lambda item: (len(item[0]), item[0]) if item[0].isdigit() else (0, item[0]),
        )
    )


Decision = str
"""'strong' (keep strong), 'target' (keep target) or 'undecided'."""


def decision(gap: float, threshold: float) -> Decision:
    """The gap rule's decision at θ: above it keeps strong, below minus it keeps target."""
    return "strong" if gap > threshold else "target" if gap < -threshold else "undecided"


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's κ of two raters' labels of the same items; None with no items, or when
    chance alone gives full agreement (both used one and the same label throughout)."""
    if not first:
        return None
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    labels = set(first) | set(second)
    expected = sum((first.count(c) / n) * (second.count(c) / n) for c in labels)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def human_agreement(
    sampled: dict[str, dict[str, Any]], ratings: Sequence[dict[str, Any]], threshold: float
) -> HumanAgreement:
    """People's ratings of a blind sample against the judge's: ``sampled`` maps each key to
    the pair it stands for (``strong``: which of a and b is the strong answer; ``gap``:
    the judge's; ``decision``: the judge's at θ; ``outcome``: an evaluation's verdict);
    each rating holds ``key``, ``judge`` (the person), ``score_a`` and ``score_b``."""
    theirs, ours, their_gaps, our_gaps, outcomes = [], [], [], [], []
    for rating in ratings:
        pair = sampled[rating["key"]]
        a, b = float(rating["score_a"]), float(rating["score_b"])
        gap = a - b if pair["strong"] == "a" else b - a
        theirs.append(decision(gap, threshold))
        ours.append(pair["decision"])
        their_gaps.append(gap)
        our_gaps.append(float(pair["gap"]))
        outcomes.append(pair.get("outcome"))
    n = len(ratings)
    evaluation = n > 0 and all(outcome is not None for outcome in outcomes)

    def crr(labels: Sequence[str]) -> float | None:  # wins and ties of the target
        return sum(label != "strong" for label in labels) / n if evaluation else None

    return HumanAgreement(
        items=len({r["key"] for r in ratings}),
        people=len({r["judge"] for r in ratings}),
        ratings=n,
        threshold=threshold,
        decision_agreement=sum(a == b for a, b in zip(theirs, ours, strict=True)) / n
        if n
        else None,
        kappa=cohen_kappa(theirs, ours),
        gap_correlation=spearman(their_gaps, our_gaps),
        crr_people=crr(theirs),
        crr_judge=crr(ours),
    )
