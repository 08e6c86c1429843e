"""An evaluation's handle: like a run's, its folder (``eval.json``), its store and settings,
found once; opened, its models, store, graph and context.

A run and an evaluation share the mechanism: ``Folder`` for the folder's kind and record,
``check_same`` for the fingerprint, ``open_workspace`` for models and store.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeclm.config import ConfigError, EvalConfig
from codeclm.context import EvalContext
from codeclm.cost.figures import cost_record, paid_usage
from codeclm.cost.meter import Meter
from codeclm.graph import Graph
from codeclm.graph.benchmark_item import build_eval_graph
from codeclm.handle.folder import Folder, check_same, folder_lock
from codeclm.handle.workspace import eval_context, models_record, open_workspace
from codeclm.records import EvalRecord, StoredInputs
from codeclm.store import Store, StoreSpec, redact_url
from codeclm.version import __version__

_AGAIN = "use the same ones to resume it, or another "
_WHAT = "settings or items"


@dataclass
class EvalHandle:
    """An evaluation: its folder, store, settings and benchmark, and their fingerprint."""

    spec: StoreSpec
    folder: Folder
    config: EvalConfig
    benchmark: Path
    fingerprint: dict[str, Any]

    @classmethod
    def start(cls, config: EvalConfig, benchmark: Path, out: Path, spec: StoreSpec) -> EvalHandle:
        """An evaluation to begin or resume: refused when the folder holds a run, or an
        evaluation of other settings or items."""
        digest = hashlib.sha256(benchmark.read_bytes()).hexdigest()[:16]
        fingerprint = {"settings": config.fingerprint_fields(), "benchmark_sha256": digest}
        folder = Folder(out)
        folder.expect("evaluation")
        if not spec.shared:
            previous = folder.read_eval()
            before = previous.fingerprint if previous else None
            check_same("evaluation", str(out), before, fingerprint, _AGAIN + "--out", _WHAT)
        return cls(spec, folder, config, benchmark, fingerprint)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[OpenEval]:
        """Models (after the preflight), the store (checked to hold this evaluation or
        nothing) and the item graph; its first record is written. A folder is held by this
        process while it works (``folder_lock``), as a run's is."""
        with ExitStack() as held:
            if not self.spec.shared:
                held.enter_context(folder_lock(self.folder.path))
            async with self._opened() as opened:
                yield opened

    @asynccontextmanager
    async def _opened(self) -> AsyncIterator[OpenEval]:
        alone = not self.spec.shared
        async with open_workspace(
            self.config, self.folder.path, spec=self.spec, alone=alone
        ) as space:
            if self.spec.shared:
                await self._check_store(space.store)
            record = EvalRecord(
                codeclm_version=__version__,
                benchmark=str(self.benchmark.resolve()),
                fingerprint=self.fingerprint,
                config=self.config.model_dump(mode="json"),
                models=models_record(self.config, space.models),
                store=redact_url(self.spec.url),
                run_name=self.spec.run if self.spec.shared else None,
            )
            self.folder.write_eval(record)  # first, so a resume is checked
            graph = build_eval_graph(space.retry).compile(checkpointer=space.store.saver)
            context = eval_context(self.config, space)
            yield OpenEval(self, space.store, graph, context, record, space.meter)

    async def _check_store(self, store: Store) -> None:
        """A store's name holds this evaluation or nothing (not a run, not another one)."""
        where = self.spec.describe()
        if await store.read_record() is not None:
            raise ConfigError(f"{where} holds a run, not an evaluation; use another --run")
        stored = await store.read_inputs()
        if stored.eval_fingerprint is None:
            await store.save_inputs(StoredInputs(eval_fingerprint=self.fingerprint))
        before = stored.eval_fingerprint
        check_same("evaluation", where, before, self.fingerprint, _AGAIN + "--run", _WHAT)


@dataclass
class OpenEval:
    """An evaluation opened for work: its store, item graph, context and record so far."""

    handle: EvalHandle
    store: Store
    graph: Graph
    context: EvalContext
    record: EvalRecord
    meter: Meter

    async def save(self, record: EvalRecord) -> None:
        """Keep the record, with what the evaluation has cost so far."""
        meter = await self.meter.latest()
        record.usage, _ = paid_usage(meter, record.usage, {})
        record.cost = cost_record(meter, record.usage, {})
        self.record = record
        self.handle.folder.write_eval(record)
