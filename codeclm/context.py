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

from codeclm.config import EvalConfig, RunConfig, load_config_file, resolve_config
from codeclm.llm.client import RoleModel
from codeclm.llm.roles import role_models
from codeclm.prompts import Prompts, load_prompts


@dataclass(frozen=True)
class RoleContext:
    """What the nodes of every graph (a run's, an evaluation's) take at run time: the
    pair's two models and the prompts."""

    strong: RoleModel
    target: RoleModel
    prompts: Prompts


@dataclass(frozen=True)
class PipelineContext(RoleContext):
    """A run's context: the two roles, the prompts and the run's settings."""

    config: RunConfig


@dataclass(frozen=True)
class EvalContext(RoleContext):
    """An evaluation's context: the pair's roles and the prompts, the judge, and the
    evaluation's settings."""

    judge: RoleModel
    config: EvalConfig


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
    # Entered and never left: the embedded server, if any, lives as long as the process.
    models = role_models(config).__enter__()
    return PipelineContext(
        strong=models["strong"],
        target=models["target"],
        prompts=load_prompts(config.prompts_dir),
        config=config,
    )
