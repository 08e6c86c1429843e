"""Nodes of the 'prepare' graph after the pool (``prepare/encoding.py`` builds it): plan,
Self-Rubrics, decode, collect, finalize.

Self-Rubrics and decoding fan out with ``Send`` (one task per seed or metadata
entry); after a crash the step runs again and its finished tasks' calls come from the
response cache. Augmentation and planning are pure and seeded, so re-running them is free.
Decoding loops (plan → decode → collect) until every entry has its share or the pool gives
no new unique instruction; a later run (a *pass*) retries what failed for a passing
reason and fills what a grown budget or pool asks for.

Asking goes by progress, never by a fixed count: Self-Rubrics and decode ask an entry
again as long as an ask brings something new, and an entry *stalls* only when
``STALL_ASKS`` asks in a row bring nothing. What a stalled entry cannot give moves to the
others in the same run, so one run delivers the whole budget unless the pool runs dry.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from langgraph.errors import NodeError
from langgraph.runtime import Runtime

from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.parsing import declines_task
from codeclm.llm.reply import describe_error, is_permanent, sampling_seed
from codeclm.methods import method_spec
from codeclm.nodes.fields import entry_fields_text
from codeclm.nodes.replies import decoded_instructions, self_rubrics
from codeclm.prepare.planning import (
    accept_round,
    distinct,
    shares,
    with_rubrics,
)
from codeclm.state import (
    BasicInstruction,
    EncodeTask,
    Failure,
    MetadataTask,
    PrepareState,
    RubricSet,
    TokenUsage,
    spent,
)
from codeclm.steps import INSTRUCTION_TOKENS, Scale, Step


def _decode_asks(scale: Scale) -> tuple[float, float]:
    """Asks of ``decode_batch`` instructions per entry; at worst every ask stalls once."""
    asks = scale.entries * math.ceil(scale.per_entry / scale.config.decode_batch)
    return asks, asks * 2


WRITE_RUBRICS = Step(
    name="write_rubrics",
    prompts=("rubrics", "avoid"),
    output_tokens=40,  # per rubric-and-action pair
    reply="SelfRubrics",
    unit="entries",
    calls=lambda scale: (scale.entries, scale.entries * 3),  # at worst two top-ups
    items=lambda config: config.rubrics,
    typical=lambda t: t.render("rubrics", k=t.config.rubrics, avoid="", **t.labels),
    runs_for=lambda method: method.makes_metadata and method.uses_rubrics,
)
DECODE = Step(
    name="decode",
    prompts=("decode", "avoid"),
    output_tokens=INSTRUCTION_TOKENS,  # per instruction
    reply="DecodedInstructions",
    calls=_decode_asks,
    items=lambda config: config.decode_batch,
    typical=lambda t: t.render("decode", n=t.config.decode_batch, avoid="", **t.labels),
    runs_for=lambda method: method.makes_metadata,
)


def _join(items: list[str]) -> str:
    return ", ".join(items)


STALL_ASKS = 2
"""Asks in a row that bring nothing new before an entry counts as stalled. One empty ask can
be a sampling accident; a second, with a fresh sampling seed, says the model has no more."""
MAX_DECODE_ROUNDS = 64
"""A safety net only: every round, each entry asked either gains an instruction or is
exhausted (once, after its one-batch first round, it may do neither), so the rounds end
long before this on their own."""
#: The most earlier items a top-up prompt lists (the filter catches repeats of older ones).
AVOID_SHOWN = 20


def least_actions(k: int) -> int:
    """The fewest distinct actions an entry whose Self-Rubrics stalled may go on with: half
    of k, rounded up. With the paper's k = 4 and 4 iterations (3 rewrites), 2 actions still
    give every rewrite of an instruction another edit than the one before it; fewer would
    rewrite the same way again and again, so the entry's share moves to other entries."""
    return math.ceil(k / 2)


def _seed_override(seed: int, first: bool, *where: object) -> dict[str, int]:
    """No override for a step's first ask (the run's seed), a derived seed after that."""
    return {} if first else {"seed": sampling_seed(seed, *where)}


def avoid_block(ctx: PipelineContext, items: list[str]) -> str:
    """``prompts/avoid.md`` listing what a top-up must not repeat; empty for a first ask."""
    if not items:
        return ""
    lines = "\n".join(f"- {' '.join(text.split())}" for text in items[-AVOID_SHOWN:])
    return ctx.prompts.render("avoid", items=lines)


def _transient(state: PrepareState, step: str) -> set[str]:
    """Subjects of this pass's failures of ``step``: not asked again until a re-run."""
    return {f.subject for f in state.failures if f.step == step and not f.permanent}


