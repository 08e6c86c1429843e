"""An output folder opened for work: models, response cache, checkpointer and graphs.

Nothing is written to the folder before every endpoint answered the start-up preflight and
the inputs were checked against what it reported (each role's context size).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from codeclm.config import ModelSettings, RunConfig
from codeclm.context import PipelineContext
from codeclm.graph import (
    TimedSqliteSaver,
    build_instruction_graph,
    build_prepare_graph,
    open_checkpointer,
    retry_policy,
)
from codeclm.llm.cache import ResponseCache
from codeclm.llm.client import RoleModel
from codeclm.llm.preflight import preflight
from codeclm.llm.roles import role_models
from codeclm.outputs import CACHE, CHECKPOINTS
from codeclm.prompts import Prompts, load_prompts
from codeclm.records import ModelRecord


def redact_url(url: str | None) -> str | None:
    """Drop any user:password@ from a base URL before it is written anywhere."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def models_record(config: ModelSettings, models: dict[str, RoleModel]) -> dict[str, ModelRecord]:
    """Each role's model and endpoint for a record (run.json, eval.json), with no secret."""
    return {
        role: ModelRecord(
            model=model.model_name,
            base_url=redact_url(model.chat.openai_api_base),
            embedded=config.role(role).embedded,
        )
        for role, model in models.items()
    }


@dataclass
class Workspace:
    """An output folder opened for work: the roles' models, prompts and the checkpointer."""

    models: dict[str, RoleModel]
    prompts: Prompts
    retry: RetryPolicy
    saver: TimedSqliteSaver


@asynccontextmanager
async def open_workspace(
    config: ModelSettings,
    out_dir: Path,
    check_inputs: Callable[[dict[str, RoleModel], Prompts], None] = lambda m, p: None,
) -> AsyncIterator[Workspace]:
    """Models (and the embedded server if needed), response cache and checkpointer.

    Nothing is written before the endpoints answered the preflight and ``check_inputs``
    (which sees each role's context size) accepted the input.
    """
    prompts = load_prompts(config.prompts_dir)
    shared_limit = asyncio.Semaphore(config.concurrency)
    cache = ResponseCache(out_dir / CACHE) if config.cache else None
    with role_models(config, shared_limit, cache) as built:  # a missing key fails here
        try:
            models = await preflight(built, config)
            check_inputs(models, prompts)
            out_dir.mkdir(parents=True, exist_ok=True)
            if cache is not None:
                await cache.open()
            try:
                async with open_checkpointer(out_dir / CHECKPOINTS) as saver:
                    retry = retry_policy(config.attempts, config.backoff)
                    yield Workspace(models=models, prompts=prompts, retry=retry, saver=saver)
            finally:
                if cache is not None:
                    await cache.close()
        finally:
            for model in built.values():
                await model.aclose()


@dataclass
class OpenRun:
    """A run folder opened for work: models, checkpointer and both compiled graphs."""

    context: PipelineContext
    models: dict[str, RoleModel]
    prepare: CompiledStateGraph[Any, Any, Any, Any]
    instructions: CompiledStateGraph[Any, Any, Any, Any]
    saver: TimedSqliteSaver


def run_context(
    config: RunConfig, models: dict[str, RoleModel], prompts: Prompts
) -> PipelineContext:
    return PipelineContext(
        strong=models["strong"], target=models["target"], prompts=prompts, config=config
    )


@asynccontextmanager
async def open_run(
    config: RunConfig,
    out_dir: Path,
    check_inputs: Callable[[PipelineContext], None] = lambda context: None,
) -> AsyncIterator[OpenRun]:
    """A workspace with the run's two graphs, the instruction graph of the run's method."""
    async with open_workspace(
        config, out_dir, lambda models, prompts: check_inputs(run_context(config, models, prompts))
    ) as space:
        graph = build_instruction_graph(space.retry, config.method, evol_rounds=config.evol_rounds)
        yield OpenRun(
            context=run_context(config, space.models, space.prompts),
            models=space.models,
            prepare=build_prepare_graph(space.retry).compile(checkpointer=space.saver),
            instructions=graph.compile(checkpointer=space.saver),
            saver=space.saver,
        )
