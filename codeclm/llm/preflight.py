"""A fast start-up check of each role's endpoint, before anything is written.

One ``GET {base_url}/models`` per endpoint (every OpenAI-compatible server has it: OpenAI,
vLLM, Ollama, llama.cpp): an endpoint that does not answer, or refuses the key, stops the
run with one line instead of thousands of failed requests. The same reply tells the model's
context size where the server reports it (vLLM's ``max_model_len``, ``context_length``,
llama.cpp's ``n_ctx_train``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

import httpx2
from pydantic import SecretStr

from codeclm.config import ConfigError, ModelSettings
from codeclm.llm.client import RoleModel
from codeclm.llm.embedded import CONTEXT_PER_SLOT
from codeclm.redact import server_name

PREFLIGHT_TIMEOUT = 5.0
"""Seconds an endpoint gets to answer the check (a model server answers ``/models`` at once)."""


def _context_from(listing: Any, model: str) -> int | None:
    """The context size a ``/models`` listing reports for ``model``, if it reports one."""
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or (len(entries) > 1 and entry.get("id") != model):
            continue
        meta = entry.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        for value in (
            entry.get("max_model_len"),
            entry.get("context_length"),
            entry.get("context_window"),
            meta.get("n_ctx_train"),
        ):
            if isinstance(value, int) and value > 0:
                return value
    return None


def _reason(exc: Exception) -> str:
    """A connection error in words a user reads: no transport internals (aiohttp's
    'ssl:default', the socket call)."""
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\s*ssl:\S+", "", text)
    text = re.sub(r"\s*\[Connect call failed[^\]]*\]", ": connection refused", text)
    return re.sub(r"\s*\[[^\]]*\]", "", text).strip() or type(exc).__name__


async def _check_role(model: RoleModel, config: ModelSettings) -> int | None:
    role_config = config.role(model.role)
    if role_config.embedded:
        return role_config.context_tokens or CONTEXT_PER_SLOT
    base = str(model.chat.openai_api_base or "https://api.openai.com/v1").rstrip("/")
    shown = server_name(base)
    secret = model.chat.openai_api_key
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else ""
    try:
        reply = await model.http_client.get(
            f"{base}/models",
            headers={"Authorization": f"Bearer {key}"},
            timeout=PREFLIGHT_TIMEOUT,
        )
    except httpx2.HTTPError as exc:
        raise ConfigError(
            f"{model.role} model: cannot reach {shown} ({_reason(exc)}); is the server running?"
        ) from None
    if reply.status_code in (401, 403):
        raise ConfigError(
            f"{model.role} model: {shown} refused the API key in ${role_config.api_key_env} "
            f"(HTTP {reply.status_code})"
        )
    if role_config.context_tokens:
        return int(role_config.context_tokens)
    try:
        return _context_from(reply.json(), model.model_name)
    except ValueError:
        return None


async def preflight(models: dict[str, RoleModel], config: ModelSettings) -> dict[str, RoleModel]:
    """Every role checked at once; each comes back knowing its context size (or ``None``)."""
    roles = list(models)
    contexts = await asyncio.gather(*(_check_role(models[r], config) for r in roles))
    return {
        role: dataclasses.replace(models[role], context_tokens=context)
        for role, context in zip(roles, contexts, strict=True)
    }
