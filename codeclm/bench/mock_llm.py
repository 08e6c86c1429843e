"""A deterministic loopback mock of the OpenAI chat-completions API, for tests and benchmarks.

It speaks real HTTP/1.1 (keep-alive) on 127.0.0.1 (``mock_server.py``), so the code under
test runs its real client stack. What the model says at each step is ``mock_model.py``'s,
chosen by the request's JSON-schema name or its prompt's words, and for answers by the model
name (the role).

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

from codeclm.bench import mock_faults as faults
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
from codeclm.bench.mock_server import Answer, LoopbackServer

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
    """The step: the request's schema name, or the one its prompt's words tell (the judges'
    plain-line replies count as 'PairwiseScores'); None for an answer."""
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


@dataclass
class MockLLM(LoopbackServer):
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
    strict_models: bool = False
    """A chat request naming a model it does not serve gets HTTP 404 model_not_found."""
    json_schema_ok: bool = True
    """False: ``response_format`` json_schema gets HTTP 400 (a server without it)."""
    json_object_ok: bool = True
    """False: ``response_format`` json_object gets HTTP 400 too (plain prompting only)."""
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
    list_cap: int | None = None
    """Every list reply has between 1 and this many items (a stingy model)."""
    repeat_rate: float = 0.0
    """A list reply repeats an item (in other case and punctuation), or gives a generic one."""
    cut_rate: float = 0.0
    """A list reply of two or more items (the long replies) stops at max_tokens in the middle
    of its last item (finish_reason 'length')."""
    decode_distinct: int | None = None
    """Each metadata entry has only this many distinct instructions in it (then repeats)."""
    rubrics_distinct: dict[str, int] = field(default_factory=dict)
    """use case -> how many distinct rubrics and actions its entries have (then repeats)."""
    label_variants: bool = False
    """The encoder spells a use case (and a skill) differently for some seeds."""
    numbered_decode: bool = False
    """Decode 'Task N on USE CASE needing SKILLS.': alike in meaning, apart in words."""
    answer_refusal_rate: float = 0.0
    """An answer of either role is a refusal, for that prompt and sampling seed (another
    seed may answer)."""
    refuse_answers: dict[str, str] = field(default_factory=dict)
    """model -> text: that model refuses every answer whose prompt contains the text."""
    refusal_field: bool = False
    """Refusals come in the message's ``refusal`` field (content empty), as OpenAI's do."""
    long_answer_rate: float = 0.0
    """An answer needs ``long_answer_tokens``: cut at a smaller ``max_tokens``."""
    long_answer_tokens: int = 3000
    reasoning_field: str | None = None
    """'reasoning_content' or 'reasoning': every reply carries its reasoning there."""
    think_rate: float = 0.0
    """A reply's content starts with a ``<think>`` block (besides any reasoning field)."""
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
    _slots: asyncio.Semaphore | None = None
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

    # ---- what the model says ----------------------------------------------------------------
    def reply(self, body: dict[str, Any]) -> tuple[str, str, str | None]:
        """The reply's content, its ``finish_reason``, and a refusal for the ``refusal`` field."""
        prompt = body["messages"][-1]["content"]
        step, schema = _step(body)
        with self.lock:
            if step and self.garbage_next[step] > 0:
                self.garbage_next[step] -= 1
                return "this is not JSON", "stop", None
        if self.garbage_when and step and self.garbage_when in prompt:
            return '{"still": "not the schema"}', "stop", None
        if self.refuse_when and step and self.refuse_when in prompt:
            return REFUSAL, "stop", None
        if step is None:
            return self._answer(body)
        if step == "PairwiseScores":  # the judges answer in a line, not in JSON
            return model.judge(prompt, self.judge_rule, self.first_position_bias), "stop", None
        salt = f"{body.get('seed')}|{body['model']}"
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "EncodedMetadata": lambda: model.encode(prompt, self.label_variants, schema),
            "SelfRubrics": lambda: model.rubrics(
                prompt,
                model.count_in(prompt, r"Write (\d+) rubrics", 4),
                salt,
                self.rubrics_distinct.get(model.field_of(prompt, "- Use case:")),
            ),
            "DecodedInstructions": lambda: model.decode(
                prompt,
                model.count_in(prompt, r"Write (\d+) diverse instructions", 5),
                salt,
                self.decode_distinct,
                self.numbered_decode,
            ),
            "ImprovedInstruction": lambda: model.improve(prompt),
            "BootstrappedInstructions": lambda: model.bootstrap(
                prompt, model.count_in(prompt, r"Write (\d+) new tasks", 8)
            ),
            "EvolvedInstruction": lambda: model.evolve(prompt),
        }
        make = steps.get(step, lambda: model.filled({"properties": schema}))
        payload = faults.as_a_model_would(
            make(),
            f"{prompt}|{salt}",
            fault_seed=self.fault_seed,
            short_list_rate=self.short_list_rate,
            list_cap=self.list_cap,
            repeat_rate=self.repeat_rate,
        )
        # a long reply for its budget: the same request always, a larger budget maybe not
        cut = faults.cut_list_reply(payload)
        roll = faults.roll(self.fault_seed, f"cut|{prompt}|{salt}|{_max_tokens(body)}")
        if cut is not None and roll < self.cut_rate:
            return cut, "length", None
        return json.dumps(payload), "stop", None

    def _answer(self, body: dict[str, Any]) -> tuple[str, str, str | None]:
        """A role's free-text answer: maybe a refusal (for this seed), maybe a long one."""
        prompt, role = body["messages"][-1]["content"], body["model"]
        always = self.refuse_answers.get(role)
        if (always is not None and always in prompt) or faults.roll(
            self.fault_seed, f"refuse|{prompt}|{body.get('seed')}|{role}"
        ) < self.answer_refusal_rate:
            return ("", "stop", REFUSAL) if self.refusal_field else (REFUSAL, "stop", None)
        long = faults.roll(self.fault_seed, f"long|{prompt}") < self.long_answer_rate
        text = model.answer(prompt, role, self.long_answer_tokens if long else 0)
        return *faults.within_budget(text, _max_tokens(body)), None

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
        self._slots = asyncio.Semaphore(self.slots or 1_000_000)
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
                self.faults["503"] += 1
                return "503"
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

    def _refused_format(self, body: dict[str, Any]) -> Answer | None:
        """HTTP 400 for a ``response_format`` this server does not take."""
        kind = (body.get("response_format") or {}).get("type")
        if (kind == "json_schema" and not self.json_schema_ok) or (
            kind == "json_object" and not self.json_object_ok
        ):
            with self.lock:
                self.faults[f"400 {kind}"] += 1
            message = f"response_format type '{kind}' is not supported by this server"
            error = {"message": message, "type": "invalid_request_error"}
            return 400, {"error": {**error, "param": "response_format"}}, {}
        return None

    async def _chat(self, body: dict[str, Any], worker: str | None = None) -> Answer:
        """One chat completion: (status, JSON payload, extra headers); ``-1`` never answers."""
        step, _ = _step(body)
        response_format = body.get("response_format") or {}
        fault = self._draw_fault(step is not None)
        request = None
        if self.record:
            request = Request(
                model=body["model"],
                schema=step,
                prompt=body["messages"][-1]["content"],
                temperature=body.get("temperature"),
                at=time.monotonic(),
                fault=fault,
                seed=body.get("seed"),
                worker=worker,
                max_tokens=_max_tokens(body),
                response_format=response_format.get("type"),
            )
            with self.lock:
                self.requests.append(request)
        if self.strict_models and body["model"] not in (STRONG_MODEL, TARGET_MODEL):
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            error: dict[str, Any] = {"message": message, "code": "model_not_found"}
            return 404, {"error": {**error, "type": "invalid_request_error"}}, {}
        if (refused := self._refused_format(body)) is not None:
            return refused
        if fault == "hang":
            return -1, {}, {}
        if fault == "429":
            if request is not None:
                request.answered_at = time.monotonic()
            error = {"error": {"message": "rate limit reached", "type": "rate_limit"}}
            return 429, error, {"Retry-After": f"{self.retry_after:g}"}
        assert self._slots is not None
        role = body["model"]
        async with self._slots:
            self.in_flight[role] += 1
            self.peak_in_flight[role] = max(self.peak_in_flight[role], self.in_flight[role])
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                if self.slow_when and self.slow_when in body["messages"][-1]["content"]:
                    await asyncio.sleep(self.slow_seconds)
            finally:
                self.in_flight[role] -= 1
        if request is not None:
            request.answered_at = time.monotonic()
        if fault == "503":
            return 503, {"error": {"message": "overloaded", "type": "server_error"}}, {}
        content, finish_reason, refusal = self.reply(body)
        if fault == "invalid_json":
            content = "this is not JSON"
        elif fault == "refusal":
            content, finish_reason = REFUSAL, "stop"
        elif fault == "wrap":
            content = faults.wrapped(content, self._rng.randrange(3))
        completion = self._completion(body, content, finish_reason, refusal)
        if request is not None:
            request.reply = completion["choices"][0]["message"]["content"] or ""
        return 200, completion, {}

    def _completion(
        self, body: dict[str, Any], content: str, finish_reason: str, refusal: str | None
    ) -> dict[str, Any]:
        """The chat-completion object, with the reasoning where this server puts it."""
        prompt = body["messages"][-1]["content"]
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if refusal is not None:
            message.update(content=None, refusal=refusal)
        reasoning = f"Let me think about {' '.join(prompt.split()[:8])} step by step."
        if self.reasoning_field:
            message[self.reasoning_field] = reasoning
        if faults.roll(self.fault_seed, f"think|{prompt}|{body.get('seed')}") < self.think_rate:
            message["content"] = f"<think>\n{reasoning}\n</think>\n\n{content}"
        prompt_tokens = len(prompt) // 4 + 1
        thinking = len(reasoning) // 4 + 1 if self.reasoning_field else 0
        completion_tokens = len(content) // 4 + 1 + thinking
        return {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens_details": {"reasoning_tokens": thinking},
            },
        }

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


def _step(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The step a request belongs to (its schema's name, else its prompt's words), and the
    schema's properties when it sent one."""
    block = (body.get("response_format") or {}).get("json_schema") or {}
    properties = (block.get("schema") or {}).get("properties") or {}
    return block.get("name") or model.step_of(body["messages"][-1]["content"]), properties


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if value is not None else None


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
    parser.add_argument("--stingy", action="store_true", help="every list reply has 1 to 3 items")
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="misbehave as real models do: short and repeated lists, wrapped JSON, refusals, "
        "cut replies, 429s and 503s (MockLLM.realistic)",
    )
    args = parser.parse_args(argv)
    make = MockLLM.realistic if args.realistic else MockLLM
    rates = {
        name: getattr(args, name)
        for name in ("error_rate", "invalid_json_rate", "hang_rate", "rate_limit_rate")
        if getattr(args, name)
    }
    mock = make(
        record=False,
        latency=args.latency,
        slots=args.slots,
        **rates,
        list_cap=3 if args.stingy else None,
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
