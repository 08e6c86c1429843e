"""The loopback mock's HTTP/1.1 server: keep-alive connections on 127.0.0.1, served from an
asyncio loop (in this process's background thread, or a process of its own).

It knows nothing of chat completions: ``LoopbackServer.respond`` (the mock's) answers each
request with a status, a JSON payload and extra headers; a negative status never answers
(a request that hangs, or one in flight when the client was killed).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}

Answer = tuple[int, dict[str, Any], dict[str, str]]


class LoopbackServer:
    """Serves ``respond`` on ``127.0.0.1:port``; ``start`` in a thread or ``serve`` in a loop."""

    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError

    async def on_start(self) -> None:
        """Set up what serving needs in the serving loop (before the first request)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one keep-alive connection, request after request."""
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *header_lines = head.split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in header_lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                status, payload, extra = await self.respond(method, path, headers, body)
                if status < 0:
                    await reader.read()  # hang until the client gives up and disconnects
                    return
                raw = payload.get("__raw__")  # a file's content, as it is
                data = raw.encode() if raw is not None else json.dumps(payload).encode()
                kind = "application/jsonl" if raw is not None else "application/json"
                lines = [
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
                    f"Content-Type: {kind}",
                    f"Content-Length: {len(data)}",
                    *(f"{name}: {value}" for name, value in extra.items()),
                ]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,  # shutting down
            ConnectionError,
        ):
            pass
        finally:
            writer.close()

    async def serve(self, port: int = 0) -> asyncio.Server:
        """Start serving on the running loop (used directly by ``python -m``)."""
        await self.on_start()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def start(self) -> Any:
        """Serve from a background thread with its own event loop (for in-process tests)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="mock-llm")
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.call_soon(loop.stop)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)
