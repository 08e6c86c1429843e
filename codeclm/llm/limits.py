"""Pacing of one model role: its endpoint's adaptive limit, its share of slots, its rate
limits, and server-asked pauses.

Every request of a role passes ``RoleLimits.slot`` before it is sent: the role's own
``max_concurrency`` and rate limits (aiolimiter's leaky buckets), its server's gate
(``admission.AdaptiveLimit``, shared by every role on that base URL), and
``--concurrency``. The slot is held while the request is in flight. With adaptive concurrency
off, a ``Retry-After`` from the server pauses the whole role; on, the refused request waits
it out alone while the gate's limit is cut.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import openai
from aiolimiter import AsyncLimiter

from codeclm.config import RoleConfig
from codeclm.llm.admission import AdaptiveLimit, Ticket
from codeclm.llm.breaker import Breaker


@dataclass
class Endpoint:
    """One model at one server: its breaker, and the gate of its server, which every model
    the server serves shares (they share its hardware, or its key's limit)."""

    name: str
    """``model @ base URL``."""
    gate: AdaptiveLimit
    breaker: Breaker

    @classmethod
    def at(cls, gate: AdaptiveLimit, model: str) -> Endpoint:
        name = f"{model} @ {gate.name}"
        return cls(name, gate, Breaker(name))


#: The longest pause a server's ``Retry-After`` may impose (seconds).
RETRY_AFTER_CAP = 60.0
#: 429s (rate limits) one request waits out before the graph's retry policy sees one.
RATE_LIMIT_PATIENCE = 50


#: A 502, 503 or 504 is asked again this many times by the request itself (the transport's
#: retries, as the OpenAI SDK's and DataDesigner's are) before the graph's retry policy,
#: whose node retry and longer backoff are for failures that last ...
BUSY_RETRIES = 2
#: ... after this many seconds, doubled each time, and a random share of it more.
BUSY_PAUSE = 0.25


class RateLimited(float):
    """Seconds to wait before asking again after a 429 (counted against the patience)."""


class ServerBusy(float):
    """Seconds to wait before asking again after a 502, 503 or 504."""


def _unlimited() -> Endpoint:
    return Endpoint.at(AdaptiveLimit("", 1_000_000, adaptive=False), "")


@dataclass
class RoleLimits:
    """The limits one role's requests share (built once per run, inside its event loop)."""

    endpoint: Endpoint = field(default_factory=_unlimited)
    shared: asyncio.Semaphore | None = None
    """``--concurrency``: requests in flight across both roles."""
    concurrent: asyncio.Semaphore | None = None
    requests: AsyncLimiter | None = None
    tokens: AsyncLimiter | None = None
    paused_until: float = field(default=0.0)
    """``time.monotonic()`` before which no request of this role is sent (``Retry-After``)."""

    @classmethod
    def for_role(
        cls, config: RoleConfig, shared: asyncio.Semaphore | None, endpoint: Endpoint
    ) -> RoleLimits:
        rpm, tpm = config.requests_per_minute, config.tokens_per_minute
        return cls(
            endpoint=endpoint,
            shared=shared,
            concurrent=asyncio.Semaphore(config.max_concurrency)
            if config.max_concurrency
            else None,
            requests=_paced(rpm, burst=max(1.0, rpm / 60)) if rpm else None,
            tokens=_paced(tpm, burst=tpm / 6) if tpm else None,
        )

    def after_failure(
        self, ticket: Ticket, exc: BaseException, refusals: int, busy: int, asked: int, asker: int
    ) -> float:
        """The seconds before a failed request is asked again, or it raises.

        An endpoint-wide failure (a key refused, a model unknown, a quota used up, a server
        down while others fail too) is asked again while the breaker counts
        (``Breaker.asks_again``), not recorded as the instruction's failure; a 429 waits
        out its ``Retry-After`` and cuts the gate (a storm slows the run: each request
        waits out up to ``RATE_LIMIT_PATIENCE`` before one counts against ``--attempts``);
        a 503 or a timeout tells the gate of overload; a 502, 503 or 504 is asked again
        after a short pause ``BUSY_RETRIES`` times (``busy``: those met so far), as a
        transport retries; anything else goes to the graph's retry policy."""
        gate, breaker = self.endpoint.gate, self.endpoint.breaker
        status = getattr(exc, "status_code", None)
        if status == 503 or isinstance(exc, openai.APITimeoutError):
            gate.refused(ticket, 503)
        if breaker.failed(exc, asker) or breaker.asks_again(exc, asked):
            return breaker.pause()
        if isinstance(exc, openai.RateLimitError):
            headers = exc.response.headers
            gate.refused(ticket, 429, rate_window=rate_window_spent(headers))
            wait = min(retry_after_seconds(headers) or 1.0, RETRY_AFTER_CAP)
            if not gate.adaptive:
                self.pause(wait)  # the whole role waits, as the server asks
            if refusals < RATE_LIMIT_PATIENCE:
                return RateLimited(wait)
        elif status in (502, 503, 504) and busy < BUSY_RETRIES:
            pause = BUSY_PAUSE * 2**busy
            return ServerBusy(pause + random.uniform(0, pause))
        elif status != 503:
            gate.failed()
        raise exc

    def pause(self, seconds: float) -> None:
        """The server asked this role to wait (HTTP 429 ``Retry-After``)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    @asynccontextmanager
    async def slot(self, tokens: int, first: bool = False) -> AsyncIterator[Ticket]:
        """Hold a place for one request costing about ``tokens`` until it has been answered
        (its ticket tells the gate how the reply came back); ``first`` goes before the
        others at the gate (a request asked again)."""
        async with AsyncExitStack() as stack:
            # the role's own waits first, so a request parked there holds no place at its
            # server's gate (the gate counts what is on the wire); --concurrency last
            if self.concurrent is not None:
                await stack.enter_async_context(self.concurrent)
            while (wait := self.paused_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if self.requests is not None:
                await self.requests.acquire()
            if self.tokens is not None:
                await self.tokens.acquire(min(tokens, self.tokens.max_rate))
            await stack.enter_async_context(self.endpoint.gate.slot(first))
            if self.shared is not None:
                await stack.enter_async_context(self.shared)
            gate = self.endpoint.gate
            yield Ticket(gate.epoch, gate.in_flight)


def _paced(per_minute: float, burst: float) -> AsyncLimiter:
    """``per_minute`` spread evenly, allowing at most ``burst`` at once (not a minute's worth).

    Providers enforce per-minute limits over short windows, so sending a whole minute's
    budget in the first second would be refused.
    """
    return AsyncLimiter(burst, time_period=burst * 60 / per_minute)


RATE_WINDOWS = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")
"""The headers OpenAI (and gateways copying it) send with what is left of each window."""


def rate_window_spent(headers: object) -> bool:
    """Whether a 429's headers say a requests- or tokens-per-minute window is used up (a
    rate limit, which fewer requests at once would not lift)."""
    get = getattr(headers, "get", None)
    if get is None:
        return False
    return any(str(get(name, "")).strip() == "0" for name in RATE_WINDOWS)


def retry_after_seconds(headers: object) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, or ``Retry-After`` in seconds or as a date."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
