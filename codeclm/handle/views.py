"""What a command holds of an opened run (``RunHandle.read`` and ``RunHandle.open``): a
view of its store and graphs to look, and an open run, with its models, to work and to
write its record and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langgraph.types import StateSnapshot

from codeclm.config import RunConfig
from codeclm.context import PipelineContext
from codeclm.cost.figures import cost_record, paid_usage
from codeclm.cost.meter import Meter
from codeclm.graph import Graph, started_values
from codeclm.graph import thread_config as _thread
from codeclm.handle.record import Totals, run_record
from codeclm.handle.results import write_outputs
from codeclm.handle.screening import Screens, test_items
from codeclm.llm.client import RoleModel
from codeclm.outputs import METADATA, make_folder, write_jsonl
from codeclm.prepare.passes import ready
from codeclm.records import RunRecord, StoredInputs
from codeclm.state import PREPARE_THREAD, InstructionState, PrepareState
from codeclm.store import Store
from codeclm.store.reviews import Reviews

if TYPE_CHECKING:
    from codeclm.handle import RunHandle


@dataclass
class RunView:
    """A run's store and graphs, opened: its threads' states, its reviews."""

    handle: RunHandle
    store: Store
    prepare: Graph
    instructions: Graph

    @property
    def reviews(self) -> Reviews:
        return Reviews(self.store, self.handle.where)

    async def prepare_snapshot(self) -> StateSnapshot:
        return await self.prepare.aget_state(_thread(PREPARE_THREAD))

    async def prepared(self) -> PrepareState | None:
        """The 'prepare' thread's latest state, whichever process wrote it (None before
        the run started it)."""
        snapshot = await self.prepare_snapshot()
        return PrepareState.model_validate(snapshot.values) if snapshot.values else None

    async def thread_values(self, thread_id: str) -> dict[str, Any]:
        """An instruction thread's values ({} before its first step)."""
        return started_values((await self.instructions.aget_state(_thread(thread_id))).values)

    async def instruction_state(self, thread_id: str) -> InstructionState | None:
        values = await self.thread_values(thread_id)
        return InstructionState.model_validate(values) if values else None


@dataclass
class OpenRun(RunView):
    """A run opened for work: the view, with the models and the run-time context."""

    context: PipelineContext
    models: dict[str, RoleModel] = field(default_factory=dict)
    meter: Meter | None = None
    started: float = 0.0
    waves_stalled: bool = False

    @property
    def config(self) -> RunConfig:
        return self.handle.config

    def use(self, config: RunConfig) -> None:
        """Go on with ``config`` (``--pairs``: a wave's grown budget)."""
        self.handle.config = config
        self.context = PipelineContext(
            strong=self.context.strong,
            target=self.context.target,
            prompts=self.context.prompts,
            config=config,
        )

    def record_now(self, prepared: PrepareState, totals: Totals) -> RunRecord:
        """The run's record as of now."""
        handle, meter = self.handle, self.meter
        record = run_record(
            self.config, prepared, totals, self.started, self.models, handle.inputs, handle.spec
        )
        if meter is not None:
            record.usage, record.usage_by_node = paid_usage(
                meter, record.usage, record.usage_by_node
            )
            record.cost = cost_record(meter, record.usage, record.usage_by_node, record.counts.kept)
        record.waves_stalled = self.waves_stalled
        return record

    async def save_record(self, record: RunRecord) -> None:
        """Keep the record: in the folder (always, when there is one: it names the store
        for later commands) and in a shared store (where other workers read it)."""
        if self.handle.folder is not None:
            self.handle.folder.write_run(record)
        if self.store.shared:
            await self.store.save_record(record)
        self.handle.record = record

    async def save_inputs(self, inputs: StoredInputs) -> None:
        await self.store.save_inputs(inputs)

    async def write_outputs(self) -> tuple[RunRecord, PrepareState]:
        """The run's files (metadata, dataset, dropped, failed, run.json), rebuilt whole
        from the store; the record is kept in the store too."""
        folder = self.handle.folder
        assert folder is not None, "a worker without --out writes no files"
        config = self.config
        prepared = await self.prepared() or PrepareState()
        items = [item for _, item in ready(prepared)]
        make_folder(folder.path)
        write_jsonl(folder.file(METADATA), prepared.pool)
        contamination, decontamination = test_items(config, self.handle.inputs)
        screens = Screens(contamination, config.dedup, config.pairs, config.seed)
        totals = await write_outputs(self.instructions, items, folder.path, screens)
        if self.meter is not None:
            await self.meter.latest()  # what every worker paid until now
        record = self.record_now(prepared, totals)
        record.decontamination = decontamination
        record.checkpointing = self.store.checkpoint_stats()
        await self.save_record(record)
        return record, prepared
