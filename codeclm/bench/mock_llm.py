"""A deterministic loopback mock of the OpenAI chat-completions API, for tests and benchmarks.

It speaks real HTTP/1.1 (keep-alive) on 127.0.0.1 from an asyncio server, so the code under
test runs its real client stack (langchain-openai → openai → httpx). Replies are chosen by
the request's JSON-schema name (the step) and, for answers, by the model name (the role).

Like a serving engine it can take a fixed ``latency`` per call and serve at most ``slots``
calls at once (the rest queue), and it can inject faults at fixed rates: HTTP 503, replies
that are not JSON, requests that hang, and HTTP 429 with ``Retry-After``.

And it misbehaves as real models do (``MockLLM.realistic()`` turns all of it on): lists
shorter than asked, a repeated item, JSON in a code fence, after prose or after a
``<think>`` block, refusals, and list replies cut at ``max_tokens``. What a model would do
the same way for the same request (short lists, repeats, cut replies) is decided by the
request's own digest, so a retry or a resumed run meets the same reply; what a busy server
does at random (503, 429, hangs, refusals, wrapping) is drawn per call. Every request is
logged (unless ``record`` is off, for long benchmarks), so a test can check what was sent.

``python -m codeclm.bench.mock_llm --latency 0.05 --slots 64`` serves it from its own
process (the benchmark does this, so the mock's CPU is not counted as the client's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codeclm.bench import mock_model as model
from codeclm.bench.mock_model import (
    AVOID_MARKER,
    HARDER,
    REFUSAL,
    STRONG_MODEL,
    STRONG_PREFIX,
    TARGET_MODEL,
    TARGET_PREFIX,
    JudgeRule,
    iteration_of,
    mixed_rule,
)

__all__ = [
    "AVOID_MARKER",
    "HARDER",
    "REFUSAL",
    "STRONG_MODEL",
    "STRONG_PREFIX",
    "TARGET_MODEL",
    "TARGET_PREFIX",
    "MockLLM",
    "iteration_of",
    "mixed_rule",
]


@dataclass
class Request:
    """One logged request."""

    model: str
    schema: str | None
    prompt: str
    temperature: float | None
    at: float = 0.0
    """``time.monotonic()`` when it arrived."""
    fault: str | None = None
    """The fault injected into it, if any ('503', 'invalid_json', 'hang', '429', 'refusal')."""
    seed: int | None = None
    """The sampling seed the client sent."""
    worker: str | None = None
    """The client process (its ``X-Codeclm-Worker`` header: ``host:pid``)."""
    answered_at: float | None = None
    """``time.monotonic()`` when its answer was ready to send; None: never answered."""


@dataclass
class MockLLM:
    """The script: what each step answers. Tests change the fields before a run."""

    judge_rule: JudgeRule = lambda instruction: (9, 2)
    #: Added to whichever answer is shown first: a position-biased judge.
    first_position_bias: int = 0
    #: schema name -> how many of its next replies are not JSON (then valid again).
    garbage_next: Counter[str] = field(default_factory=Counter)
    #: reply garbage forever to a step whose prompt contains this text
    garbage_when: str | None = None
    #: refuse forever a step whose prompt contains this text
    refuse_when: str | None = None
    #: take ``slow_seconds`` longer to answer a request whose prompt contains this text
    slow_when: str | None = None
    slow_seconds: float = 1.0
    requests: list[Request] = field(default_factory=list)
    #: Log every request in ``requests`` (off for long benchmarks: it grows without bound).
    record: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    # ---- serving like an inference engine -----------------------------------------------
    #: Seconds each call takes (spent holding a slot).
    latency: float = 0.0
    #: Calls served at once; the rest wait for a slot. ``None``: no limit.
    slots: int | None = None
    #: Reported as ``max_model_len`` by ``GET /v1/models`` (as vLLM does).
    context_tokens: int = 8192
    #: When set, a request without ``Authorization: Bearer <api_key>`` gets HTTP 401.
    api_key: str | None = None
    # ---- faults, each drawn per call at its rate from a seeded generator -----------------
    error_rate: float = 0.0
    """HTTP 503 Service Unavailable."""
    invalid_json_rate: float = 0.0
    """A structured step's reply that is not JSON."""
    hang_rate: float = 0.0
    """The request is never answered; it waits until the client gives up."""
    rate_limit_rate: float = 0.0
    """HTTP 429 with ``Retry-After: retry_after``."""
    retry_after: float = 1.0
    rate_limit_next: int = 0
    """The next this-many calls get HTTP 429 with ``Retry-After`` (then served again)."""
    answer_errors_next: int = 0
    """The next this-many free-text answer calls get HTTP 503 (structured steps are served)."""
    refusal_rate: float = 0.0
    """A structured step's reply is a refusal ("I'm sorry, but I can't help with that.")."""
    wrap_rate: float = 0.0
    """A structured reply comes in a code fence, after prose, or after a <think> block."""
    # ---- what a model does the same way for the same request (by the request's digest) ----
    short_list_rate: float = 0.0
    """A list reply has fewer items than asked (about half)."""
    repeat_rate: float = 0.0
    """A list reply repeats an item (in other case and punctuation), or gives a generic one."""
    cut_rate: float = 0.0
    """A list reply of two or more items (the long replies) stops at max_tokens in the middle
    of its last item (finish_reason 'length')."""
    decode_distinct: int | None = None
    """Each metadata entry has only this many distinct instructions in it (then repeats)."""
    label_variants: bool = False
    """The encoder spells a use case (and a skill) differently for some seeds."""
    numbered_decode: bool = False
    """Decode 'Task N on USE CASE needing SKILLS.': alike in meaning, apart in words."""
    fault_seed: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    """What was injected, by kind."""
    in_flight: Counter[str] = field(default_factory=Counter)
    peak_in_flight: Counter[str] = field(default_factory=Counter)
    """The most calls of each model served at once."""
    #: Stop the client process with ``stop_signal`` when request number ``stop_at`` arrives
    #: (that request is never answered): a crash or Ctrl-C at an exact point of a run.
    stop_at: int | None = None
    stop_pid: int | None = None
    stop_signal: int = signal.SIGKILL
    received: int = 0
    first_call_at: float | None = None
    last_call_at: float | None = None
    """When the first chat call arrived and the last was answered (``time.monotonic()``):
    the window in which clients were calling, read by benchmarks at ``GET /v1/mock/stats``."""

    @classmethod
    def realistic(cls, **overrides: Any) -> MockLLM:
        """The misbehaviours of issue #10 at the rates seen against real servers."""
        rates: dict[str, Any] = dict(
            short_list_rate=0.5,
            repeat_rate=0.2,
            wrap_rate=0.1,
            refusal_rate=0.02,
            rate_limit_rate=0.03,
            retry_after=0.5,
            error_rate=0.03,
            cut_rate=0.03,
        )
        return cls(**{**rates, **overrides})

    def reply(self, body: dict[str, Any]) -> tuple[str, str]:
        """The reply's content and its ``finish_reason``."""
        prompt = body["messages"][-1]["content"]
        response_format = body.get("response_format") or {}
        schema_info = response_format.get("json_schema") or {}
        name, schema = schema_info.get("name"), schema_info.get("schema") or {}
        with self.lock:
            if name and self.garbage_next[name] > 0:
                self.garbage_next[name] -= 1
                return "this is not JSON", "stop"
        if self.garbage_when and name and self.garbage_when in prompt:
            return '{"still": "not the schema"}', "stop"
        if self.refuse_when and name and self.refuse_when in prompt:
            return REFUSAL, "stop"
        if name is None:
            instruction = prompt.strip()
            prefix = STRONG_PREFIX if body["model"] == STRONG_MODEL else TARGET_PREFIX
            return prefix + instruction, "stop"
        properties = schema.get("properties", {})
        salt = f"{body.get('seed')}|{body['model']}"
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "EncodedMetadata": lambda: model.encode(prompt, self.label_variants, properties),
            "SelfRubrics": lambda: model.rubrics(prompt, properties["actions"]["maxItems"], salt),
            "DecodedInstructions": lambda: model.decode(
                prompt,
                properties["instructions"]["maxItems"],
                salt,
                self.decode_distinct,
                self.numbered_decode,
            ),
            "ImprovedInstruction": lambda: model.improve(prompt),
            "PairwiseScores": lambda: model.judge(
                prompt, self.judge_rule, self.first_position_bias
            ),
            "BootstrappedInstructions": lambda: model.bootstrap(
                prompt, properties["instructions"]["maxItems"]
            ),
            "EvolvedInstruction": lambda: model.evolve(prompt),
        }
        make = steps.get(name, lambda: model.filled(schema))
        payload = self._as_a_model_would(make(), f"{prompt}|{salt}")
        text = json.dumps(payload)
        lists = [
            key for key, value in payload.items() if isinstance(value, list) and len(value) > 1
        ]
        if lists and self._roll(f"cut|{prompt}|{salt}") < self.cut_rate:
            # cut inside the last list's last item, as max_tokens would
            last = payload[lists[-1]][-1]
            return text[: text.rindex(json.dumps(last)) + max(2, len(last) // 2)], "length"
        return text, "stop"

    def _roll(self, text: str) -> float:
        """A number in [0, 1) fixed by ``text``: the same request always rolls the same."""
        return model.digest(f"{self.fault_seed}|{text}") / 0x100000000

    def _as_a_model_would(self, payload: dict[str, Any], request: str) -> dict[str, Any]:
        """Short lists and repeated items, the same way for the same request."""
        out = dict(payload)
        for key, items in payload.items():
            if not isinstance(items, list) or key == "skills":
                continue
            items = list(items)
            if len(items) > 1 and self._roll(f"short|{key}|{request}") < self.short_list_rate:
                items = items[: max(1, len(items) // 2)]
            if items and self._roll(f"repeat|{key}|{request}") < self.repeat_rate:
                if len(items) > 1 and self._roll(f"generic|{request}") < 0.5:
                    # the same item in other case and punctuation
                    items[-1] = items[0].upper().rstrip(".") + "!"
                else:  # a generic item other entries may give too
                    items[-1] = f"Tell me more about {model.field_of(request, '- Use case:')}."
            out[key] = items
        return out

    def _wrapped(self, text: str) -> str:
        """Valid JSON as a chatty model sends it: after prose, in a fence, after thinking."""
        style = self._rng.randrange(3)
        if style == 0:
            return f"Sure! Here is the JSON you asked for:\n{text}\nLet me know if you need more."
        if style == 1:
            return f"```json\n{text}\n```"
        return f"<think>\nThe user wants JSON. {{draft}} Let me write it.\n</think>\n{text}"

    # ---- what tests read --------------------------------------------------------------
    def calls(self, schema: str | None = None, model: str | None = None) -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (schema is None or r.schema == schema) and (model is None or r.model == model)
            ]

    # ---- serving -------------------------------------------------------------------------
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _slots: asyncio.Semaphore | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _thread: threading.Thread | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _draw_fault(self, structured: bool) -> str | None:
        """One draw per call: which fault (if any) this call gets."""
        with self.lock:
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                self.faults["429"] += 1
                return "429"
            if not structured and self.answer_errors_next > 0:
                self.answer_errors_next -= 1
                self.faults["503"] += 1
                return "503"
            roll = self._rng.random()
        for kind, rate in (
            ("503", self.error_rate),
            ("invalid_json", self.invalid_json_rate if structured else 0.0),
            ("hang", self.hang_rate),
            ("429", self.rate_limit_rate),
            ("refusal", self.refusal_rate if structured else 0.0),
            ("wrap", self.wrap_rate if structured else 0.0),
        ):
            if roll < rate:
                with self.lock:
                    self.faults[kind] += 1
                return kind
            roll -= rate
        return None

    async def _chat(
        self, body: dict[str, Any], worker: str | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One chat completion: (status, JSON payload, extra headers); ``-1`` never answers."""
        response_format = body.get("response_format") or {}
        fault = self._draw_fault(bool(response_format))
        request = None
        if self.record:
            request = Request(
                model=body["model"],
                schema=(response_format.get("json_schema") or {}).get("name"),
                prompt=body["messages"][-1]["content"],
                temperature=body.get("temperature"),
                at=time.monotonic(),
                fault=fault,
                seed=body.get("seed"),
                worker=worker,
            )
            with self.lock:
                self.requests.append(request)
        if fault == "hang":
            return -1, {}, {}
        if fault == "429":
            if request is not None:
                request.answered_at = time.monotonic()
            error = {"error": {"message": "rate limit reached", "type": "rate_limit"}}
            return 429, error, {"Retry-After": f"{self.retry_after:g}"}
        assert self._slots is not None
        model = body["model"]
        async with self._slots:
            self.in_flight[model] += 1
            self.peak_in_flight[model] = max(self.peak_in_flight[model], self.in_flight[model])
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                if self.slow_when and self.slow_when in body["messages"][-1]["content"]:
                    await asyncio.sleep(self.slow_seconds)
            finally:
                self.in_flight[model] -= 1
        if request is not None:
            request.answered_at = time.monotonic()
        if fault == "503":
            return 503, {"error": {"message": "overloaded", "type": "server_error"}}, {}
        content, finish_reason = self.reply(body)
        if fault == "invalid_json":
            content = "this is not JSON"
        elif fault == "refusal":
            content, finish_reason = REFUSAL, "stop"
        elif fault == "wrap":
            content = self._wrapped(content)
        prompt_tokens = len(body["messages"][-1]["content"]) // 4 + 1
        completion_tokens = len(content) // 4 + 1
        return (
            200,
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish_reason,
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            {},
        )

    async def _respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "invalid api key", "type": "auth"}}, {}
        if method == "GET" and path.rstrip("/").endswith("/mock/stats"):
            window = {"first": self.first_call_at, "last": self.last_call_at}
            return 200, {"received": self.received, **window}, {}
        if method == "GET" and path.rstrip("/").endswith("/models"):
            models = [STRONG_MODEL, TARGET_MODEL]
            data = [
                {"id": m, "object": "model", "max_model_len": self.context_tokens} for m in models
            ]
            return 200, {"object": "list", "data": data}, {}
        if method != "POST" or not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {method} {path}"}}, {}
        try:
            request = json.loads(body)
            valid = isinstance(request["model"], str) and bool(request["messages"])
            valid = valid and all(isinstance(m.get("content"), str) for m in request["messages"])
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:  # as OpenAI answers a malformed request: 400, nothing generated
            message = "'model' and a non-empty 'messages' list of {role, content} are required"
            return 400, {"error": {"message": message, "type": "invalid_request_error"}}, {}
        with self.lock:
            self.received += 1
            stop = self.stop_at == self.received and self.stop_pid is not None
            if self.first_call_at is None:
                self.first_call_at = time.monotonic()
        if stop:
            assert self.stop_pid is not None
            os.kill(self.stop_pid, self.stop_signal)
            return -1, {}, {}  # this request is never answered: it was in flight
        answer = await self._chat(request, headers.get("x-codeclm-worker"))
        self.last_call_at = time.monotonic()
        return answer

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
                status, payload, extra = await self._respond(method, path, headers, body)
                if status < 0:
                    await reader.read()  # hang until the client gives up and disconnects
                    return
                data = json.dumps(payload).encode()
                lines = [
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                    "Content-Type: application/json",
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
        self._slots = asyncio.Semaphore(self.slots or 1_000_000)
        self._rng = random.Random(self.fault_seed)
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def start(self) -> MockLLM:
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


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def main(argv: list[str] | None = None) -> None:
    """Serve the mock from this process until killed; print its base URL on the first line."""
    parser = argparse.ArgumentParser(prog="python -m codeclm.bench.mock_llm")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--slots", type=int, default=None, help="calls served at once")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of HTTP 503s")
    parser.add_argument("--invalid-json-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of HTTP 429s")
    parser.add_argument("--mixed", action="store_true", help="judge by mixed_rule (loops, drops)")
    parser.add_argument(
        "--label-variants",
        action="store_true",
        help="spell a use case (and a skill) differently for some seeds, as real encoders do",
    )
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="misbehave as real models do: short and repeated lists, wrapped JSON, refusals, "
        "cut replies, 429s and 503s (MockLLM.realistic)",
    )
    args = parser.parse_args(argv)
    make = MockLLM.realistic if args.realistic else MockLLM
    faults = {
        name: getattr(args, name)
        for name in ("error_rate", "invalid_json_rate", "hang_rate", "rate_limit_rate")
        if getattr(args, name)
    }
    mock = make(
        record=False,
        latency=args.latency,
        slots=args.slots,
        **faults,
    )
    if args.mixed:
        mock.judge_rule = mixed_rule
    mock.label_variants = args.label_variants

    async def serve() -> None:
        server = await mock.serve(args.port)
        print(mock.base_url, flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
