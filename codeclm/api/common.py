"""What every API function shares: settings from any source, progress, the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from codeclm.config import ModelSettings, load_config_file, resolve_settings
from codeclm.engine.threads import RunStats

S = TypeVar("S", bound=ModelSettings)
St = TypeVar("St", bound=RunStats)
T = TypeVar("T")
Progress = Callable[[RunStats], None]

#: Seconds between two ``on_progress`` calls.
PROGRESS_INTERVAL = 0.5


def settings(
    kind: type[S], config: S | Path | str | dict[str, Any] | None, overrides: dict[str, Any]
) -> S:
    """A config object from a config object, a settings file or a dict, with ``overrides``
    (keyword arguments named like the config's fields; role tables as dicts) on top."""
    if isinstance(config, kind):
        values, source = config.model_dump(), "config"
    elif isinstance(config, str | Path):
        values, source = load_config_file(Path(config)), str(config)
    else:
        values, source = dict(config or {}), "options"
    return resolve_settings(kind, values, overrides, source)


async def with_progress(
    work: Coroutine[Any, Any, T], stats: St, on_progress: Callable[[St], None] | None
) -> T:
    """Await ``work``, calling ``on_progress(stats)`` every ``PROGRESS_INTERVAL`` and at the end."""
    task = asyncio.ensure_future(work)
    if on_progress is None:
        return await task
    stats.listener = on_progress  # type: ignore[assignment]
    try:
        while not task.done():
            await asyncio.wait([task], timeout=PROGRESS_INTERVAL)
            on_progress(stats)
    except BaseException:
        task.cancel()
        raise
    return task.result()


def blocking(name: str) -> None:
    """``asyncio.run`` cannot run inside a running event loop (a notebook): say what to
    call instead, before any coroutine is made (so none is left un-awaited)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"codeclm.{name}() cannot run inside a running event loop (a notebook, an async "
        f"app): use `await codeclm.a{name}(...)` there, or call it from a thread"
    )
