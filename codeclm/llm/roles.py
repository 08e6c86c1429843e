"""A command's model roles, starting the embedded server when a role names no model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from codeclm.config import ModelSettings
from codeclm.llm.client import RoleModel, make_role_model
from codeclm.llm.embedded import EMBEDDED_MODEL_NAME, SCORE_GRAMMAR, EmbeddedServer


@contextmanager
def role_models(
    config: ModelSettings,
    shared_limit: asyncio.Semaphore | None = None,
) -> Iterator[dict[str, RoleModel]]:
    """Every role's model; starts the embedded server if any role has no model set."""
    models = {
        role: make_role_model(role, config.role(role), seed=config.seed, shared_limit=shared_limit)
        for role in config.ROLES
        if not config.role(role).embedded
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
                    score_grammar=SCORE_GRAMMAR,
                )
        yield {role: models[role] for role in config.ROLES}
