"""How a run stops before its end, cleanly, as Ctrl-C stops it: at its cost cap, when an
endpoint fails every request (its breaker trips), or detached while its batches run at the
providers (``--batch --detach``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any

from codeclm.cost.meter import CostCapReached, Meter
from codeclm.handle import OpenRun
from codeclm.llm.batch import Batcher
from codeclm.llm.breaker import EndpointBroken
from codeclm.llm.client import RoleModel
from codeclm.llm.limits import Endpoint
from codeclm.records import EndpointStats


def batchers_of(run: OpenRun) -> list[Batcher]:
    """The run's batchers (``--batch``), one per endpoint."""
    found = {id(m.batcher): m.batcher for m in run.models.values() if m.batcher is not None}
    return list(found.values())


def endpoints_of(models: Iterable[RoleModel]) -> list[Endpoint]:
    """The endpoints the roles call, each once (roles on one endpoint share it)."""
    found = {m.limits.endpoint.name: m.limits.endpoint for m in models}
    return [endpoint for name, endpoint in found.items() if name]


def servers_of(run: OpenRun) -> dict[str, EndpointStats]:
    """Each server's live limit (the gate's own figures, updated as it moves)."""
    gates = {e.gate.name: e.gate for e in endpoints_of(run.models.values())}
    return {name: gate.stats for name, gate in gates.items()}


async def until_stopped(
    work: Coroutine[Any, Any, None],
    meter: Meter | None,
    batchers: list[Batcher],
    detach: bool,
    endpoints: list[Endpoint] | None = None,
) -> bool:
    """``work`` to its end, or stopped: when the meter refuses a request that could pass a
    spending cap (``CostCapReached``), or an endpoint's breaker trips (``EndpointBroken``),
    each raised once the work is cancelled; or with ``detach`` once every request waits on
    a batch out (True: detached)."""
    task = asyncio.ensure_future(work)
    stops: dict[str, asyncio.Future[Any]] = {}
    if meter is not None:
        meter.stops_run = True
        stops["cap"] = asyncio.ensure_future(meter.capped.wait())
    for endpoint in endpoints or []:
        endpoint.breaker.stops_run = True
        stops[endpoint.name] = asyncio.ensure_future(endpoint.breaker.broken.wait())
    if detach and batchers:
        stops["detach"] = asyncio.ensure_future(_settled(batchers))
    try:
        await asyncio.wait({task, *stops.values()}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # Ctrl-C: the work stops with us, before the outputs are written
        await _cancel(task)
        raise
    finally:
        for stop in stops.values():
            stop.cancel()
    if task.done():
        task.result()
        return False
    if meter is not None and meter.capped.is_set():
        if not batchers:  # the requests in flight are paid for: take their replies
            await meter.drained.wait()
        await _cancel(task)
        raise CostCapReached(meter.stop_message())
    for endpoint in endpoints or []:
        if endpoint.breaker.broken.is_set():
            if meter is not None and not batchers:  # replies paid for elsewhere: kept
                meter.halted = True
                await meter.drained.wait()
            await _cancel(task)
            raise EndpointBroken(endpoint.breaker.message())
    await _cancel(task)
    return True


async def _cancel(task: asyncio.Future[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def _settled(batchers: list[Batcher]) -> None:
    """Returns once every request has waited on a batch out for two quiet periods running."""
    quiet = max(b.quiet_seconds for b in batchers)
    calm = 0
    while calm < 2:
        await asyncio.sleep(quiet)
        calm = (
            calm + 1
            if all(b.settled or not b._waiting for b in batchers)
            and any(b.settled for b in batchers)
            else 0
        )
