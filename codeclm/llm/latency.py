"""Each kind of request's calm latency, and each round's ratio to it: how the gate
(``admission.AdaptiveLimit``) tells a server that queues (vLLM, llama.cpp: replies slow
down as more are sent) from one that keeps up.

A kind is a model and its step's schema (or its free answers): kinds differ in speed,
length and work, so each is compared with itself. A reply is measured two ways, by the
call and by the output token (weighted): servers whose time goes by the call (a fixed
cost, a gateway) read steady by the one, servers that decode token by token read steady
by the other when a round's replies are longer or shorter than the calm's. A queue slows
both alike, so a round's verdict goes by the measure that reads its replies most alike.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

#: Fewest replies a round's latency is judged on.
ROUND_MIN = 8
#: Latency per token is taken over (output tokens + this): a reply's fixed cost.
TOKEN_WEIGHT = 64
#: How often the event loop's lag is sampled while requests are out (seconds).
LAG_TICK = 0.01
#: A kind's calm is derived from the kinds beside it only while they read within this
#: of their own calm.
DERIVE_WITHIN = 1.2
#: Two spreads of a round's ratios (logarithms) closer than this are alike.
SAME_SPREAD = 0.02


class Pace(NamedTuple):
    """One reply's latency, or a kind's calm one: by the call and by the weighted token."""

    per_call: float
    per_token: float

    @classmethod
    def of(cls, seconds: float, output_tokens: int) -> Pace:
        return cls(seconds, seconds / (output_tokens + TOKEN_WEIGHT))

    @classmethod
    def median(cls, paces: list[Pace]) -> Pace:
        return cls(
            statistics.median(p.per_call for p in paces),
            statistics.median(p.per_token for p in paces),
        )

    def over(self, calm: Pace) -> Pace:
        return Pace(self.per_call / max(calm.per_call, 1e-9),
                    self.per_token / max(calm.per_token, 1e-9))  # fmt: skip

    def scaled(self, factor: float) -> Pace:
        return Pace(self.per_call * factor, self.per_token * factor)


def slowdown(ratios: list[Pace]) -> float:
    """How much slower than their calm a round's replies came back, by the measure that
    reads them most alike: a queue slows every reply by a like share, so the measure that
    fits the server (by the call, or by the token) gives ratios close together, and the
    other spreads them with the replies' lengths. Replies all of one length read alike by
    both: the lower reading, since the one that fits is no higher (a round of varied
    lengths will show a queue)."""
    by_call = _spread_and_middle([r.per_call for r in ratios])
    by_token = _spread_and_middle([r.per_token for r in ratios])
    if abs(by_call[0] - by_token[0]) <= SAME_SPREAD:  # one length: either may be right,
        return min(by_call[1], by_token[1])  # so the one that reads less is (no false cut)
    return by_call[1] if by_call[0] < by_token[0] else by_token[1]


def _spread_and_middle(values: list[float]) -> tuple[float, float]:
    """The spread of ``values`` (the interquartile range of their logarithms: a share,
    whatever their size) and their median."""
    logs = sorted(math.log(max(v, 1e-12)) for v in values)
    n = len(logs)
    return logs[(3 * n) // 4] - logs[n // 4], statistics.median(values)


@dataclass
class LatencyWatch:
    """Each kind of request's calm latency and the level it was seen at; each round's
    ratio to it.

    The calm is the median of a kind's replies sent with the fewest requests in flight
    seen; replies sent with more out are compared to it. Replies at that level or below
    replace it (a queue cannot slow them: a slower calm is this machine, or the server,
    being slower today), and a lower level replaces it as soon as one is seen.
    """

    calm: dict[str, tuple[Pace, int]] = field(default_factory=dict)
    """kind -> (its calm latency, requests in flight it was seen with)."""
    derived: set[str] = field(default_factory=set)
    """Kinds whose calm was derived from the kinds beside them, not seen at a light load."""
    samples: dict[str, list[tuple[Pace, int]]] = field(default_factory=dict)
    ratios: list[Pace] = field(default_factory=list)
    """This round's replies of kinds whose calm was seen: what its verdict goes by."""
    derived_ratios: dict[str, list[Pace]] = field(default_factory=dict)
    """This round's replies of derived kinds: judged only when no other kind is measured,
    and otherwise their calm derived again (a stall within the round it was first derived
    in skews it; the kinds seen calm tell by how much)."""
    seen: int = 0
    round_size: int = ROUND_MIN
    """Replies in this round: the limit when it began (a ramp outgrows it within it)."""
    peak: int = 0
    """The most requests in flight any reply of this round was sent with."""
    judged: int = 0
    """The peak of the round last judged: the level its verdict speaks of."""
    learned: bool = False
    """A kind's calm latency was learned this round with no known kind beside it to say
    how loaded the server was (its replies are the calm)."""
    relearn: bool = False
    """The round last judged learned a kind's calm, under its load (a dip checks it)."""
    measured: bool = False
    """The round last judged had known kinds' replies to compare (not only new ones)."""

    def add(
        self, kind: str, seconds: float, output_tokens: int, in_flight: int, limit: int
    ) -> float | None:
        """Record one reply (sent with ``in_flight`` requests out); at the end of a round,
        its slowdown against the calm."""
        pace = Pace.of(seconds, output_tokens)
        self.peak = max(self.peak, in_flight)
        known = self.calm.get(kind)
        if known is not None and in_flight > known[1]:
            derived = kind in self.derived
            ratios = self.derived_ratios.setdefault(kind, []) if derived else self.ratios
            ratios.append(pace.over(known[0]))
        else:  # at the calm's level or below (or no calm yet): it is the calm
            self._learn(kind, known is None, pace, in_flight)
        self.seen += 1
        if self.seen < self.round_size:
            return None
        if self.ratios:
            ratio = slowdown(self.ratios)
            self._derive_again(ratio)
            measured = True
        else:
            pooled = [r for ratios in self.derived_ratios.values() for r in ratios]
            ratio, measured = (slowdown(pooled) if pooled else 1.0), bool(pooled)
        verdict = ratio if measured or self.learned else None  # None: kinds not seen before
        self.judged, self.relearn, self.measured = self.peak, self.learned, measured
        self.new_round(limit)
        return verdict

    def _derive_again(self, slowed: float) -> None:
        """Each derived kind measured enough this round: its calm is its latency over the
        slowdown the kinds seen calm show (the same for every kind under one load)."""
        for kind, ratios in self.derived_ratios.items():
            if len(ratios) >= ROUND_MIN // 2:
                calm, level = self.calm[kind]
                self.calm[kind] = (calm.scaled(slowdown(ratios) / max(slowed, 1e-9)), level)

    def _learn(self, kind: str, new: bool, pace: Pace, in_flight: int) -> None:
        samples = self.samples.setdefault(kind, [])
        samples.append((pace, in_flight))
        if len(samples) < ROUND_MIN:
            return
        calm = Pace.median([p for p, _ in samples])
        level = max(n for _, n in samples)
        # A kind first seen beside known ones, under a queue: the queue slows every kind
        # alike, so its calm is what the known kinds' slowdown says it would be. It stands
        # for their calm level, so its later replies above it are judged. Only while they
        # read near their calm: a slowdown may be a stall of this process that spared (or
        # hit) the new kind's replies, so it waits for a round that reads calm.
        if new and len(self.ratios) >= ROUND_MIN:
            slowed = slowdown(self.ratios)
            if slowed > DERIVE_WITHIN:
                del samples[:-ROUND_MIN]  # its latest replies, for the next round
                return
            calm = calm.scaled(1 / max(1.0, slowed))
            level = min(n for k, (_, n) in self.calm.items() if k not in self.derived)
            self.derived.add(kind)
        else:
            self.learned = self.learned or new
            self.derived.discard(kind)  # seen at its calm's level: seen, not derived
        self.calm[kind] = (calm, level)
        samples.clear()

    def new_round(self, limit: int, fresh: bool = False) -> None:
        """A round of ``limit`` replies begins (``fresh``: under a new load, so the
        replies of the old one are not mixed into any kind's median)."""
        self.ratios.clear()
        self.derived_ratios.clear()
        self.seen = 0
        self.round_size = max(ROUND_MIN, limit)
        self.peak = 0
        self.learned = False
        if fresh:
            self.samples.clear()


