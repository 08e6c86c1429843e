"""A command's models and store opened (a run's or an evaluation's), and its context.

Nothing is written before every endpoint answered the start-up preflight and the inputs
were checked against what it reported (each role's context size).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from langgraph.types import RetryPolicy

from codeclm.config import ConfigError, EvalConfig, ModelSettings, RunConfig
from codeclm.context import EvalContext, PipelineContext
from codeclm.cost.meter import Meter
from codeclm.cost.prices import role_price, unknown_price_hint
from codeclm.graph import retry_policy
from codeclm.llm.batch import Batcher
from codeclm.llm.client import RoleModel
from codeclm.llm.preflight import preflight
from codeclm.llm.roles import role_models
from codeclm.prompts import Prompts, load_prompts
from codeclm.records import EndpointStats, ModelRecord, RolePrice
from codeclm.redact import server_name
from codeclm.store import Store, StoreSpec, open_store

log = logging.getLogger("codeclm")


def models_record(config: ModelSettings, models: dict[str, RoleModel]) -> dict[str, ModelRecord]:
    """Each role's model and endpoint for a record (run.json, eval.json), with no secret."""
    return {
        role: ModelRecord(
            model=model.model_name,
            base_url=server_name(model.chat.openai_api_base),
            embedded=config.role(role).embedded,
            structured_output=model.output.mode,
        )
        for role, model in models.items()
    }


def endpoints_record(models: dict[str, RoleModel]) -> dict[str, EndpointStats]:
    """Each server's concurrency as its gate adapted it (the models it serves share it)."""
    gates = {m.limits.endpoint.gate.name: m.limits.endpoint.gate for m in models.values()}
    return {name: gate.stats.model_copy() for name, gate in gates.items() if name}


@dataclass
class Workspace:
    """A command's roles' models, prompts, retry policy and store."""

    models: dict[str, RoleModel]
    prompts: Prompts
    retry: RetryPolicy
    store: Store
    meter: Meter


@asynccontextmanager
async def open_workspace(
    config: ModelSettings,
    out_dir: Path | None,
    check_inputs: Callable[[dict[str, RoleModel], Prompts], None] = lambda m, p: None,
    spec: StoreSpec | None = None,
    fenced: bool = True,
    alone: bool = False,
) -> AsyncIterator[Workspace]:
    """Models (and the embedded server if needed) and the store (SQLite in ``out_dir``
    unless ``spec`` names a shared one).

    Nothing is written before the endpoints answered the preflight and ``check_inputs``
    (which sees each role's context size) accepted the input. ``alone``: this process holds
    the run folder's lock, so no other writes its store.
    """
    prompts = load_prompts(config.prompts_dir)
    shared_limit = asyncio.Semaphore(config.concurrency)
    with role_models(config, shared_limit) as built:  # a missing key fails here
        try:
            models = await preflight(built, config)
            check_inputs(models, prompts)
            prices = role_prices(config, models)
            async with open_store(
                spec or StoreSpec(), out_dir, workers=config.workers, fenced=fenced
            ) as store:
                caps = {r: c for r in config.ROLES if (c := config.role(r).max_cost) is not None}
                meter = await Meter.open(prices, store.ledger, config.max_cost, caps)
                meter.batch = config.batch
                cache = store.cache if config.cache else None
                models = {r: replace(m, cache=cache, meter=meter) for r, m in models.items()}
                store.saver.cache_answers_redo = config.cache
                if alone:
                    await store.write_alone()
                retry = retry_policy(config.attempts, config.backoff)
                async with batchers(config, models, store) as models:
                    yield Workspace(models, prompts, retry, store, meter)
        finally:
            for model in built.values():
                await model.aclose()


@asynccontextmanager
async def batchers(
    config: ModelSettings, models: dict[str, RoleModel], store: Store
) -> AsyncIterator[dict[str, RoleModel]]:
    """``--batch``: each endpoint's (base URL and model's) batcher; roles on one endpoint
    share it."""
    if not config.batch:
        yield models
        return
    by_endpoint: dict[str, Batcher] = {}
    for model in models.values():
        endpoint = f"{model.chat.openai_api_base}|{model.model_name}"
        if endpoint not in by_endpoint:
            by_endpoint[endpoint] = Batcher(
                client=model.chat.root_async_client,
                endpoint=endpoint,
                book=store.batch_book,
                quiet_seconds=config.batch_quiet_seconds,
                poll_seconds=config.batch_poll_seconds,
                max_lines=config.batch_max_lines,
            )
    try:
        yield {
            role: replace(m, batcher=by_endpoint[f"{m.chat.openai_api_base}|{m.model_name}"])
            for role, m in models.items()
        }
    finally:
        for batcher in by_endpoint.values():
            await batcher.aclose()


def role_prices(config: ModelSettings, models: dict[str, RoleModel]) -> dict[str, RolePrice | None]:
    """Each role's price (``cost.prices``); an unknown one is said once, in one line, and
    refused when a cap needs it (a cap cannot hold a cost it cannot count)."""
    prices = {}
    for role, model in models.items():
        settings = config.role(role)
        price = role_price(model.model_name, model.chat.openai_api_base, settings.price)
        if price is None:
            if config.max_cost is not None or settings.max_cost is not None:
                hint = unknown_price_hint(role, model.model_name)
                raise ConfigError(f"--max-cost needs every role's price: {hint}")
            log.warning("%s", unknown_price_hint(role, model.model_name))
        prices[role] = price
    return prices


def run_context(
    config: RunConfig, models: dict[str, RoleModel], prompts: Prompts
) -> PipelineContext:
    """A run's nodes' context, from its opened models and prompts."""
    return PipelineContext(
        strong=models["strong"], target=models["target"], prompts=prompts, config=config
    )


def eval_context(config: EvalConfig, space: Workspace) -> EvalContext:
    """An evaluation's nodes' context: a run's roles, and the judge."""
    models = space.models
    return EvalContext(
        strong=models["strong"],
        target=models["target"],
        prompts=space.prompts,
        judge=models["judge"],
        config=config,
    )
