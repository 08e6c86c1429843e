"""Adaptive concurrency per server: as many requests in flight as the server takes.

Every role that calls one server (base URL) shares its ``AdaptiveLimit``, the gate each
request passes before it is sent: the models a server serves share its hardware (vLLM,
Ollama, llama.cpp) or its key's limit (a gateway), so one gate learns what they may have
together. The limit moves by AIMD:

- **a start-up ramp**: from ``START``, ``RAMP_AHEAD - 1`` more for each reply (so
  ``RAMP_AHEAD`` times the level each round, a round being as many replies as the limit;
  the steps spread over a reply's round trip, since replies to requests sent together come
  back together), up to ``RAMP_AHEAD`` times the last level whose round came back within
  ``RAMP_CALM`` of the calmest: a first round at ``START`` learns the calm, the next may
  fill the ceiling (an overshoot on a server that queues costs one queueing cut);
- **additive increase**: +1 after a round of replies in a row (as many as the limit, at
  least ``ROUND_MIN``); to a level the server once refused, only after ``PROBE_AFTER``;
- **decrease**: on a 429 that says "too many at once" (only the first of a burst cuts: a
  request sent before the last cut does not cut again), to one below the requests in
  flight it was refused at; within a round of another cut (a storm), and on 503s once
  they are more than ``OVERLOADED`` of the latest replies (a few random ones are noise, not
  overload), and on queueing for servers that queue rather than refuse (vLLM, llama.cpp:
  two rounds in a row whose replies took over ``QUEUEING`` times as long as the calmest,
  less how late this process's event loop ran as each was read (``latency.LoopLag``),
  by the call or by the output token, whichever reads the round's replies most alike
  (``latency.slowdown``: a mix of lengths is not a queue); one may be this process
  stalling), × ``DECREASE``, and on queueing at most to the level the server serves at
  its calm latency (the round's level over its ratio, Little's law) × ``QUEUE_HEADROOM``;
  rounds back within ``RAMP_BACK`` of the calm after a queueing cut say it was not the
  server's, and the ramp takes the limit back to below where it was;
- **a dip**: a kind of request first seen above the highest level known calm (a new step
  of the run, under a queue maybe) with no known kind beside it learns its calm latency
  in one round at the highest level known calm (at most half the limit), then the limit
  is restored. Beside known kinds that read near their calm it needs none: a queue slows
  every kind alike, so its calm is its latency over their slowdown, derived again each
  round both are measured.

A 429 is not always "too many at once": a provider's requests- or tokens-per-minute window
answers 429 whatever the number in flight. One whose headers say a rate window is spent
(``x-ratelimit-remaining-*: 0``), or that came at a level the server mostly takes (of
the latest requests sent with as many in flight or more, at least ``RATE_SAMPLE`` of
them, at most ``RATE_LIMITED`` were refused), is a rate limit: the request waits its
``Retry-After`` and the limit stays (``rate_limited`` counts them). Past a concurrency
limit most requests are refused (each level above it, across every worker sharing the
key); a rate limit refuses a few at every level.

It grows only while it holds requests back (requests wait at the gate, or it was full when
the request was sent): a limit the run does not use says nothing of the server. Never
above the configured ceiling (``--concurrency``), never below 1. With ``adaptive``
off the limit is the ceiling and nothing moves.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from codeclm.llm.latency import ROUND_MIN, LatencyWatch, LoopLag
from codeclm.records import EndpointStats

#: The first limit of the ramp.
START = 8
#: Replies in a row before the limit grows to a level the server refused (a 429, or
#: queueing) before; below it, a round's worth.
PROBE_AFTER = 250
#: The limit's share kept after an overload.
DECREASE = 0.75
#: A round this many times slower than the calmest (``latency.slowdown``) is queueing.
QUEUEING = 1.5
#: ... and the ramp goes on only from rounds within this of the calmest,
RAMP_CALM = 1.2
#: ... to at most this many times the last level that came back so, in one round.
RAMP_AHEAD = 8
#: A queue's cut goes to the level the server serves at its calm latency (the level over
#: the round's ratio, by Little's law) times this: a little queue keeps it busy.
QUEUE_HEADROOM = 1.25
#: After a queueing cut, two rounds this close to the calm say the queue was not the
#: server's (a stall of this process, say): the ramp takes the limit back up to below the
#: level it was cut at.
RAMP_BACK = 1.1
#: 503s above this share of the latest ``RECENT`` replies are overload, not noise (3% at
#: random reach it about once in 10^5 windows; a server refusing a fifth of its load
#: reaches it within a round).
OVERLOADED = 0.2
RECENT = 50
#: The latest requests whose levels (requests in flight when sent) and outcomes tell what
#: the server takes.
TOOK_RECENT = 64
#: At most this share of the requests at a 429's level or above refused: a rate limit ...
RATE_LIMITED = 0.25
#: ... judged on at least this many of them (fewer: too many at once, as before).
RATE_SAMPLE = 8


@dataclass(frozen=True)
class Ticket:
    """One request let through the gate: when, and how full the gate was."""

    epoch: int
    """The count of cuts when it was sent: only a request sent since the last cut cuts."""
    in_flight: int
    """Requests in flight at the endpoint when it was sent, itself included."""
    sent_at: float = field(default_factory=time.monotonic)


@dataclass
class AdaptiveLimit:
    """The gate of one server: how many of its requests may be in flight now."""

    name: str
    ceiling: int
    adaptive: bool = True
    limit: float = 0.0
    in_flight: int = 0
    ramping: bool = False
    ramped_to: int = 0
    """The ramp's last level whose round came back calm: it grows to ``RAMP_AHEAD`` times
    that at most (before any, to twice ``START``)."""
    round_trip: float = 0.0
    """A reply's seconds, smoothed: the ramp spreads its growth over one."""
    slow_rounds: int = 0
    """Rounds in a row slower than ``QUEUEING`` times the calm: two are a queue."""
    credits: int = 0
    """Steps of the ramp earned by replies and not yet taken."""
    _timer: asyncio.TimerHandle | None = None
    calm_level: int = 0
    """The highest level a round came back calm at (since the last queueing cut): a kind
    first seen at or below it learned its calm latency without a queue."""
    dipped_from: int = 0
    """The limit before a dip (one round at half of it), restored after; 0: no dip."""
    refused_at: int | None = None
    """The lowest level the server refused at since (a 429's in-flight count, or a
    queueing round's limit): growing to it again needs ``PROBE_AFTER`` replies."""
    queue_cut: bool = False
    """The last cut was on queueing: two rounds back at the calm (``RAMP_BACK``) ramp up
    again, once (a queue met again on the way back up is the server's)."""
    calm_rounds: int = 0
    """Rounds in a row measured within ``RAMP_BACK`` of the calm."""
    ramped_back: bool = False
    """The limit went back up after a queueing cut; a queue met again stays cut."""
    cut_from: float = 0.0
    """The limit before the last cut on a 429 (0: none since): a rate limit seen below the
    level that 429 came at shows it was one too, and the cut is undone."""
    epoch: int = 0
    successes: int = 0
    since_cut: int = 0
    """Replies since the last cut: a cut within a round of another is a storm."""
    stats: EndpointStats = field(default_factory=EndpointStats)
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT))
    took: deque[tuple[int, bool]] = field(default_factory=lambda: deque(maxlen=TOOK_RECENT))
    """The latest requests answered or refused: their levels, and whether refused (429)."""
    latency: LatencyWatch = field(default_factory=LatencyWatch)
    loop_lag: LoopLag = field(default_factory=LoopLag)
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    _first: deque[asyncio.Future[None]] = field(default_factory=deque)
    """Waiters that go before ``_waiters``, in their order: requests asked again."""

    def __post_init__(self) -> None:
        self.limit = float(min(START, self.ceiling) if self.adaptive else self.ceiling)
        self.since_cut = 1 << 30
        # before a round has come back calm, the first replies take it to twice ``START``
        # at most (a server that takes fewer is not flooded while its calm is learned)
        self.ramped_to = max(1, self.current * 2 // RAMP_AHEAD)
        self.ramping = self.adaptive and self.limit < self.ceiling
        self.stats = EndpointStats(
            adaptive=self.adaptive, ceiling=self.ceiling, limit=self.current,
            lowest=self.current, highest=self.current,
        )  # fmt: skip

    @property
    def current(self) -> int:
        return max(1, int(self.limit))

    @asynccontextmanager
    async def slot(self, first: bool = False) -> AsyncIterator[None]:
        """Wait for room under the limit (first come, first served; ``first``, before
        every other: a request asked again, which already waited its turn and then a
        server's pause); hold it until the request is answered (its ``Ticket`` is taken
        as it is sent)."""
        await self._enter(first)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._wake()

    async def _enter(self, first: bool) -> None:
        if self.adaptive:
            self.loop_lag.watch(self._busy)
        if self.in_flight < self.current and not (self._waiters or self._first):
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        line = self._first if first else self._waiters
        line.append(waiter)
        try:
            await waiter  # _wake counts us in before it wakes us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1
                self._wake()
            elif waiter in line:
                line.remove(waiter)
            raise

    def _busy(self) -> bool:
        return self.in_flight > 0 or bool(self._waiters or self._first)

    def _wake(self) -> None:
        while (self._first or self._waiters) and self.in_flight < self.current:
            waiter = (self._first or self._waiters).popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    # ---- what the replies say -----------------------------------------------------------
    def answered(
        self, ticket: Ticket, kind: str, output_tokens: int, seconds: float | None = None
    ) -> None:
        """A reply came back: grow, unless its round says the server queues. ``seconds``:
        the server's time, from the send to the reply less how late this process's event
        loop ran as it read it (``LoopLag.server_time``; default: since the ticket)."""
        self.recent.append(False)
        self.took.append((ticket.in_flight, False))
        self.since_cut += 1
        if not self.adaptive:
            return
        ratio = None
        if ticket.epoch == self.epoch:  # sent at today's limit: it tells of today's load
            if seconds is None:
                seconds = time.monotonic() - ticket.sent_at
            self.round_trip += (seconds - self.round_trip) / 8
            ratio = self.latency.add(kind, seconds, output_tokens, ticket.in_flight, self.current)
        if ratio is not None and self.dipped_from:  # the dip's round is in: back up
            self._set(self.dipped_from)
            self.dipped_from = 0
            self._next_epoch()
            return
        judged = self.latency.judged
        if ratio is not None and ratio <= RAMP_CALM and self.latency.measured:
            # the kinds known came back calm at this level: no queue here (a queue slows
            # every kind alike), so a kind learned in the same round needs no dip
            self.calm_level = max(self.calm_level, judged)
        if ratio is not None and self.latency.relearn and judged > max(self.calm_level, START):
            self._dip()  # learned above any level known calm: maybe under a queue
            return
        if ratio is not None:  # a queue stays; a stall of this process passes
            self.slow_rounds = self.slow_rounds + 1 if ratio > QUEUEING else 0
        if self.slow_rounds >= 2:
            self.slow_rounds = 0
            self._cut(ticket, refused_at=self.current, why="queueing", ratio=ratio)
            self.calm_level = min(self.calm_level, self.current)
            return
        if ratio is not None:  # rounds in a row measured back at the calm
            calm = self.latency.measured and ratio <= RAMP_BACK
            self.calm_rounds = self.calm_rounds + 1 if calm else 0
        if (
            self.queue_cut
            and not self.ramping
            and self.calm_rounds >= 2
            and self.current < self._ramp_top
        ):  # the queue is gone at the level cut to: it was not the server's
            self.ramping, self.ramped_to, self.ramped_back = True, self.current, True
        if self.ramping and ratio is not None:  # a round's verdict on the ramp's last level
            if ratio <= RAMP_CALM:
                self.ramped_to = max(self.ramped_to, self.latency.judged)
            else:  # slower, not yet queueing: on by one a round from here
                self.ramping = False
        if not (self._waiters or self._first or ticket.in_flight >= self.current):
            return  # the limit is not what holds requests back: no news of a higher one
        self.successes += 1
        if self.ramping:  # RAMP_AHEAD - 1 a reply (× RAMP_AHEAD a round), up to RAMP_AHEAD ×
            self.credits += RAMP_AHEAD - 1  # the last calm level, spread over a round trip:
            if self._timer is None:  # replies come back in bursts
                self._step()
            return
        near = self.refused_at is not None and self.current + 1 >= self.refused_at
        if self.successes >= (PROBE_AFTER if near else max(ROUND_MIN, self.current)):
            self.successes = 0
            self._set(min(self.ceiling, self.current + 1))

    def _step(self) -> None:
        """One step of the ramp, and the next one a share of a round trip later."""
        self._timer = None
        if not (self.ramping and self.credits) or self.dipped_from:
            self.credits = 0
            return
        top = min(self.ceiling, RAMP_AHEAD * self.ramped_to, self._ramp_top)
        if self.limit >= top:  # further only after a round comes back calm: the credits
            self.credits = min(self.credits, self.ceiling)  # wait for it
            return
        self.credits -= 1
        self._set(min(self.limit + 1, top))
        self.ramping = self.limit < min(self.ceiling, self._ramp_top)
        delay = self.round_trip / ((RAMP_AHEAD - 1) * self.current)
        self._timer = asyncio.get_running_loop().call_later(delay, self._step)

    def _dip(self) -> None:
        """One round at the highest level known calm: a kind first seen under load learns
        its calm latency where no queue was (as BBR drains its queue to measure the round
        trip again). Half the limit would not do: past a server's knee, half is queued too."""
        self.dipped_from = self.current
        self._set(max(START, min(self.calm_level, self.current // 2)))
        self._next_epoch()

    def _next_epoch(self) -> None:
        """Only requests sent from now on speak of the load from now on."""
        self.epoch += 1
        self.latency.new_round(self.current, fresh=True)

    def refused(self, ticket: Ticket, status: int, rate_window: bool = False) -> None:
        """The server answered 429 (too many requests) or 503 (overloaded).

        ``rate_window``: the 429's headers say a requests- or tokens-per-minute window is
        spent. That, or a 429 at a level the server mostly takes, is a rate limit, which
        fewer at once would not lift: no cut (the request waits its ``Retry-After``)."""
        self.recent.append(status == 503)
        self.stats.refused += status == 429
        if not self.adaptive:
            return
        if status == 429:
            self.took.append((ticket.in_flight, True))
        if status == 429 and (rate_window or self._mostly_taken(ticket.in_flight)):
            self.stats.rate_limited += 1
            if self.cut_from and ticket.in_flight < (self.refused_at or 0):
                self._undo_cut()
        elif status == 429:
            self._cut(ticket, refused_at=ticket.in_flight, why="429")
        elif sum(self.recent) / len(self.recent) > OVERLOADED and len(self.recent) >= 5:
            self._cut(ticket, refused_at=None, why="503")

    def _mostly_taken(self, level: int) -> bool:
        """Of the latest requests at ``level`` or above (this 429 among them), at least
        ``RATE_SAMPLE``, at most ``RATE_LIMITED`` were refused. Refusals and replies alike
        are kept across cuts: a reply that got through above a concurrency limit (another
        was on its way back) is outweighed by the refusals at that level."""
        outcomes = [refused for at, refused in self.took if at >= level]
        return len(outcomes) >= RATE_SAMPLE and sum(outcomes) <= RATE_LIMITED * len(outcomes)

    def _undo_cut(self) -> None:
        """A rate limit refused below the level the last 429 cut at: that 429 was most
        likely one too (a concurrency limit refuses only above its level). The limit goes
        back to where it was, and the level is no longer taken as refused."""
        self._set(max(self.limit, min(self.cut_from, self.ceiling)))
        self.refused_at, self.cut_from = None, 0.0
        self.stats.undone += 1

    def failed(self) -> None:
        """Any other failure: neither growth nor overload."""
        self.successes = 0

    @property
    def _ramp_top(self) -> int:
        """Where a ramp ends: the ceiling, or below the level last refused or queued at."""
        return self.ceiling if self.refused_at is None else max(1, self.refused_at - 1)

    def _cut(
        self, ticket: Ticket, refused_at: int | None, why: str, ratio: float | None = None
    ) -> None:
        if ticket.epoch != self.epoch:  # sent before the last cut: the same burst, which
            if refused_at is not None and refused_at < (self.refused_at or refused_at + 1):
                self.refused_at = refused_at  # was refused lower than its first reply said
                self._set(max(1.0, min(self.limit, refused_at - 1)))
            return
        self.ramping = False
        self.dipped_from = 0
        self.successes = 0
        storm = self.since_cut < self.current
        self.since_cut = 0
        if refused_at is not None:
            self.refused_at = refused_at
        self.cut_from = self.limit if why == "429" else 0.0
        self.queue_cut = why == "queueing" and not self.ramped_back
        self.ramped_back, self.calm_rounds = False, 0
        if why == "429" and refused_at is not None and not storm:  # it took one fewer
            self._set(max(1.0, min(self.limit, refused_at - 1)))
        else:
            base = min(self.limit, refused_at) if refused_at is not None else self.limit
            cut = base * DECREASE
            if ratio:  # queueing: to what it serves at its calm latency (Little's law)
                cut = min(cut, self.latency.judged / ratio * QUEUE_HEADROOM)
            self._set(max(1.0, cut))
        self._next_epoch()
        self.stats.cuts[why] = self.stats.cuts.get(why, 0) + 1

    def _set(self, limit: float) -> None:
        self.limit = limit
        self.stats.limit = self.current
        self.stats.lowest = min(self.stats.lowest, self.current)
        self.stats.highest = max(self.stats.highest, self.current)
        self._wake()