@dataclass
class LoopLag:
    """How late this process's event loop runs what is due: a reply read while the loop is
    busy (parsing, checkpoint writes, another process on the cores) waited on this process,
    not on the server, and that wait is not the server's latency. A timer is due every
    ``LAG_TICK`` while requests are out; how late it runs as a reply is read is about how
    long the reply may have waited to be read. A stall over before the reply came held up
    nothing of it, nor one before the send (one over within a tick of the reply is taken
    off whole: at most half the reply's time is, so the error is bounded)."""

    late: float = 0.0
    """How late the last tick ran (seconds)."""
    _ran: float = 0.0
    """When it ran (the loop's clock)."""
    _due: float = 0.0
    _timer: asyncio.TimerHandle | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def watch(self, busy: Callable[[], bool]) -> None:
        """Sample from now on, while ``busy()`` says requests are out."""
        if self._timer is None:
            self._loop = asyncio.get_running_loop()
            self._due = self._loop.time() + LAG_TICK
            self._timer = self._loop.call_later(LAG_TICK, self._tick, busy)

    def now(self) -> float:
        """How late the loop runs now: the tick overdue now (and the late one before it,
        the same stall as likely as not: a reply that came in it may wait behind other
        work after it), or the last one if it ran within a tick."""
        if self._loop is None:
            return 0.0
        at = self._loop.time()
        overdue = at - self._due if self._timer is not None else 0.0
        if overdue > 0 and self.late > LAG_TICK / 10:
            overdue += LAG_TICK + self.late
        recent = self.late if at - self._ran < LAG_TICK else 0.0
        return max(0.0, overdue, recent)

    def server_time(self, sent: float) -> float:
        """The seconds since ``sent`` (``time.monotonic()``), less how late the loop runs
        as the reply is read (at most half of them: a reply takes some of its own)."""
        seconds = time.monotonic() - sent
        return max(seconds / 2, seconds - self.now())

    def _tick(self, busy: Callable[[], bool]) -> None:
        assert self._loop is not None
        self._ran = self._loop.time()
        self.late = max(0.0, self._ran - self._due)
        self._timer = None
        if busy():
            self._due = self._ran + LAG_TICK
            self._timer = self._loop.call_later(LAG_TICK, self._tick, busy)
