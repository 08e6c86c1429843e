"""A deterministic loopback mock of the OpenAI chat-completions API, for tests and benchmarks.

It speaks real HTTP/1.1 (keep-alive) on 127.0.0.1 (``mock_server.py``), so the code under
test runs its real client stack. What the model says at each step is ``mock_model.py``'s
(``mock_script.py`` picks it): chosen by the request's JSON-schema name or by the prompt file
its prompt was rendered from (``mock_reading.py``), and for answers by the model name (the
role).

Like a serving engine it can take a fixed ``latency`` per call and serve at most ``slots``
calls at once (the rest queue), and it injects faults at fixed rates: HTTP 503, replies
that are not JSON, requests that hang, and HTTP 429 with ``Retry-After``. It can refuse
``response_format`` json_schema (and json_object) with HTTP 400, as some servers do.

And it misbehaves as real models do (``mock_faults.py``; ``MockLLM.realistic()`` turns the
common ones on, ``MockLLM.stingy()`` gives lists of 1 to 3 items): lists shorter than asked,
a repeated item, JSON in a code fence, after prose or after a ``<think>`` block, refusals (in
structured steps and in answers, in the text or the ``refusal`` field), replies cut at
``max_tokens`` (a list half-way, or an answer longer than the budget), and reasoning in
``reasoning_content`` / ``reasoning`` and in ``<think>`` blocks. Every request is logged
(unless ``record`` is off, for long benchmarks), so a test can check what was sent.

``python -m codeclm.bench.mock_cli --latency 0.05 --slots 64`` serves it from its own
process (the benchmark does this, so the mock's CPU is not counted as the client's).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codeclm.bench import mock_faults as faults
from codeclm.bench import mock_model as model
from codeclm.bench.mock_batches import MockBatches
from codeclm.bench.mock_model import (
    HARDER,
    REFUSAL,
    STRONG_MODEL,
    STRONG_PREFIX,
    TARGET_MODEL,
    TARGET_PREFIX,
    iteration_of,
    mixed_rule,
    paper_rule,
)
from codeclm.bench.mock_reading import ReadPrompt
from codeclm.bench.mock_script import Script
from codeclm.bench.mock_server import Answer, LoopbackServer
from codeclm.bench.mock_serving import Serving

__all__ = [
    "HARDER",
    "REFUSAL",
    "STRONG_MODEL",
    "STRONG_PREFIX",
    "TARGET_MODEL",
    "TARGET_PREFIX",
    "MockLLM",
    "iteration_of",
    "mixed_rule",
    "paper_rule",
]


@dataclass
class Request:
    """One logged request."""

    model: str
    schema: str | None
    """The step: the request's schema name, or the reply its prompt file's step declares (the
    judges' plain-line replies count as 'PairwiseScores'); None for an answer."""
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
    max_tokens: int | None = None
    response_format: str | None = None
    """The ``response_format`` type sent ('json_schema', 'json_object'), if any."""
    reply: str = ""
    """The content it was answered with."""
    history: list[tuple[str, str]] = field(default_factory=list)
    """The conversation sent before ``prompt``, as (role, content)."""
    read: ReadPrompt = field(default_factory=ReadPrompt)
    """The prompt read back: the prompt file it was rendered from, and with which values."""

    @property
    def values(self) -> dict[str, str]:
        return self.read.values


@dataclass
class MockLLM(Script, Serving, LoopbackServer):
    """The loopback mock: what each step answers and how it misbehaves (``Script``), how it
    serves (``Serving``), over HTTP (``LoopbackServer``). Tests change the fields before a
    run."""

    #: take ``slow_seconds`` longer to answer a request whose prompt contains this text
    slow_when: str | None = None
    slow_seconds: float = 1.0
    requests: list[Request] = field(default_factory=list)
    batch_api: MockBatches = field(default_factory=MockBatches)
    """The Batch API's files and batches (its delay, expiries and failing lines)."""
    #: Log every request in ``requests`` (off for long benchmarks: it grows without bound).
    record: bool = True
    # ---- serving: latency, slots, load, limits (``mock_serving.Serving``) ----------------
    #: Stop the client process with ``stop_signal`` when request number ``stop_at`` arrives
    #: (that request is never answered): a crash or Ctrl-C at an exact point of a run.
    stop_at: int | None = None
    #: Or when the first request for which this says True arrives (a kill at a kind of step).
    stop_on: Callable[[dict[str, Any]], bool] | None = None
    stop_pid: int | None = None
    stop_signal: int = signal.SIGKILL
    #: Or kill the worker process ``host:pid`` when its own request number ``stop_worker_at``
    #: arrives (that request is never answered): a worker killed mid-node, wherever it is.
    stop_worker: str | None = None
    stop_worker_at: int = 1
    by_worker: Counter[str] = field(default_factory=Counter)

    received: int = 0
    first_call_at: float | None = None
    last_call_at: float | None = None
    """When the first chat call arrived and the last was answered (``time.monotonic()``):
    the window in which clients were calling, read by benchmarks at ``GET /v1/mock/stats``."""
    _rng: random.Random = field(default_factory=random.Random)

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

    @classmethod
    def stingy(cls, **overrides: Any) -> MockLLM:
        """A model that gives 1 to 3 items whenever a list of 4 or more is asked for,
        otherwise well-formed (weaker models do): the budget must hold all the same."""
        return cls(**{"list_cap": 3, **overrides})

    # ---- what tests read --------------------------------------------------------------
    def calls(self, schema: str | None = None, model: str | None = None) -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (schema is None or r.schema == schema) and (model is None or r.model == model)
            ]

    # ---- serving -------------------------------------------------------------------------
    async def on_start(self) -> None:
        self.open_slots()
        self._rng = random.Random(self.fault_seed)

    def _draw_fault(self, structured: bool) -> str | None:
        """One draw per call: which fault (if any) this call gets."""
        with self.lock:
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                self.faults["429"] += 1
                return "429"
            if not structured and self.answer_errors_next > 0:
                self.answer_errors_next -= 1
                self.faults[str(self.answer_error_status)] += 1
                return str(self.answer_error_status)
            kind = faults.draw(
                self._rng,
                [
                    ("503", self.error_rate),
                    ("invalid_json", self.invalid_json_rate if structured else 0.0),
                    ("hang", self.hang_rate),
                    ("429", self.rate_limit_rate),
                    ("refusal", self.refusal_rate if structured else 0.0),
                    ("wrap", self.wrap_rate if structured else 0.0),
                ],
            )
            if kind is not None:
                self.faults[kind] += 1
            return kind

    async def _chat(self, body: dict[str, Any], worker: str | None = None) -> Answer:
        """One chat completion: (status, JSON payload, extra headers); ``-1`` never answers."""
        asked = model.request_step(body, self.prompts_dir)  # (read once: reply takes it)
        step, _, read = asked
        response_format = body.get("response_format") or {}
        fault = self._draw_fault(step is not None)
        request = None
        if self.record:
            request = Request(
                model=body["model"],
                schema=step,
                prompt=body["messages"][-1]["content"],
                read=read,
                temperature=body.get("temperature"),
                at=time.monotonic(),
                fault=fault,
                seed=body.get("seed"),
                worker=worker,
                max_tokens=model.max_tokens_of(body),
                response_format=response_format.get("type"),
                history=[(m["role"], m["content"]) for m in body["messages"][:-1]],
            )
            with self.lock:
                self.requests.append(request)
        if (refused := self.refuse(body)) is not None:
            if request is not None:
                request.answered_at = time.monotonic()
            self.statuses[refused[0]] += 1
            return refused
        if (refused := self.refused_format(body)) is not None:
            return refused
        if fault == "hang":
            return -1, {}, {}
        if fault == "429":
            if request is not None:
                request.answered_at = time.monotonic()
            self.statuses[429] += 1
            error = {"error": {"message": "rate limit reached", "type": "rate_limit"}}
            return 429, error, {"Retry-After": f"{self.retry_after:g}"}
        slow = self.slow_when and self.slow_when in body["messages"][-1]["content"]
        await self.serve_call(body["model"], self.slow_seconds if slow else 0.0)
        if request is not None:
            request.answered_at = time.monotonic()
        if fault in ("500", "503"):
            self.statuses[int(fault)] += 1
            return int(fault), {"error": {"message": "overloaded", "type": "server_error"}}, {}
        content, finish_reason, refusal = self.reply(body, asked)
        if fault == "invalid_json":
            content = "this is not JSON"
        elif fault == "refusal":
            content, finish_reason = REFUSAL, "stop"
        elif fault == "wrap":
            content = faults.wrapped(content, self._rng.randrange(3))
        completion = self.completion(body, content, finish_reason, refusal)
        if request is not None:
            request.reply = completion["choices"][0]["message"]["content"] or ""
        self.statuses[200] += 1
        return 200, completion, {}

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
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
        batched = await self.batch_api.route(method, path, headers, body, self._chat)
        if batched is not None:  # the Batch API: files and batches (mock_batches.py)
            return batched
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
        worker = headers.get("x-codeclm-worker")
        with self.lock:
            self.received += 1
            stop_pid = self.stop_pid if self.stop_at == self.received else None
            if self.stop_on is not None and self.stop_on(request):
                stop_pid, self.stop_on = self.stop_pid, None
            if worker is not None:
                self.by_worker[worker] += 1
                if worker == self.stop_worker and self.by_worker[worker] == self.stop_worker_at:
                    stop_pid = int(worker.rsplit(":", 1)[1])
            if self.first_call_at is None:
                self.first_call_at = time.monotonic()
        if stop_pid is not None:
            os.kill(stop_pid, self.stop_signal)
            return -1, {}, {}  # this request is never answered: it was in flight
        answer = await self._chat(request, worker)
        self.last_call_at = time.monotonic()
        return answer
