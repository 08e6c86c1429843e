"""What one chat request is, apart from who sends it: its body, its response-cache key and
its JSON-schema block. ``client.RoleModel`` builds each request from these."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from codeclm.llm.cache import request_key

History = tuple[tuple[str, str], ...]
"""A conversation's turns before the prompt, as (role, content): 'user' and 'assistant'."""

CUT = '{"codeclm": "cut at max_tokens"}'
"""What the response cache keeps for a structured reply cut with nothing usable in it."""


def spoken(history: History, prompt: str) -> str:
    """All the text a request sends: what its size is reckoned from (tokens, cost, room)."""
    return "\n\n".join([*(content for _, content in history), prompt])


def request_body(
    base_payload: dict[str, Any],
    prompt: str,
    overrides: dict[str, Any],
    history: History,
    sent_format: Any,
) -> dict[str, Any]:
    """The role's payload with this call's overrides, format and messages."""
    body = {**base_payload, **overrides}
    if sent_format is not None:  # as-is: we validate the reply ourselves (llm.parsing)
        body["response_format"] = sent_format
    if "max_tokens" in overrides:  # sent under the key ChatOpenAI uses
        budget = body.pop("max_tokens")
        key = "max_completion_tokens" if "max_completion_tokens" in base_payload else ""
        body[key or "max_tokens"] = budget
    body["messages"] = [
        *({"role": role, "content": content} for role, content in history),
        {"role": "user", "content": prompt},
    ]
    return body


def cache_key(
    sender: dict[str, Any],
    prompt: str,
    overrides: dict[str, Any],
    max_tokens: int,
    sent_format: Any,
    history: History = (),
) -> str:
    """The response cache's key: everything that determines the reply. ``sender``: the
    role's model, base_url, and its default temperature and seed."""
    parts = {
        "model": sender["model"],
        "base_url": sender["base_url"],
        "prompt": prompt,
        "temperature": overrides.get("temperature", sender["temperature"]),
        "max_tokens": max_tokens,
        "seed": overrides.get("seed", sender["seed"]),
        "response_format": sent_format,
    }
    if "grammar" in overrides:
        parts["grammar"] = overrides["grammar"]
    if history:  # (a single turn's key is as it always was: its cache still answers)
        parts["history"] = [list(turn) for turn in history]
    return request_key(parts)


@cache
def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """A reply model's ``json_schema`` block, built once (pydantic rebuilds the schema on
    every call); ``strict`` is set per role (``RoleModel.strict_schema``)."""
    return {"name": schema.__name__, "strict": False, "schema": schema.model_json_schema()}