def plan(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Each entry's share of the budget, and which entries this round asks.

    Shares follow ``planning.shares``: equal, with what exhausted entries (and entries
    whose Self-Rubrics stalled short) cannot give moved to the others. An entry whose
    decode failed for a passing reason keeps its share for a re-run to fill.
    """
    cfg = pipeline_context(runtime).config
    unusable = unusable_entries(state)
    have = Counter(item.metadata_id for item in state.accepted_items())
    capped = set(state.exhausted) | unusable
    targets = shares(state.pool, have, capped, cfg.instructions, cfg.seed)
    pool = [e.model_copy(update={"n_instructions": targets[e.id]}) for e in state.pool]
    written = {r.metadata_id for r in state.rubric_sets}
    failed_rubrics, failed_decode = (
        _transient(state, "write_rubrics"),
        _transient(state, "decode"),
    )
    pending_rubrics = [
        e.id
        for e in pool
        if method_spec(state.method).uses_rubrics
        and e.n_instructions > 0
        and e.id not in written
        and e.id not in failed_rubrics
    ]
    pending_decode = [
        e.id
        for e in pool
        if e.n_instructions > have[e.id]
        and e.id not in capped
        and e.id not in failed_decode
        and state.rounds_this_pass < MAX_DECODE_ROUNDS
    ]
    return {"pool": pool, "pending_rubrics": pending_rubrics, "pending_decode": pending_decode}


def unusable_entries(state: PrepareState) -> set[str]:
    """Entries whose Self-Rubrics stalled below ``least_actions``: they get no instruction."""
    return {r.metadata_id for r in state.rubric_sets if not r.usable}


@WRITE_RUBRICS.node
async def write_rubrics(task: MetadataTask, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 4, Self-Rubrics: k distinct rubrics and k distinct actions per entry.

    A reply with fewer (or repeated) ones is topped up: asked again, listing what it has,
    for as long as an ask brings something new. When ``STALL_ASKS`` asks in a row bring
    nothing, the entry goes on with what it has if that is at least ``least_actions``;
    otherwise it is unusable and its share of instructions moves to other entries. Either
    way the set says so (``note``), and metadata.jsonl shows it.
    """
    ctx = pipeline_context(runtime)
    k, entry = ctx.config.rubrics, task.entry
    rubrics: list[str] = []
    actions: list[str] = []
    usage = TokenUsage()
    asks = stalled = 0
    while (len(rubrics) < k or len(actions) < k) and stalled < STALL_ASKS:
        prompt = ctx.prompts.render(
            "rubrics",
            k=k,
            use_case=entry.use_case,
            skills=_join(entry.skills),
            fields=entry_fields_text(entry.extra),
            avoid=avoid_block(ctx, rubrics + actions),
        )
        first = asks == 0 and task.salt == 0
        reply, call_usage = await ctx.strong.structured(
            prompt,
            self_rubrics(k),
            **_seed_override(ctx.config.seed, first, entry.id, "rubrics", task.salt, asks),
        )
        usage = usage + call_usage
        asks += 1
        new_rubrics = distinct(reply.rubrics, rubrics)[: k - len(rubrics)]  # type: ignore[attr-defined]
        new_actions = distinct(reply.actions, actions)[: k - len(actions)]  # type: ignore[attr-defined]
        rubrics += new_rubrics
        actions += new_actions
        stalled = 0 if new_rubrics or new_actions else stalled + 1
    usable = len(actions) >= least_actions(k)
    note = None
    if len(actions) < k or len(rubrics) < k:
        outcome = (
            "goes on with them"
            if usable
            else (f"fewer than {least_actions(k)}, so its share went to other entries")
        )
        note = (
            f"Self-Rubrics stalled at {len(rubrics)} rubrics and {len(actions)} actions of "
            f"{k} after {asks} asks: {outcome}"
        )
    rubric_set = RubricSet(
        metadata_id=entry.id, rubrics=rubrics, actions=actions, usable=usable, note=note
    )
    return {"rubric_sets": [rubric_set], **spent("write_rubrics", strong=usage)}


@DECODE.node
async def decode(task: MetadataTask, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Step 3, one round for one entry: ``want`` new basic instructions, a batch per call
    (in the entry's first round, one batch).

    Each call asks for at most ``decode_batch`` (a reply that long fits ``max_tokens``) and
    lists what the entry already has; repeats of it are filtered out, and the entry is
    asked again for as long as an ask brings something new, until it has ``want`` or
    ``STALL_ASKS`` asks in a row gave nothing. Repeats across entries are ``collect``'s
    to find.
    """
    ctx = pipeline_context(runtime)
    entry, batch = task.entry, ctx.config.decode_batch
    # An entry's first round asks one batch: its first instructions start after one reply,
    # not after its whole share's asks one after another (the next round asks the rest,
    # listing these to avoid, as a further ask of this round would).
    want = task.want if task.have else min(task.want, batch)
    new: list[str] = []
    usage = TokenUsage()
    asks = stalled = 0
    while len(new) < want and stalled < STALL_ASKS:
        n = min(batch, want - len(new))
        prompt = ctx.prompts.render(
            "decode",
            n=n,
            use_case=entry.use_case,
            skills=_join(entry.skills),
            fields=entry_fields_text(entry.extra),
            avoid=avoid_block(ctx, task.have + new),
        )
        first = asks == 0 and not task.have and task.salt == 0
        reply, call_usage = await ctx.strong.structured(
            prompt,
            decoded_instructions(n),
            **_seed_override(
                ctx.config.seed, first, entry.id, "decode", len(task.have), task.salt, asks
            ),
        )
        usage = usage + call_usage
        asks += 1
        usable = [t for t in reply.instructions if not declines_task(t)]  # type: ignore[attr-defined]
        got = distinct(usable, task.have + new)[: want - len(new)]
        new += got
        stalled = 0 if got else stalled + 1
    decoded = [
        BasicInstruction.decoded(
            id=f"{entry.id}-{index:02d}",
            metadata_id=entry.id,
            instruction=text,
            round=task.round,
            index=index,
        )
        for index, text in enumerate(new, start=len(task.have))
    ]
    return {"decoded": decoded, **spent("decode", strong=usage)}


def collect(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Join of a round: drop repeats across the pool; an entry that gained none is exhausted
    (after its one-batch first round, only when it decoded nothing at all).

    The instructions of an entry whose Self-Rubrics stalled short this round leave the
    accepted ones (none of them was started: they wait for their entry's rubrics), so the
    next ``plan`` hands their share to the others.
    """
    cfg = pipeline_context(runtime).config
    order = {entry.id: position for position, entry in enumerate(state.pool)}
    targets = {entry.id: entry.n_instructions for entry in state.pool}
    this_round = (item for item in state.decoded if item.round == state.decode_round)
    accepted = state.accepted_items()
    new, repeats = accept_round(accepted, this_round, order, targets, cfg.repeat_similarity)
    gained = Counter(item.metadata_id for item in new)
    failed = _transient(state, "decode")
    # an entry's first round asked one batch (``decode``): all of it repeats of other
    # entries says little, so it is asked for the rest before it counts as exhausted
    first_batch = {item.metadata_id for item in state.decoded} - {
        item.metadata_id for item in state.decoded if item.round < state.decode_round
    }
    exhausted = [
        ident
        for ident in state.pending_decode
        if not gained[ident] and ident not in failed and ident not in first_batch
    ]
    unusable = unusable_entries(state)
    return {
        "accepted": [item.id for item in [*accepted, *new] if item.metadata_id not in unusable],
        "repeats": state.repeats + repeats,
        "exhausted": state.exhausted + exhausted,
        "ran_dry": exhausted,
        "decode_round": state.decode_round + 1,
        "rounds_this_pass": state.rounds_this_pass + 1,
        "pending_rubrics": [],
        "pending_decode": [],
    }


def finalize(state: PrepareState) -> dict[str, Any]:
    """End of a pass: attach each entry's rubrics; say what is missing, and why.

    Fewer accepted instructions than the budget with no failure to retry that explains it
    means the pool ran dry: every entry with a share left either gave no new unique
    instruction or stalled in Self-Rubrics. The pass says so (``shortfall``); running the
    same command again would not change it (a larger ``--metadata`` would).
    """
    if not method_spec(state.method).makes_metadata:
        return {"done": True}
    short = state.budget - len(state.accepted)
    shortfall = None
    if state.pool and short > 0 and not any(not f.permanent for f in state.failures):
        stalled = len(unusable_entries(state))
        shortfall = (
            f"{short} of {state.budget} instructions missing: the metadata pool ran dry "
            f"({len(state.exhausted)} of {len(state.pool)} entries gave no new unique "
            f"instruction"
            + (f", {stalled} had too few Self-Rubrics actions" if stalled else "")
            + "); a larger --metadata gives it more to draw from"
        )
    return {
        "pool": with_rubrics(state.pool, state.rubric_sets, state.exhausted),
        "shortfall": shortfall,
        "done": True,
    }


def record_prepare_failure(state: Any, error: NodeError) -> dict[str, Any]:
    """Error handler: a seed or entry whose step failed after retries is recorded, not fatal.

    A re-run asks it again; only a seed the model refused (or whose request the server
    rejects) is left out of the pool for good, so one bad seed cannot hold a run back, and
    an entry failed so gives its share to the others.
    """
    subjects, permanent = ["run"], is_permanent(error.error)
    if isinstance(state, EncodeTask):  # (its seeds refused for good are not raised)
        subjects = [seed.id for _, seed in state.seeds()]
    elif isinstance(state, MetadataTask):
        subjects = [state.entry.id]
    reason = describe_error(error.error)
    update: dict[str, Any] = {
        "failures": [
            Failure(step=error.node, subject=subject, reason=reason, permanent=permanent)
            for subject in subjects
        ]
    }
    subject = subjects[0]
    if permanent and error.node == "write_rubrics" and isinstance(state, MetadataTask):
        # refused, or a request the server rejects: no later run fares better, so the
        # entry's share moves to the others now (a decode's: ``collect`` exhausts it)
        note = f"Self-Rubrics failed for good ({reason}): its share went to other entries"
        update["rubric_sets"] = [
            RubricSet(metadata_id=subject, rubrics=[], actions=[], usable=False, note=note)
        ]
    return update
