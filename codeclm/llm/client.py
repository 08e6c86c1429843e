"""Model roles over any OpenAI-compatible endpoint, through langchain-openai's ChatOpenAI.

Structured replies are requested with an OpenAI ``response_format`` JSON schema (llama.cpp
and vLLM turn it into a decoding grammar), taken out of whatever wraps them and validated
with pydantic (``codeclm.llm.parsing``). A reply that still does not validate raises
``UnparseableReply`` (a refusal, ``Refusal``); the graph's ``RetryPolicy`` retries those and
transient HTTP failures, and the node's error handler records what is left. ChatOpenAI's
own retries are off (``max_retries=0``) so the two layers never multiply.

Each role owns its HTTP client for the length of a run (keep-alive connections belong to
one event loop): the OpenAI SDK's aiohttp transport, which costs less CPU per request than
its default httpx pool at high concurrency (docs/performance.md). And its ``RoleLimits``:
slots, rate limits and ``Retry-After`` pauses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

import openai
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from codeclm.config import DEFAULT_API_KEY_ENV, ConfigError, RoleConfig
from codeclm.llm.cache import ResponseCache, request_key
from codeclm.llm.limits import RoleLimits, retry_after_seconds
from codeclm.llm.parsing import Refusal, ShortReply, UnparseableReply, parse_reply
from codeclm.llm.transport import ChatTransport
from codeclm.state import TokenUsage

__all__ = ["Refusal", "RoleModel", "ShortReply", "UnparseableReply", "is_transient"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: The longest pause a server's ``Retry-After`` may impose on a role (seconds).
RETRY_AFTER_CAP = 60.0


def is_permanent(exc: BaseException) -> bool:
    """No later run would fare better: the model refused, or the request itself is wrong."""
    if isinstance(exc, Refusal):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429)


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: rate limits, 5xx, timeouts, dropped connections, bad JSON."""
    if isinstance(exc, UnparseableReply | openai.LengthFinishReasonError):
        return True
    if getattr(exc, "is_retryable", False):  # langchain-core's classified model errors
        return True
    if isinstance(exc, openai.APIConnectionError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def describe_error(exc: BaseException) -> str:
    """A one-line reason for the records: the error's class and first line, never a key."""
    if isinstance(exc, openai.LengthFinishReasonError):
        return "reply cut at max_tokens before the JSON was complete"
    if isinstance(exc, Refusal | ShortReply):
        return str(exc)[:500]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]


