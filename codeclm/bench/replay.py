"""``codeclm bench --embedded``: a real run on the embedded llama.cpp server, set beside a
replay of the very requests it made, at the same concurrency, without their dependencies.

The run's roles point at a loopback proxy that forwards every request to the server and
keeps each chat completion's body and the output tokens its answer had. The replay then
sends those bodies straight to the same server, ``concurrency`` at a time, each in turn as
soon as a slot is free, and asks each for the same number of output tokens (llama.cpp's
``ignore_eos`` on free answers; a structured answer ends with its grammar). The replay's
wall is what the server needs for the run's work with nothing waiting on anything: the
pipeline's wall over it is what the method's order of steps (a seed encoded before its
pool is built, an answer before its judge), the client and the checkpoints cost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

CHAT = "chat/completions"


@dataclass
class RecordingProxy:
    """A loopback proxy to ``upstream`` (an OpenAI-compatible base URL ending in ``/v1``)
    keeping each answered chat completion's request body and output tokens."""

    upstream: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Serve on a free loopback port; the base URL to give the run."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/v1/{path:.*}", self._forward)
        # A client that gives up on a request (its timeout) closes the connection: the
        # request upstream is cancelled with it, as the server would cancel it unproxied.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        path = request.match_info["path"]
        data = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED}
        url = f"{self.upstream.rstrip('/')}/{path}"
        async with self._session.request(request.method, url, data=data, headers=headers) as up:
            payload = await up.read()
            status, kind = up.status, up.content_type
        if path == CHAT and status == 200:
            usage = json.loads(payload).get("usage") or {}
            self.bodies.append(json.loads(data))
            self.output_tokens.append(int(usage.get("completion_tokens") or 0))
        return web.Response(body=payload, status=status, content_type=kind)


_PASSED = {"authorization", "content-type", "accept"}


@dataclass(frozen=True)
class Replayed:
    """What the replay took: its wall, and the output tokens the server wrote."""

    wall: float
    output_tokens: int
    calls: int


def replay_body(body: dict[str, Any], output_tokens: int) -> dict[str, Any]:
    """The request again, asking for as many output tokens as the run's answer had."""
    again = {k: v for k, v in body.items() if k not in ("max_tokens", "max_completion_tokens")}
    again["max_tokens"] = max(1, output_tokens)
    if not ("response_format" in body or "grammar" in body):  # a grammar ends it itself
        again["ignore_eos"] = True
    return again


async def replay(
    base_url: str, bodies: list[dict[str, Any]], output_tokens: list[int], concurrency: int
) -> Replayed:
    """Send every body to ``base_url``, ``concurrency`` at a time, in the order recorded."""
    todo = iter(zip(bodies, output_tokens, strict=True))
    written = 0
    url = f"{base_url.rstrip('/')}/{CHAT}"
    headers = {"Authorization": "Bearer replay"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:

        async def worker() -> None:
            nonlocal written
            for body, tokens in todo:
                async with session.post(url, json=replay_body(body, tokens), headers=headers) as r:
                    reply = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"the replay's request failed: HTTP {r.status} {reply}")
                written += int((reply.get("usage") or {}).get("completion_tokens") or 0)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Replayed(time.monotonic() - started, written, len(bodies))


async def run_through(argv: list[str]) -> None:
    """``codeclm`` with ``argv`` as a child process; raises when it fails."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "codeclm", *argv, stdout=asyncio.subprocess.DEVNULL
    )
    if await child.wait() != 0:
        raise RuntimeError(f"codeclm run exited {child.returncode}")


def run_argv(
    out: Path, base_url: str, model: str, concurrency: int, instructions: int
) -> list[str]:
    """The demo's settings (``examples/demo.toml``) with this budget, every role on
    ``base_url``."""
    demo = Path(__file__).resolve().parents[1] / "examples"
    argv = ["run", str(demo / "seeds.jsonl"), "--config", str(demo / "demo.toml")]
    argv += ["--out", str(out), "--quiet", "--concurrency", str(concurrency)]
    argv += ["--instructions", str(instructions)]
    for role in ("strong", "target"):
        argv += [f"--{role}-model", model, f"--{role}-base-url", base_url]
    return argv
