"""What every node may use but the checkpoint must not hold: models, prompts, settings.

It is LangGraph's run-time context (``Runtime[PipelineContext]``), passed to each
``ainvoke``. Keeping the models here, not in state, is also what keeps API keys out of
checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from langgraph.runtime import Runtime

from codeclm.config import RunConfig, load_config_file, resolve_config
from codeclm.llm.client import RoleModel, make_role_model
from codeclm.llm.embedded import EMBEDDED_MODEL_NAME, EmbeddedServer
from codeclm.prompts import Prompts, load_prompts


@dataclass(frozen=True)
class PipelineContext:
    strong: RoleModel
    target: RoleModel
    prompts: Prompts
    config: RunConfig


def pipeline_context(runtime: Runtime[PipelineContext]) -> PipelineContext:
    """The run's context; when a caller passes none (``langgraph dev``), the default one."""
    return runtime.context if runtime.context is not None else default_context()


@cache
def default_context() -> PipelineContext:
    """A context from the settings file named by ``$CODECLM_CONFIG`` (else the defaults).

    For graphs served by ``langgraph dev``, whose runs carry no Python objects. The embedded
    server, if a role needs it, lives as long as the process.
    """
    path = os.environ.get("CODECLM_CONFIG")
    values = load_config_file(Path(path)) if path else {}
    config = resolve_config(values, {}, path or "defaults")
    models: dict[str, RoleModel] = {}
    server: EmbeddedServer | None = None
    for role in ("strong", "target"):
        role_config = getattr(config, role)
        if role_config.embedded:
            server = server or EmbeddedServer(slots=min(config.concurrency, 8)).__enter__()
            models[role] = make_role_model(
                role,
                role_config,
                seed=config.seed,
                base_url=server.base_url,
                model=EMBEDDED_MODEL_NAME,
                api_key="embedded",
            )
        else:
            models[role] = make_role_model(role, role_config, seed=config.seed)
    return PipelineContext(
        strong=models["strong"],
        target=models["target"],
        prompts=load_prompts(config.prompts_dir),
        config=config,
    )
