"""A prompt-keyed response cache beside the checkpoints (``DIR/llm_cache.sqlite``, or a
table of the PostgreSQL store).

Any node may run twice: after a kill mid-node, on a retry of its sibling, on a replay or a
fork. The cache makes the second run free: a request identical to one already answered
(same model, endpoint, prompt, and sampling and schema parameters) is answered from disk.

Why not LangChain's ``BaseCache``: it stores a reply *before* we validate it, so a retry of
an unparseable reply would replay the same bad reply forever. Here a structured reply is
stored only once it has validated, and every entry is committed as soon as it is written,
so a ``kill -9`` right after a call completed still finds it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

from codeclm.llm.reply import Reply
from codeclm.state import TokenUsage


async def cached_reply(
    cache: ResponseCache | None, key: str | None, structured: bool, max_tokens: int
) -> tuple[Reply, TokenUsage] | None:
    """The cache's reply to a request (a structured one: its validated JSON), and what it
    saved; None: not there, or cached by an older codeclm in a form it cannot read."""
    if cache is None or key is None or (hit := await cache.get(key)) is None:
        return None
    text, paid = hit
    if structured:
        reply: Reply | None = Reply(text, "stop", max_tokens=max_tokens)
    else:
        reply = Reply.from_cache(text, max_tokens)
    if reply is None:
        return None
    saved = TokenUsage(
        cached_calls=1, saved_input_tokens=paid.input_tokens, saved_output_tokens=paid.output_tokens
    )
    return reply, saved


def request_key(parts: dict[str, Any]) -> str:
    """A stable digest of everything that determines the reply."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache(ABC):
    """Replies by request key; every write is durable when ``put`` returns."""

    @abstractmethod
    async def get(self, key: str) -> tuple[str, TokenUsage] | None:
        """The stored reply and its usage, or None."""

    @abstractmethod
    async def put(self, key: str, content: str, usage: TokenUsage) -> None:
        """Store a validated reply (a second put of the same key keeps one)."""
