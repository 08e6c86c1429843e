"""How the mock serves, as the servers and gateways codeclm meets do: a fixed latency and
a number of slots (an inference engine's batch), or a latency that grows with load (a
server that queues rather than refuses, past its knee), a hidden limit of requests in
flight above which it answers 429 (a gateway's per-key limit), and the failures no wait
fixes: a key refused, a quota used up, a model it does not serve.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from codeclm.bench.mock_model import STRONG_MODEL, TARGET_MODEL
from codeclm.bench.mock_server import Answer

_SERVED = (STRONG_MODEL, TARGET_MODEL)


def _error(status: int, message: str, kind: str, code: str | None = None) -> Answer:
    error: dict[str, Any] = {"message": message, "type": kind}
    if code is not None:
        error["code"] = code
    return status, {"error": error}, {}


@dataclass
class Serving:
    """The server's side of the mock (``MockLLM``'s fields; tests change them)."""

    #: Seconds each call takes (spent holding a slot).
    latency: float = 0.0
    #: While this event is not set, every call waits (holding its slot): a test keeps a
    #: client at work for as long as its checks take, not for a guessed time.
    hold: threading.Event | None = None
    #: Calls served at once; the rest wait for a slot. ``None``: no limit.
    slots: int | None = None
    #: Past this many calls in flight, each takes longer in proportion (a server that
    #: queues: its throughput stays at ``knee / latency`` calls a second). ``None``: flat.
    load_knee: int | None = None
    #: Above this many calls in flight, a call is answered 429 at once, with ``retry_after``
    #: (a gateway's limit per key, which it does not announce).
    hidden_limit: int | None = None
    hidden_retry_after: float = 1.0
    #: Reported as ``max_model_len`` by ``GET /v1/models`` (as vLLM does).
    context_tokens: int = 8192
    #: When set, a request without ``Authorization: Bearer <api_key>`` gets HTTP 401.
    api_key: str | None = None
    #: From this chat call on (counting from 1), every one gets 401: a key revoked mid-run.
    revoke_key_at: int | None = None
    #: From this chat call on, every one gets OpenAI's 429 ``insufficient_quota``.
    quota_gone_at: int | None = None
    #: From this chat call on, every one gets 503: the server is down.
    down_at: int | None = None
    #: A call whose prompt contains this text gets 403 (a gateway flagging its content).
    forbid_when: str | None = None
    strict_models: bool = False
    """A chat request naming a model it does not serve gets HTTP 404 model_not_found."""
    in_flight: Counter[str] = field(default_factory=Counter)
    peak_in_flight: Counter[str] = field(default_factory=Counter)
    """The most calls of each model served at once."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Chat calls answered, by HTTP status (200 included)."""
    chat_calls: int = 0
    busy_seconds: float = 0.0
    """Sum over calls served of their service time (latency, slowed by load)."""
    _slots: asyncio.Semaphore | None = None

    def open_slots(self) -> None:
        self._slots = asyncio.Semaphore(self.slots or 1_000_000)

    def refuse(self, body: dict[str, Any]) -> Answer | None:
        """The answer to a chat call refused before any work: a key revoked, a quota used
        up, a model not served, or the hidden limit passed; None: it is served."""
        self.chat_calls += 1
        number, model = self.chat_calls, body["model"]
        if self.revoke_key_at is not None and number >= self.revoke_key_at:
            message = "Incorrect API key provided: sk-live-****abcd."  # as OpenAI quotes it
            return _error(401, message, "invalid_request_error", "invalid_api_key")
        if self.quota_gone_at is not None and number >= self.quota_gone_at:
            message = "You exceeded your current quota, please check your plan and billing."
            return _error(429, message, "insufficient_quota", "insufficient_quota")
        if self.down_at is not None and number >= self.down_at:
            return _error(503, "upstream connect error", "server_error")
        if self.forbid_when and self.forbid_when in body["messages"][-1]["content"]:
            return _error(403, "The input was flagged by moderation.", "permission_error")
        if self.strict_models and model not in _SERVED:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return _error(404, message, "invalid_request_error", "model_not_found")
        if self.hidden_limit is not None and sum(self.in_flight.values()) >= self.hidden_limit:
            status, payload, _ = _error(429, "too many requests in flight", "rate_limit")
            return status, payload, {"Retry-After": f"{self.hidden_retry_after:g}"}
        return None

    async def serve_call(self, role: str, extra_seconds: float = 0.0) -> None:
        """Serve one call: wait for a slot, then its latency (longer past the knee)."""
        assert self._slots is not None, "open_slots() first"
        async with self._slots:
            self.in_flight[role] += 1
            self.peak_in_flight[role] = max(self.peak_in_flight[role], self.in_flight[role])
            try:
                seconds = self.latency + extra_seconds
                if self.load_knee is not None:
                    seconds *= max(1.0, sum(self.in_flight.values()) / self.load_knee)
                self.busy_seconds += seconds
                if seconds:
                    await asyncio.sleep(seconds)
                while self.hold is not None and not self.hold.is_set():
                    await asyncio.sleep(0.02)
            finally:
                self.in_flight[role] -= 1
