"""``codeclm view DIR``: a local web page over a run, live while it runs.

The metadata pool (with the review's draft and approval while a ``--review metadata`` run
waits), every instruction with filters and full-text search, one instruction's chain from
the basic instruction to the final one with both judge orders, and the pairs' reviews.
"""

from __future__ import annotations

import asyncio
import contextlib

from codeclm.handle import RunHandle
from codeclm.review import open_session
from codeclm.view.server import build_app, run_server

__all__ = ["build_app", "serve"]


def serve(handle: RunHandle, *, host: str = "127.0.0.1", port: int = 8765) -> int:
    """Serve the page until Ctrl-C (exit 0)."""

    async def main() -> None:
        async with open_session(handle) as session:
            out_dir = handle.out_dir
            title = (
                handle.spec.run if handle.spec.shared or out_dir is None else out_dir.resolve().name
            )
            await run_server(session, title, host, port)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
