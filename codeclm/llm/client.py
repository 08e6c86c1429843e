"""Model roles over any OpenAI-compatible endpoint, through langchain-openai's ChatOpenAI.

Structured replies are requested with an OpenAI ``response_format`` JSON schema (llama.cpp
and vLLM turn it into a decoding grammar; a server without it gets json_object, then plain
prompting: ``reply.OutputFormat``), taken out of whatever wraps them and validated with
pydantic (``codeclm.llm.parsing``). A reply that still does not validate raises
``UnparseableReply`` (a refusal, ``Refusal``); the graph's ``RetryPolicy`` retries those and
transient HTTP failures, and the node's error handler records what is left. ChatOpenAI's
own retries are off (``max_retries=0``) so the two layers never multiply. A reply cut at
``max_tokens`` is asked again with twice the budget, up to the role's ceiling.

Each role owns its HTTP client for the length of a run (keep-alive connections belong to
one event loop): the OpenAI SDK's aiohttp transport, which costs less CPU per request than
its default httpx pool at high concurrency (docs/performance.md). And its ``RoleLimits``:
slots, rate limits and ``Retry-After`` pauses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from codeclm.cost.meter import Admitted, Meter
from codeclm.llm.admission import Ticket
from codeclm.llm.batch import Batcher
from codeclm.llm.breaker import reason
from codeclm.llm.cache import ResponseCache, cached_reply
from codeclm.llm.limits import RateLimited, RoleLimits, ServerBusy
from codeclm.llm.parsing import CutReply, UnparseableReply, parse_reply
from codeclm.llm.reply import (
    OutputFormat,
    OutputMode,
    Reply,
    first_line,
    format_for,
    rejects_format,
)
from codeclm.llm.request import CUT, History, cache_key, json_schema, request_body, spoken
from codeclm.llm.tracing import ModelSpan, model_span
from codeclm.llm.transport import ChatTransport
from codeclm.redact import server_name
from codeclm.state import TokenUsage

__all__ = ["RoleModel"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


async def _unmetered(usage: TokenUsage, cut: bool) -> None:
    """No meter (a graph served by ``langgraph dev``): nothing to record."""


@dataclass(frozen=True)
class RoleModel:
    """One model role (strong or target) and how to call it.

    ``chat`` (langchain-openai's ``ChatOpenAI``) holds the role's configuration and builds
    the request body once (``base_payload``); each call then goes out through
    ``transport`` with the headers of the OpenAI client it holds, skipping LangChain's
    per-call message and callback machinery and the SDK's request building, which cost
    more CPU than the HTTP request itself (docs/performance.md).
    """

    role: str
    chat: ChatOpenAI
    http_client: openai.DefaultAioHttpClient
    transport: ChatTransport
    base_payload: dict[str, Any]
    strict_schema: bool = False
    limits: RoleLimits = field(default_factory=RoleLimits)
    cache: ResponseCache | None = None
    context_tokens: int | None = None
    """The model's context size, when known (set by the start-up preflight)."""
    max_tokens_ceiling: int = 8192
    """The largest output budget a reply cut at ``max_tokens`` is asked again with."""
    output: OutputFormat = field(default_factory=OutputFormat)
    meter: Meter | None = None
    """Prices and records every answered request, and holds the spending caps."""
    batcher: Batcher | None = None
    """Batch mode (``--batch``): requests go through the provider's Batch API."""
    grammars: bool = False
    """The server holds a reply to a llama.cpp grammar a step declares (``Step.grammar``):
    set for the embedded server, whose toy model cannot follow the judge's format unaided."""

    @property
    def model_name(self) -> str:
        return str(self.chat.model_name)

    @property
    def max_tokens(self) -> int:
        return int(self.chat.max_tokens or 1024)

    def ceiling(self, prompt: str) -> int:
        """The largest budget a re-ask of ``prompt`` may have: the configured ceiling,
        within the model's context beside the prompt (about 3 characters a token, to be safe)."""
        ceiling = max(self.max_tokens, self.max_tokens_ceiling)
        if self.context_tokens:
            room = self.context_tokens - len(prompt) // 3 - 16
            ceiling = min(ceiling, max(room, self.max_tokens))
        return ceiling

    async def aclose(self) -> None:
        await self.transport.aclose()
        await self.http_client.aclose()

    async def _send(self, body: dict[str, Any], max_tokens: int, key: str | None) -> Reply:
        """One chat completion (the SDK's errors, no retries: the graph's policy retries);
        in batch mode, a line of a batch (``key``: its custom_id)."""
        if self.batcher is not None and key is not None:
            data = await self.batcher.complete(key, body)
        else:
            data = await self.transport.complete(body)
        return Reply.from_completion(data, body["messages"], max_tokens)

    async def _complete(
        self,
        prompt: str,
        overrides: dict[str, Any],
        structured: dict[str, Any] | None,
        accept: Callable[[Reply], tuple[T, str]],
        history: History = (),
    ) -> tuple[T, TokenUsage]:
        """One request, or its cached reply (a run in the trace when tracing is on).

        ``accept`` turns the reply into a value and the text to cache (for a structured
        reply, the validated JSON, so a cached reply parses however it was wrapped or cut);
        it raises for a reply that must not be cached. ``structured``: the reply's JSON
        schema, sent as the server takes it (``OutputFormat``). ``history``: the turns
        of the conversation before ``prompt``.
        """
        max_tokens = int(overrides.get("max_tokens", self.max_tokens))
        step = (structured or {}).get("name", "text")
        server = self.limits.endpoint.gate.name
        whole = spoken(history, prompt)
        with model_span(self.role, self.model_name, server, step, whole, max_tokens) as span:
            return await self._ask(prompt, overrides, structured, accept, span, history)

    async def _ask(
        self,
        prompt: str,
        overrides: dict[str, Any],
        structured: dict[str, Any] | None,
        accept: Callable[[Reply], tuple[T, str]],
        span: ModelSpan,
        history: History,
    ) -> tuple[T, TokenUsage]:
        """``_complete``'s request, asked until it is answered or fails for the graph.

        The reply is stored while the request still holds its concurrency slot, so at any
        moment at most ``--concurrency`` completed-but-unsaved requests exist: only those
        can be sent again after a kill.
        """
        max_tokens = int(overrides.get("max_tokens", self.max_tokens))
        refusals = busy = asked = 0  # 429s and 5xx met by this request; its asks
        whole = spoken(history, prompt)
        asker = hash((self.model_name, whole))  # this request, across the graph's retries
        while True:
            mode = self.output.mode if structured is not None else None
            sent_format = format_for(mode, structured)
            key = None
            if self.cache is not None or self.batcher is not None:
                key = cache_key(self._sender, prompt, overrides, max_tokens, sent_format, history)
            hit = await cached_reply(self.cache, key, structured is not None, max_tokens)
            if hit is not None:
                value, _ = accept(hit[0])
                span.done(hit[0].content, hit[1])
                return value, hit[1]
            if self.limits.endpoint.breaker.why is not None:  # broken: nothing more is sent
                await self.limits.endpoint.breaker.stop()
            # What a provider's token limiter counts: the prompt (about 4 characters a
            # token) plus every token the reply may use.
            estimate = len(whole) // 4 + max_tokens
            # Metered until the reply is cached: a run stopped at its cost cap waits for
            # this, so nothing it paid for is asked (and paid) again.
            async with (
                self.limits.slot(estimate, first=asked > 0) as ticket,
                self._metered(whole, max_tokens) as admitted,
            ):
                budget = {**overrides, "max_tokens": admitted.max_tokens}  # less near the cap
                body = request_body(self.base_payload, prompt, budget, history, sent_format)
                gate = self.limits.endpoint.gate
                sent = time.monotonic()
                try:
                    reply = await self._send(body, admitted.max_tokens, key)
                except openai.APIError as exc:
                    wait = self._failed(ticket, exc, mode, (refusals, busy), asked, asker)
                    span.again(reason(exc)[:120])
                else:
                    # The server's time: from the send to the reply, not this process's own
                    # waits before (the meter) or after (the ledger's and cache's writes),
                    # nor its event loop's lateness as it reads the reply.
                    took = gate.loop_lag.server_time(sent)
                    await admitted.settle(reply.usage, reply.cut)  # paid: before anything else
                    kind = f"{self.model_name}/{(structured or {}).get('name', 'text')}"
                    self.limits.endpoint.breaker.answered()
                    gate.answered(ticket, kind, reply.usage.output_tokens, seconds=took)
                    span.done(reply.content, reply.usage, reply.finish_reason)
                    try:
                        value, cached_text = accept(reply)  # raises for a reply not to be cached
                    except UnparseableReply as exc:
                        exc.usage = reply.usage
                        raise
                    if key is not None and self.cache is not None:
                        await self.cache.put(key, cached_text, reply.usage)
                    return value, reply.usage
            # Asked again here, outside the slot: a rate limit's wait, or an endpoint-wide
            # failure while the breaker counts (a format the server rejects: at once).
            refusals += isinstance(wait, RateLimited)
            busy += isinstance(wait, ServerBusy)
            asked += 1
            await asyncio.sleep(wait)

    def _failed(
        self,
        ticket: Ticket,
        exc: openai.APIError,
        mode: OutputMode | None,
        met: tuple[int, int],
        asked: int,
        asker: int,
    ) -> float:
        """What a failed request does next: the seconds before it is asked again (a format
        the server rejects: at once; else as its pacing says), or it raises for the graph's
        retry policy (and, at last, the node's error record)."""
        if (
            isinstance(exc, openai.APIStatusError)
            and mode not in (None, "prompt")
            and rejects_format(exc)
        ):
            why = f"HTTP {exc.status_code}: {first_line(exc.message)}"
            self.output.step_down(mode, self.role, self._endpoint, why)
            return 0.0
        return self.limits.after_failure(ticket, exc, *met, asked=asked, asker=asker)

    @asynccontextmanager
    async def _metered(self, prompt: str, max_tokens: int) -> AsyncIterator[Admitted]:
        """A request admitted by the cost meter (within the caps, maybe with a smaller
        budget near them); its ``settle`` records the reply's usage in the ledger as soon
        as it is in: every answered request is paid for, whatever becomes of the reply."""
        if self.meter is None:
            yield Admitted(_unmetered, max_tokens)
            return
        batch = self.batcher is not None
        async with self.meter.request(self.role, prompt, max_tokens, batch) as admitted:
            yield admitted

    @property
    def _sender(self) -> dict[str, Any]:
        """What of the role enters a request's cache key (``request.cache_key``)."""
        chat = self.chat
        return {
            "model": self.model_name,
            "base_url": chat.openai_api_base,
            "temperature": chat.temperature,
            "seed": chat.seed,
        }

    @property
    def _endpoint(self) -> str:
        """The server, as messages name it (no user, password or query)."""
        return server_name(self.chat.openai_api_base)

    async def text(
        self,
        prompt: str,
        *,
        complete: bool = False,
        check: Callable[[Reply], object] | None = None,
        history: History = (),
        **overrides: Any,
    ) -> tuple[Reply, TokenUsage]:
        """A free-text reply, its reasoning apart; ``history``: the conversation before
        ``prompt`` (each model's own earlier answers in it).

        ``complete``: a reply cut at ``max_tokens`` is asked again with twice the budget, up
        to ``ceiling``; the last reply is returned whether or not it was complete (its
        ``problem`` says). ``check`` raises for a reply that must not be kept (nor cached),
        such as a judge's line without two scores: a retry then asks the model again. A cut
        reply that will be asked again is not checked (a judge cut while thinking has no
        line yet); every reply kept is cached, a cut one too, so a resumed run re-asks
        nothing it paid for.
        """
        budget = int(overrides.pop("max_tokens", self.max_tokens))
        ceiling = self.ceiling(spoken(history, prompt))
        total = TokenUsage()

        def accept(reply: Reply) -> tuple[Reply, str]:
            again = complete and reply.cut and budget < ceiling
            if check is not None and not again:
                check(reply)
            return reply, reply.cached()

        while True:
            reply, usage = await self._complete(
                prompt, {**overrides, "max_tokens": budget}, None, accept, history
            )
            total = total + usage
            if not (complete and reply.cut and budget < ceiling):
                return reply, total
            budget = min(budget * 2, ceiling)

    async def structured(
        self, prompt: str, schema: type[M], **overrides: Any
    ) -> tuple[M, TokenUsage]:
        """A reply validated against ``schema``; raises ``UnparseableReply`` when it is not.

        Only a reply that validated is cached, so a retry asks the model again; and a reply
        cut at ``max_tokens`` with nothing usable in it, as a mark (``CUT``), so a resumed
        run goes on to the larger budget without paying for the cut one again. A list
        reply cut at ``max_tokens`` keeps its complete items (``parse_reply``); any other
        cut reply is asked again with twice the budget, up to ``ceiling``, and still cut
        there raises ``CutReply``.
        """
        budget = int(overrides.pop("max_tokens", self.max_tokens))
        ceiling = self.ceiling(prompt)
        total = TokenUsage()

        def accept(reply: Reply) -> tuple[M | None, str]:
            if reply.content == CUT:  # cut before, at this budget: asked again, larger
                return None, CUT
            try:
                refusal = reply.refusal
                if reply.finish_reason == "content_filter":
                    refusal = refusal or "stopped by the provider's content filter"
                value = parse_reply(reply.content, schema, cut=reply.cut, refusal=refusal)
            except CutReply:
                return None, CUT
            return value, value.model_dump_json()

        block = {**json_schema(schema), "strict": self.strict_schema}
        while True:
            value, usage = await self._complete(
                prompt, {**overrides, "max_tokens": budget}, block, accept
            )
            total = total + usage
            if value is not None:
                return value, total
            if budget >= ceiling:
                error = CutReply(f"reply cut at {budget} tokens, the most it may have")
                error.usage = total
                raise error
            budget = min(budget * 2, ceiling)
