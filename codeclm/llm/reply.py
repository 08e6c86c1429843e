"""What a model said, how a call failed, and how its server takes structured replies.

``Reply`` is one chat completion as codeclm reads it: the answer with its reasoning set
apart (a ``reasoning_content`` / ``reasoning`` field, or ``<think>`` blocks), why it
stopped, a refusal, the tokens spent, and whether it is a real, complete answer
(``problem``). ``OutputFormat`` is the structured-output fallback a role learns during a
run: json_schema, then json_object, then plain prompting. ``is_transient`` and
``is_permanent`` sort a failed call: worth retrying now, or no later run fares better.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

from codeclm.llm.parsing import CutReply, Refusal, UnparseableReply, is_refusal, split_reasoning
from codeclm.redact import scrub
from codeclm.state import TokenUsage

log = logging.getLogger("codeclm")


#: Client errors a later run may not meet: a timeout, a conflict, a rate limit, a key.
NOT_FINAL = (401, 403, 408, 409, 429)


def is_permanent(exc: BaseException) -> bool:
    """No later run would fare better: the model refused, the request itself is wrong, or
    the reply runs past the ceiling of ``max_tokens`` (the same settings stop it there
    again)."""
    if isinstance(exc, Refusal | CutReply) or getattr(exc, "own_failure", False):
        return True  # (own_failure: refused for itself where others are answered)
    status = getattr(exc, "status_code", None)
    # 401 and 403: a key refused; a later run with a good one fares better
    return isinstance(status, int) and 400 <= status < 500 and status not in NOT_FINAL


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: rate limits, 5xx, timeouts, dropped connections, bad JSON.

    Not a reply cut at the ceiling of ``max_tokens``: the same request would stop there again.
    """
    if isinstance(exc, CutReply):
        return False
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
    if isinstance(exc, Refusal | CutReply):
        return str(exc)[:500]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return scrub(f"{type(exc).__name__}: {text}")[:500]


def sampling_seed(seed: int, *where: object) -> int:
    """A request's own sampling seed, so an ask that must differ from another does.

    The same ask in a resumed or replayed run gets the same seed (and its cached reply).
    """
    return random.Random(":".join(map(str, (seed, *where)))).getrandbits(31)


@dataclass(frozen=True)
class Reply:
    """What a chat completion said: its answer without the reasoning, the reasoning (from
    ``reasoning_content`` / ``reasoning`` or a leading ``<think>`` block), why it stopped, a
    refusal, and the tokens spent."""

    content: str
    finish_reason: str | None = None
    refusal: str | None = None
    reasoning: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    max_tokens: int = 0
    """The output budget it was asked with."""

    @property
    def cut(self) -> bool:
        """It stopped at ``max_tokens``: whatever it says is not complete."""
        return self.finish_reason == "length"

    @property
    def refused(self) -> bool:
        """The model declined: the server's ``refusal`` field, its content filter, or a
        declining text."""
        filtered = self.finish_reason == "content_filter"
        return bool(self.refusal) or filtered or is_refusal(self.content)

    @property
    def problem(self) -> str | None:
        """Why this reply is not a real, complete answer; None when it is one."""
        if self.refused:
            text = self.refusal or self.content
            if self.finish_reason == "content_filter":
                text = "stopped by the provider's content filter"
            return f"refused: {' '.join(text.split())[:200]}"
        if self.cut:
            return f"answer cut at {self.max_tokens} tokens"
        if not self.content.strip():
            return "empty answer"
        return None

    def cached(self) -> str:
        """The reply as the response cache keeps it (a cut one or a refusal too: a re-ask
        differs in its budget or its sampling seed, so it is another request)."""
        return json.dumps(
            {
                "content": self.content,
                "reasoning": self.reasoning,
                "finish_reason": self.finish_reason,
                "refusal": self.refusal,
                "max_tokens": self.max_tokens,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_cache(cls, text: str, max_tokens: int) -> Reply | None:
        """A cached free-text reply; None for one an earlier codeclm cached as bare text,
        which did not keep why it stopped nor its reasoning apart: it is asked again."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or "finish_reason" not in data:
            return None
        return cls(
            content=str(data.get("content") or ""),
            finish_reason=data.get("finish_reason"),
            refusal=data.get("refusal"),
            reasoning=str(data.get("reasoning") or ""),
            max_tokens=int(data.get("max_tokens") or max_tokens),
        )

    @property
    def said(self) -> str:
        """What the reply puts in a conversation: its answer, or its refusal."""
        return self.content or (self.refusal or "")

    @classmethod
    def from_completion(
        cls, data: dict[str, Any], messages: list[dict[str, str]], max_tokens: int
    ) -> Reply:
        """A chat completion's reply (``messages``: what was sent, counted when the server
        reports no usage: never free)."""
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        if not usage:
            said = json.dumps(message.get("content") or "")
            usage = {
                "prompt_tokens": len(json.dumps(messages)) // 4,
                "completion_tokens": len(said) // 4,
            }
        details = usage.get("completion_tokens_details") or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        thought, content = split_reasoning(message_text(message.get("content")))
        apart = message_text(message.get("reasoning_content") or message.get("reasoning"))
        return cls(
            content=content,
            finish_reason=choice.get("finish_reason"),
            refusal=message.get("refusal"),
            reasoning="\n\n".join(part for part in (apart.strip(), thought) if part),
            max_tokens=max_tokens,
            usage=TokenUsage(
                calls=1,
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                reasoning_tokens=int(details.get("reasoning_tokens") or 0),
                cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
            ),
        )


OutputMode = Literal["json_schema", "json_object", "prompt"]
_FALLBACK: dict[OutputMode, OutputMode] = {"json_schema": "json_object", "json_object": "prompt"}


@dataclass
class OutputFormat:
    """How a role's server takes structured replies, learnt during the run.

    ``json_schema`` first (a grammar on llama.cpp and vLLM); a server that answers it with
    HTTP 400 gets ``json_object``; one that refuses that too, plain prompting (every prompt
    asks for the JSON, and ``parsing`` finds it). Said once per role, in one line.
    """

    mode: OutputMode = "json_schema"

    def step_down(self, rejected: OutputMode, role: str, endpoint: str, why: str) -> None:
        """The server refused ``rejected``: use the next mode (once, whoever saw it first)."""
        if self.mode != rejected or rejected not in _FALLBACK:
            return
        self.mode = _FALLBACK[rejected]
        instead = "plain prompting" if self.mode == "prompt" else f"response_format {self.mode}"
        log.warning(
            "%s model: %s rejects response_format %s (%s); using %s for the rest of the run",
            role,
            endpoint,
            rejected,
            why,
            instead,
        )


def rejects_format(exc: BaseException) -> bool:
    """An HTTP 400/422 that names the request's ``response_format``: the server lacks it."""
    if not isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return False
    text = f"{exc.message} {exc.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object"))


def format_for(mode: OutputMode | None, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``response_format`` a structured request is sent with in ``mode``."""
    if mode is None or mode == "prompt" or schema is None:
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": schema}


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def message_text(content: Any) -> str:
    """A message's content as text (a string, or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in content
    )
