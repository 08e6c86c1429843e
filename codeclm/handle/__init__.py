"""One run, one handle: where a run lives, found once, and everything opened from there.

A ``RunHandle`` is a run's folder and store (SQLite in the folder, or a PostgreSQL URL and
run name), its typed record (``run.json``: settings and inputs) and its settings. Every
driver takes one: the API (run, resume, update, worker), inspect, step, review, view,
report and export. Opened, it gives the store, both graphs, the reviews and the output
writers: ``read()`` to look (no model is called, no lease taken), ``open()`` to work.

``run.json`` is read and written here (``Folder``) and nowhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeclm.config import ConfigError, RoleConfig, RunConfig, resolve_settings
from codeclm.context import PipelineContext
from codeclm.graph import Graph, build_instruction_graph, retry_policy
from codeclm.handle.folder import Folder, check_folder, check_same, folder_lock, same_store
from codeclm.handle.views import OpenRun, RunView
from codeclm.handle.workspace import open_workspace, run_context
from codeclm.outputs import CHECKPOINTS, DATASET, RUN_JSON
from codeclm.prepare.graph import build_prepare_graph
from codeclm.records import Row, RunInputs, RunRecord, read_rows
from codeclm.store import Store, StoreSpec, open_store, redact_url

__all__ = ["Folder", "OpenRun", "RunHandle", "RunNotFound", "RunView", "check_same"]


@dataclass
class RunHandle:
    """A run: its folder (None for a worker without ``--out``), its store, its settings,
    inputs and record (as last read or saved; None before a new run saved its first)."""

    spec: StoreSpec
    folder: Folder | None
    config: RunConfig
    inputs: RunInputs = field(default_factory=RunInputs)
    record: RunRecord | None = None

    # ---- finding a run ------------------------------------------------------------------

    @classmethod
    def start(cls, config: RunConfig, out: Path, spec: StoreSpec, inputs: RunInputs) -> RunHandle:
        """A run to begin, or to continue with these settings (``codeclm run``): refused
        when the folder holds an evaluation or a run started with other settings."""
        folder = Folder(out)
        folder.expect("run")
        handle = cls(spec, folder, config, inputs)
        if not spec.shared:
            handle.record = folder.read_run()
            handle.check_settings(handle.record)
        return handle

    @classmethod
    async def find(
        cls,
        out: Path | None,
        *,
        store: str | None = None,
        run_name: str | None = None,
        overrides: dict[str, Any] | None = None,
        lease_seconds: float = 30.0,
        wait_seconds: float = 0.0,
        on_wait: Callable[[], None] = lambda: None,
        strict: bool = True,
    ) -> RunHandle:
        """A run that exists: by its folder (whose ``run.json`` names its store, if one is
        shared) or by a store URL and run name. ``overrides``: pacing settings (e.g.
        ``concurrency``) over the recorded ones. A run not in its store yet is waited for
        up to ``wait_seconds`` (workers may start before it), calling ``on_wait`` once.
        ``strict`` False (to read: inspect, review, view): recorded settings this version
        no longer has, or a prompts folder that is gone, are let be."""
        folder = Folder(out) if out is not None else None
        record = None
        if folder is not None:
            folder.expect("run", "DIR")
            record = folder.read_run()
            same_store(folder, record, store, run_name)
        url = store if store is not None else (record.store if record else None)
        name = run_name or (record.run_name if record else None)
        spec = StoreSpec.of(url, name, out, lease_seconds)
        if spec.shared:
            record = await _stored_record(spec, wait_seconds, on_wait)
        if record is None:
            raise RunNotFound(
                f"no run {spec.run!r} in {spec.describe()}"
                if spec.shared
                else f"{out} holds no run (no run.json)"
            )
        source = spec.describe() if spec.shared or folder is None else str(folder.file(RUN_JSON))
        config = recorded_config(record, overrides or {}, source, strict)
        return cls(spec, folder, config, record.inputs, record)

    @classmethod
    def finished(cls, out: Path) -> RunHandle:
        """A run whose folder holds its outputs (report, export): its record, read as the
        run last wrote it; nothing is opened."""
        folder = Folder(out)
        folder.expect("run", "DIR")
        record = folder.read_run()
        if record is None or not record.config or not folder.file(DATASET).is_file():
            raise ConfigError(f"{out} holds no finished run (no run.json or {DATASET})")
        spec = StoreSpec.of(record.store, record.run_name, out)
        config = recorded_config(record, {}, str(folder.file(RUN_JSON)), strict=False)
        return cls(spec, folder, config, record.inputs, record)

    @property
    def recorded(self) -> RunRecord:
        """The record (a run found by ``find`` or ``finished`` always has one)."""
        if self.record is None:
            raise ConfigError(f"{self.where} holds no run record yet")
        return self.record

    def rows(self, name: str, model: type[Row]) -> list[Row]:
        """The rows of one of the run's JSONL files (none when it is missing)."""
        return read_rows(self.folder.file(name), model) if self.folder is not None else []

    @property
    def out_dir(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    @property
    def where(self) -> str:
        """How commands name the run: its folder, or its store and name."""
        if self.folder is not None:
            return str(self.folder.path)
        return f"--store {redact_url(self.spec.url)} --run {self.spec.run}"

    def check_settings(self, previous: RunRecord | None) -> None:
        """Refuse to continue a run (recorded as ``previous``) with other settings; the
        amounts a run may grow by (``RunConfig.GROWABLE``) may only go up."""
        if previous is None:
            return
        where = self.where
        if previous.fingerprint != self.config.fingerprint():
            check_same(
                "run",
                where,
                previous.config_fingerprinted,
                self.config.fingerprint_fields(),
                f"use the same settings, or codeclm resume {where} (its own), or another --out",
            )
        for key in RunConfig.GROWABLE:
            before, now = previous.config.get(key), getattr(self.config, key)
            if key == "instructions" and self.config.pairs is not None:
                continue  # the waves grow it themselves (``engine.waves``)
            if isinstance(before, int) and isinstance(now, int) and now < before:
                raise ConfigError(
                    f"{where} holds a run of --{key} {before}; a run can grow but not shrink "
                    f"(--{key} {now}); use {before} or more, or another --out"
                )

    # ---- opening it ---------------------------------------------------------------------

    @asynccontextmanager
    async def read(self) -> AsyncIterator[RunView]:
        """The run's store and graphs, to read and review: no model, no lease taken."""
        if not self.spec.shared and (self.out_dir is None or not self.folder_has(CHECKPOINTS)):
            raise ConfigError(f"{self.out_dir} holds no run (no {CHECKPOINTS})")
        if not self.spec.shared:
            check_folder(self.out_dir, self.record, writing=False)
        async with open_store(self.spec, self.out_dir, fenced=False) as store:
            yield RunView(self, store, *_graphs(store, self.config, retry_policy(1)))

    @asynccontextmanager
    async def open(
        self, check_inputs: Callable[[PipelineContext], None] = lambda context: None
    ) -> AsyncIterator[OpenRun]:
        """The run opened for work: models (after every endpoint answered the preflight and
        ``check_inputs`` accepted the inputs against what it reported), store and graphs.
        In a shared store, the run's settings are checked against the stored record."""
        started = time.monotonic()
        with ExitStack() as held:
            if not self.spec.shared and self.out_dir is not None:
                check_folder(self.out_dir, self.record, writing=True)
                held.enter_context(folder_lock(self.out_dir))
            async with self._opened(check_inputs, started) as opened:
                yield opened

    @asynccontextmanager
    async def _opened(
        self, check_inputs: Callable[[PipelineContext], None], started: float
    ) -> AsyncIterator[OpenRun]:
        config = self.config
        async with open_workspace(
            config,
            self.out_dir,
            lambda models, prompts: check_inputs(run_context(config, models, prompts)),
            self.spec,
            alone=not self.spec.shared and self.out_dir is not None,  # (``open`` holds its lock)
        ) as space:
            store = space.store
            if self.spec.shared:
                if (await store.read_inputs()).eval_fingerprint is not None:
                    raise ConfigError(
                        f"{self.spec.describe()} holds an evaluation; use another --run"
                    )
                self.record = await store.read_record()
                self.check_settings(self.record)
            context = run_context(config, space.models, space.prompts)
            graphs = _graphs(store, config, space.retry)
            yield OpenRun(
                self,
                store,
                *graphs,
                context=context,
                models=space.models,
                meter=space.meter,
                started=started,
            )

    def folder_has(self, name: str) -> bool:
        return self.folder is not None and self.folder.file(name).is_file()


class RunNotFound(ConfigError):
    """No run in the folder, or under the name in the store."""


def recorded_config(
    record: RunRecord, overrides: dict[str, Any], source: str, strict: bool = True
) -> RunConfig:
    """The settings a run recorded, with ``overrides`` on top. Not ``strict``: a setting
    this version no longer has, or a prompts folder that is gone, is left out rather than
    refused (reading a run needs neither)."""
    if not record.config:
        raise ConfigError(f"{source} is not a codeclm run record (no config)")
    try:
        return resolve_settings(RunConfig, record.config, overrides, source)
    except ConfigError:
        if strict:
            raise
    known = {k: v for k, v in record.config.items() if k in RunConfig.model_fields}
    known.pop("prompts_dir", None)
    for role in RunConfig.ROLES:
        if isinstance(known.get(role), dict):
            known[role] = {k: v for k, v in known[role].items() if k in RoleConfig.model_fields}
    return resolve_settings(RunConfig, known, overrides, source)


async def _stored_record(
    spec: StoreSpec, wait_seconds: float, on_wait: Callable[[], None]
) -> RunRecord | None:
    """The record a shared store keeps for the run, waiting up to ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    async with open_store(spec, None, fenced=False) as store:
        record = await store.read_record()
        if record is None and wait_seconds > 0:
            on_wait()
        while record is None and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            record = await store.read_record()
    return record


def _graphs(store: Store, config: RunConfig, retry: Any) -> tuple[Graph, Graph]:
    """The 'prepare' graph and the run's method's instruction graph, on the store."""
    instructions = build_instruction_graph(
        retry, config.method, evol_rounds=config.evol_rounds, turns=config.turns
    )
    saver = store.saver
    return (
        build_prepare_graph(retry).compile(checkpointer=saver),
        instructions.compile(checkpointer=saver),
    )
