"""A circuit breaker per endpoint: stop the run when the endpoint fails every request, and
only then.

Some failures no wait will fix: a wrong model name (404), a key refused or revoked (401,
403), a quota used up (OpenAI's 429 ``insufficient_quota``). A request that meets one is
not recorded as its instruction's failure: it asks again after a short pause, and the
breaker counts. ``TRIP_AFTER`` such failures in a row at one endpoint, with no reply
between and from more than one request (a request failing alone may fail for itself: a
403 for its content), trip it. A server gone (refused connections, timeouts, 5xx) trips
it too, but only once it has failed ``TRIP_AFTER_DOWN`` requests in a row over at least
``DOWN_SECONDS``; meanwhile its requests ask again rather than fail, so a server
restarting is waited for. A reply resets the counts, so a healthy run with a few failing
requests never stops: the breaker counts a run of failures, not a lifetime ratio.

Tripped, it says why in one line (``why``) and sets ``broken``: the run stops as Ctrl-C
stops it, keeps everything finished, and goes on when run again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import openai

from codeclm.llm.reply import describe_error
from codeclm.redact import scrub

TRIP_AFTER = 8
TRIP_AFTER_DOWN = 30
DOWN_SECONDS = 60.0
#: Failures of a server down in a row, from more than one request, that are an outage
#: (waited for) rather than a bad moment (for the graph's retries).
OUTAGE_AFTER = 5
#: Asks of a request failing alone with a failure no wait fixes, before it fails.
ALONE_ASKS = 3
#: The pause before a request that met an endpoint-wide failure asks again (doubling).
PAUSE = 0.25
PAUSE_MAX = 4.0


class EndpointBroken(RuntimeError):
    """An endpoint failed every request: the run stopped (it goes on when run again)."""


def breaks_endpoint(exc: BaseException) -> bool:
    """A failure of the endpoint rather than of the request: no retry of it fares better
    until someone fixes the model name, the key or the quota."""
    if isinstance(exc, openai.RateLimitError):
        return quota_exhausted(exc)
    status = getattr(exc, "status_code", None)
    return status in (401, 403, 404)


def quota_exhausted(exc: BaseException) -> bool:
    """OpenAI's 429 for a quota used up: unlike a rate limit, no ``Retry-After`` clears it."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else getattr(exc, "code", None)
    return code == "insufficient_quota"


def server_down(exc: BaseException) -> bool:
    """The server does not answer, or answers only with errors of its own."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 500


def reason(exc: BaseException) -> str:
    """The provider's own words for a failed request, in one line, with its status and
    code (``HTTP 429 insufficient_quota: ...``) and never a key, even a masked one."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    status = getattr(exc, "status_code", None)
    head = " ".join(
        str(part) for part in (type(exc).__name__, status and f"HTTP {status}", code) if part
    )
    said = " ".join(str(message).split()) if message else describe_error(exc)
    return scrub(f"{head}: {said}")[:300]


@dataclass
class Breaker:
    """One endpoint's runs of failures (no wait fixes them; the server is down), and
    whether it has tripped."""

    endpoint: str
    refused: int = 0
    """Failures no wait fixes in a row (401, 403, 404, a quota used up)."""
    down: int = 0
    """Failures of a server down in a row (refused connections, timeouts, 5xx)."""
    failing_since: float | None = None
    failing: set[int] = field(default_factory=set)
    """The requests (``asker`` ids) in the run of failures: one alone never trips it, as
    its failure may be its own (a 403 for its content, say)."""
    why: str | None = None
    broken: asyncio.Event = field(default_factory=asyncio.Event)
    stops_run: bool = False
    """A run watches ``broken`` to stop as Ctrl-C does (``engine.stops``); else (``step``,
    a served graph) the request raises ``EndpointBroken`` itself."""

    answers: int = 0
    """Replies this endpoint gave in the run: none yet, and a request failing alone speaks
    for the endpoint (a wrong model, a key refused from the start)."""

    def answered(self) -> None:
        self.answers += 1
        self.reset()

    def reset(self) -> None:
        self.refused = self.down = 0
        self.failing_since = None
        self.failing.clear()

    def failed(self, exc: BaseException, asker: int = 0) -> bool:
        """Count a failed request (``asker``: which one, the same across its asks); True
        when the breaker has tripped (now or before)."""
        if self.why is not None:
            return True
        fatal, down = breaks_endpoint(exc), server_down(exc)
        if not (fatal or down):
            return False
        self.refused += fatal
        self.down += down
        self.failing.add(asker)
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if len(self.failing) < 2 and self.answers:
            return False  # one request failing, at an endpoint that answers: its own
        if self.refused >= TRIP_AFTER or (
            self.down >= TRIP_AFTER_DOWN and now - self.failing_since >= DOWN_SECONDS
        ):
            count = self.refused if fatal else self.down
            self.why = (
                f"{self.endpoint} failed {count} requests in a row, the last with {reason(exc)}"
            )
            self.broken.set()
        return self.why is not None

    def asks_again(self, exc: BaseException, asked: int) -> bool:
        """Whether a request that met ``exc`` asks again while the breaker counts, rather
        than fail for the graph: a failure no wait fixes, up to twice what trips the
        breaker while other requests fail too, ``ALONE_ASKS`` times while it fails alone at
        an endpoint that answers others (then it is the request's own, a 403 for its
        content say, marked ``own_failure``: final); a server down, once ``OUTAGE_AFTER``
        requests failed so in a row (an outage), up to twice what trips the breaker."""
        alone = len(self.failing) < 2 and self.answers > 0
        if breaks_endpoint(exc):  # alone, a few asks; with others failing, until it trips
            if asked < (ALONE_ASKS if alone else 2 * TRIP_AFTER):
                return True
            if alone:  # the endpoint answers others: this failure is the request's own
                exc.own_failure = True  # type: ignore[attr-defined]
            return False
        return server_down(exc) and self.down >= OUTAGE_AFTER and asked < 2 * TRIP_AFTER_DOWN

    def pause(self) -> float:
        """How long a request that met an endpoint-wide failure waits before asking again."""
        failures = max(self.refused, self.down, 1)
        return min(PAUSE * 2 ** min(failures - 1, 5), PAUSE_MAX)

    async def stop(self) -> None:
        """The endpoint is broken: wait to be cancelled with the run; or, with no run
        watching (``step``, a served graph), say so and count afresh, so a later request
        is sent again once the key, quota or server is fixed."""
        if not self.stops_run:
            message = self.message()
            self.why = None
            self.broken.clear()
            self.reset()
            raise EndpointBroken(message)
        await asyncio.Event().wait()  # the engine cancels the run, and this with it

    def message(self) -> str:
        return (
            f"stopped: {self.why}; nothing finished is lost: fix it and run the same command "
            "again to go on"
        )
