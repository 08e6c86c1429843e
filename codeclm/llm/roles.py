"""A command's model roles, each built over ChatOpenAI with its key from the environment,
starting the embedded server when a role names no model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from codeclm.config import DEFAULT_API_KEY_ENV, ConfigError, ModelSettings, RoleConfig
from codeclm.llm.admission import AdaptiveLimit
from codeclm.llm.cache import ResponseCache
from codeclm.llm.client import RoleModel
from codeclm.llm.embedded import EMBEDDED_MODEL_NAME, EmbeddedServer
from codeclm.llm.limits import Endpoint, RoleLimits
from codeclm.llm.transport import ChatTransport
from codeclm.redact import remember_secret, server_name


@contextmanager
def role_models(
    config: ModelSettings,
    shared_limit: asyncio.Semaphore | None = None,
) -> Iterator[dict[str, RoleModel]]:
    """Every role's model; starts the embedded server if any role has no model set. Roles
    on one server share its adaptive gate; roles on one model there, its breaker too."""
    gates: dict[str, AdaptiveLimit] = {}
    endpoints: dict[str, Endpoint] = {}
    # In batch mode a request waits hours on its batch: its latency says nothing of load.
    adaptive = config.adaptive and not config.batch

    def endpoint(base_url: str | None, model: str | None) -> Endpoint:
        server = server_name(base_url)
        gate = gates.setdefault(server, AdaptiveLimit(server, config.concurrency, adaptive))
        found = Endpoint.at(gate, model or "default")
        return endpoints.setdefault(found.name, found)

    models = {
        role: make_role_model(
            role,
            settings,
            seed=config.seed,
            shared_limit=shared_limit,
            endpoint=endpoint(settings.base_url, settings.model),
        )
        for role in config.ROLES
        if not (settings := config.role(role)).embedded
    }  # built first, so a missing API key is reported before any server starts
    if len(models) == len(config.ROLES):
        yield models
        return
    with EmbeddedServer(slots=min(config.concurrency, 8)) as server:
        for role in config.ROLES:
            if role not in models:
                models[role] = make_role_model(
                    role,
                    config.role(role),
                    seed=config.seed,
                    base_url=server.base_url,
                    model=EMBEDDED_MODEL_NAME,
                    api_key="embedded",
                    shared_limit=shared_limit,
                    endpoint=endpoint(server.base_url, EMBEDDED_MODEL_NAME),
                    grammars=True,
                )
        yield {role: models[role] for role in config.ROLES}


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
        remember_secret(key)  # never in a message, a record or a trace
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
    endpoint: Endpoint | None = None,
    cache: ResponseCache | None = None,
    grammars: bool = False,
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
        limits=RoleLimits.for_role(
            config,
            shared_limit,
            endpoint
            or Endpoint.at(
                AdaptiveLimit(server_name(base_url or config.base_url), 64, False), chat.model_name
            ),
        ),
        cache=cache,
        max_tokens_ceiling=config.max_tokens_ceiling,
        grammars=grammars,
    )
