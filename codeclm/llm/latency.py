"""Each kind of request's calm latency, and each round's ratio to it: how the gate
(``admission.AdaptiveLimit``) tells a server that queues (vLLM, llama.cpp: replies slow
down as more are sent) from one that keeps up.

A kind is a model and its step's schema (or its free answers): kinds differ in speed,
length and work, so each is compared with itself, per output token.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

#: Fewest replies a round's latency is judged on.
ROUND_MIN = 8
#: Latency is compared per (output tokens + this): long answers take longer anywhere.
TOKEN_WEIGHT = 64


@dataclass
class LatencyWatch:
    """Each kind of request's calm latency per output token, and the level it was seen at;
    each round's ratio to it (a kind: a model and its step's schema, or its free answers;
    they differ in speed, length and work).

    The calm is the median of a kind's replies sent with the fewest requests in flight
    seen; replies sent with more out are compared to it. Replies at that level or below
    replace it (a queue cannot slow them: a slower calm is this machine, or the server,
    being slower today), and a lower level replaces it as soon as one is seen.
    """

    calm: dict[str, tuple[float, int]] = field(default_factory=dict)
    """kind -> (seconds per weighted token, requests in flight it was seen with)."""
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    seen: int = 0
    round_size: int = ROUND_MIN
    """Replies in this round: the limit when it began (a ramp outgrows it within it)."""
    peak: int = 0
    """The most requests in flight any reply of this round was sent with."""
    judged: int = 0
    """The peak of the round last judged: the level its verdict speaks of."""
    learned: bool = False
    """A kind's calm latency was learned this round (its replies are the calm)."""
    relearn: bool = False
    """The round last judged learned a kind's calm, under its load (a dip checks it)."""
    measured: bool = False
    """The round last judged had known kinds' replies to compare (not only new ones)."""

    def add(
        self, kind: str, seconds: float, output_tokens: int, in_flight: int, limit: int
    ) -> float | None:
        """Record one reply (sent with ``in_flight`` requests out); at the end of a round,
        its median ratio to the calm latency."""
        value = seconds / (output_tokens + TOKEN_WEIGHT)
        self.peak = max(self.peak, in_flight)
        known = self.calm.get(kind)
        if known is not None and in_flight > known[1]:
            self.ratios.append(value / max(known[0], 1e-9))
        else:  # at the calm's level or below (or no calm yet): it is the calm
            samples = self.samples.setdefault(kind, [])
            samples.append((value, in_flight))
            if len(samples) >= ROUND_MIN:
                self.learned = self.learned or known is None
                level = max(n for _, n in samples)
                self.calm[kind] = (statistics.median(v for v, _ in samples), level)
                samples.clear()
        self.seen += 1
        if self.seen < self.round_size:
            return None
        ratio = statistics.median(self.ratios) if self.ratios else 1.0
        verdict = ratio if self.ratios or self.learned else None  # None: kinds not seen before
        self.judged, self.relearn, self.measured = self.peak, self.learned, bool(self.ratios)
        self.new_round(limit)
        return verdict

    def new_round(self, limit: int, fresh: bool = False) -> None:
        """A round of ``limit`` replies begins (``fresh``: under a new load, so the
        replies of the old one are not mixed into any kind's median)."""
        self.ratios.clear()
        self.seen = 0
        self.round_size = max(ROUND_MIN, limit)
        self.peak = 0
        self.learned = False
        if fresh:
            self.samples.clear()
