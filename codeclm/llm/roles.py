"""Both model roles for a run, starting the embedded server when a role names no model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from codeclm.config import RunConfig
from codeclm.llm.cache import ResponseCache
from codeclm.llm.client import RoleModel, make_role_model
from codeclm.llm.embedded import EMBEDDED_MODEL_NAME, EmbeddedServer


@contextmanager
def role_models(
    config: RunConfig,
    shared_limit: asyncio.Semaphore | None = None,
    cache: ResponseCache | None = None,
) -> Iterator[dict[str, RoleModel]]:
    """Both roles' models; starts the embedded server if either role has no model set."""
    models = {
        role: make_role_model(
            role, getattr(config, role), seed=config.seed, shared_limit=shared_limit, cache=cache
        )
        for role in ("strong", "target")
        if not getattr(config, role).embedded
    }  # built first, so a missing API key is reported before any server starts
    if len(models) == 2:
        yield models
        return
    with EmbeddedServer(slots=min(config.concurrency, 8)) as server:
        for role in ("strong", "target"):
            if role not in models:
                models[role] = make_role_model(
                    role,
                    getattr(config, role),
                    seed=config.seed,
                    base_url=server.base_url,
                    model=EMBEDDED_MODEL_NAME,
                    api_key="embedded",
                    shared_limit=shared_limit,
                    cache=cache,
                )
        yield {role: models[role] for role in ("strong", "target")}
