"""``--pairs N``: the paper's budget, in kept pairs. The run goes in *waves*: each decodes
more basic instructions (the grow mechanism a larger ``--instructions`` uses: a new pass of
the 'prepare' thread), runs them all to their end, and counts what the filter kept. The
next wave is sized by the share kept so far; the waves stop once N pairs are kept, or when
the metadata pool can give no more instructions (said, as any dry pool is).

Every decision is taken on finished threads only, whose outcomes do not depend on timing,
so a run killed and resumed (or run again) takes the same waves and keeps the same pairs.
The pairs kept beyond N by the last wave are written to ``dropped.jsonl`` as ``surplus``.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

from codeclm.config import RunConfig
from codeclm.engine.prepare import ready
from codeclm.engine.threads import Graph
from codeclm.graph import started_values, thread_config
from codeclm.state import PrepareState

LEAST_SHARE = 0.1
"""The share kept that sizes the next wave when none (or too few) were kept so far: a wave
at most ten times what is still missing."""


async def outcomes(graph: Graph, prepared: PrepareState) -> Counter[str]:
    """How the run's instructions ended so far (kept, dropped, failed …), by status."""
    items = [item for _, item in ready(prepared)]
    found: Counter[str] = Counter()
    for start in range(0, len(items), 32):
        chunk = items[start : start + 32]
        snapshots = await asyncio.gather(*(graph.aget_state(thread_config(i.id)) for i in chunk))
        found.update(started_values(s.values).get("status", "pending") for s in snapshots)
    return found


def next_wave(config: RunConfig, prepared: PrepareState, ended: Counter[str]) -> int | None:
    """The budget of instructions the next wave brings the run to, or None: enough pairs are
    kept, or the pool ran dry (the last pass could not decode its whole budget)."""
    assert config.pairs is not None
    missing = config.pairs - ended["kept"]
    if missing <= 0 or prepared.shortfall is not None:
        return None
    judged = ended["kept"] + ended["dropped"]
    share = max(ended["kept"] / judged if judged else 0.0, LEAST_SHARE)
    return config.instructions + math.ceil(missing / share)