@dataclass(frozen=True)
class Reply:
    """What a chat completion said: its text, why it stopped, a refusal, the tokens spent."""

    content: str
    finish_reason: str | None = None
    refusal: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)


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

    @property
    def model_name(self) -> str:
        return str(self.chat.model_name)

    async def aclose(self) -> None:
        await self.transport.aclose()
        await self.http_client.aclose()

    def _body(self, prompt: str, overrides: dict[str, Any]) -> dict[str, Any]:
        body = {**self.base_payload, **overrides}
        body["messages"] = [{"role": "user", "content": prompt}]
        return body

    async def _send(self, body: dict[str, Any]) -> Reply:
        """One chat completion (the SDK's errors, no retries: the graph's policy retries)."""
        data = await self.transport.complete(body)
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        return Reply(
            content=_text(message.get("content")),
            finish_reason=choice.get("finish_reason"),
            refusal=message.get("refusal"),
            usage=TokenUsage(
                calls=1,
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            ),
        )

    async def _complete(
        self,
        prompt: str,
        overrides: dict[str, Any],
        response_format: dict[str, Any] | None,
        accept: Callable[[Reply], tuple[T, str]],
    ) -> tuple[T, TokenUsage]:
        """One request, or its cached reply.

        ``accept`` turns the reply into a value and the text to cache (for a structured
        reply, the validated JSON, so a cached reply parses however it was wrapped or cut);
        it raises for a reply that must not be cached.

        The reply is stored while the request still holds its concurrency slot, so at any
        moment at most ``--concurrency`` completed-but-unsaved requests exist: only those
        can be sent again after a kill.
        """
        key = None
        if self.cache is not None:
            key = request_key(
                {
                    "model": self.model_name,
                    "base_url": self.chat.openai_api_base,
                    "prompt": prompt,
                    "temperature": overrides.get("temperature", self.chat.temperature),
                    "max_tokens": self.chat.max_tokens,
                    "seed": overrides.get("seed", self.chat.seed),
                    "response_format": response_format,
                }
            )
            hit = await self.cache.get(key)
            if hit is not None:
                value, _ = accept(Reply(hit[0]))
                return value, TokenUsage(cached_calls=1)
        body = self._body(prompt, overrides)
        if response_format is not None:
            # Sent as-is: we validate the reply ourselves (codeclm.llm.parsing).
            body["response_format"] = response_format
        # What a provider's token limiter counts: the prompt (about 4 characters a token)
        # plus every token the reply may use.
        estimate = len(prompt) // 4 + int(self.chat.max_tokens or 0)
        async with self.limits.slot(estimate):
            try:
                reply = await self._send(body)
            except openai.RateLimitError as exc:
                wait = retry_after_seconds(exc.response.headers)
                if wait is not None:  # the graph's retry waits for it at the slot
                    self.limits.pause(min(wait, RETRY_AFTER_CAP))
                raise
            value, cached_text = accept(reply)  # raises for a reply that must not be cached
            if key is not None and self.cache is not None:
                await self.cache.put(key, cached_text, reply.usage)
        return value, reply.usage

    async def text(self, prompt: str, **overrides: Any) -> tuple[str, TokenUsage]:
        """A free-text answer (used for the strong and target answers)."""

        def accept(reply: Reply) -> tuple[str, str]:
            return reply.content, reply.content

        return await self._complete(prompt, overrides, None, accept)

    async def structured(
        self, prompt: str, schema: type[M], **overrides: Any
    ) -> tuple[M, TokenUsage]:
        """A reply validated against ``schema``; raises ``UnparseableReply`` when it is not.

        Only a reply that validated is cached, so a retry asks the model again. A list
        reply cut at ``max_tokens`` keeps its complete items (``parse_reply``).
        """
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": schema.__name__,
                "strict": self.strict_schema,
                "schema": _json_schema(schema),
            },
        }

        def accept(reply: Reply) -> tuple[M, str]:
            value = parse_reply(
                reply.content,
                schema,
                cut=reply.finish_reason == "length",
                refusal=reply.refusal,
            )
            return value, value.model_dump_json()

        return await self._complete(prompt, overrides, response_format, accept)


@cache
def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """A reply model's JSON schema, built once (pydantic rebuilds it on every call)."""
    return schema.model_json_schema()


def _text(content: Any) -> str:
    """A message's content as text (a string, or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in content
    )


def request_payload(chat: ChatOpenAI) -> dict[str, Any]:
    """The body ChatOpenAI would send for one user message, without the message.

    Built once per role, so every setting ChatOpenAI maps (``max_completion_tokens``,
    ``seed``, ``model_kwargs``, ``extra_body`` …) is sent as it would send it.
    """
    payload = chat._get_request_payload([HumanMessage("")])
    payload.pop("messages", None)
    payload.update(payload.pop("extra_body", None) or {})
    return payload


def resolve_api_key(role: str, config: RoleConfig) -> str:
    """The role's key from its environment variable (never stored anywhere else).

    A local server (a base URL is set) needs no key unless the user named a variable.
    """
    key = os.environ.get(config.api_key_env)
    if key:
        return key
    if config.base_url and config.api_key_env == DEFAULT_API_KEY_ENV:
        return "not-needed"
    raise ConfigError(
        f"{role} model: environment variable {config.api_key_env} is not set (it holds the API key)"
    )


def make_role_model(
    role: str,
    config: RoleConfig,
    *,
    seed: int,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    shared_limit: asyncio.Semaphore | None = None,
    cache: ResponseCache | None = None,
) -> RoleModel:
    """Build a role's ChatOpenAI; ``base_url``/``model``/``api_key`` override (embedded use)."""
    key = api_key if api_key is not None else resolve_api_key(role, config)
    http_client = openai.DefaultAioHttpClient(timeout=config.timeout)
    chat = ChatOpenAI(
        model=model or config.model or "default",
        base_url=base_url or config.base_url,
        api_key=SecretStr(key),
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        timeout=config.timeout,
        max_retries=0,
        seed=seed,
        http_async_client=http_client,
    )
    return RoleModel(
        role=role,
        chat=chat,
        base_payload=request_payload(chat),
        transport=ChatTransport(chat.root_async_client, config.timeout),
        http_client=http_client,
        strict_schema=config.strict_schema,
        limits=RoleLimits.for_role(config, shared_limit),
        cache=cache,
    )
