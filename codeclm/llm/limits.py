"""Pacing of one model role: its share of slots, its rate limits, and server-asked pauses.

Every request of a role passes ``RoleLimits.slot`` before it is sent. The slot is held
while the request is in flight; rate limits (aiolimiter's leaky buckets) are paid before
sending; a ``Retry-After`` from the server pauses the whole role, since its other requests
would be refused too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from aiolimiter import AsyncLimiter

from codeclm.config import RoleConfig


@dataclass
class RoleLimits:
    """The limits one role's requests share (built once per run, inside its event loop)."""

    shared: asyncio.Semaphore | None = None
    """``--concurrency``: requests in flight across both roles."""
    concurrent: asyncio.Semaphore | None = None
    requests: AsyncLimiter | None = None
    tokens: AsyncLimiter | None = None
    paused_until: float = field(default=0.0)
    """``time.monotonic()`` before which no request of this role is sent (``Retry-After``)."""

    @classmethod
    def for_role(cls, config: RoleConfig, shared: asyncio.Semaphore | None) -> RoleLimits:
        rpm, tpm = config.requests_per_minute, config.tokens_per_minute
        return cls(
            shared=shared,
            concurrent=asyncio.Semaphore(config.max_concurrency)
            if config.max_concurrency
            else None,
            requests=_paced(rpm, burst=max(1.0, rpm / 60)) if rpm else None,
            tokens=_paced(tpm, burst=tpm / 6) if tpm else None,
        )

    def pause(self, seconds: float) -> None:
        """The server asked this role to wait (HTTP 429 ``Retry-After``)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Hold a place for one request costing about ``tokens`` until it has been answered."""
        async with AsyncExitStack() as stack:
            for semaphore in (self.shared, self.concurrent):
                if semaphore is not None:
                    await stack.enter_async_context(semaphore)
            while (wait := self.paused_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if self.requests is not None:
                await self.requests.acquire()
            if self.tokens is not None:
                await self.tokens.acquire(min(tokens, self.tokens.max_rate))
            yield


def _paced(per_minute: float, burst: float) -> AsyncLimiter:
    """``per_minute`` spread evenly, allowing at most ``burst`` at once (not a minute's worth).

    Providers enforce per-minute limits over short windows, so sending a whole minute's
    budget in the first second would be refused.
    """
    return AsyncLimiter(burst, time_period=burst * 60 / per_minute)


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
