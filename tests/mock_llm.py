"""A deterministic loopback mock of the OpenAI chat-completions API, scripted per test.

It speaks real HTTP on 127.0.0.1, so the code under test runs its real client stack
(langchain-openai → openai → httpx). Replies are chosen by the request's JSON-schema name
(the step) and, for answers, by the model name (the role). Every request is logged, so a
test can check what was really sent: both judge orders, how many rubric calls, and so on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STRONG_MODEL = "strong-model"
TARGET_MODEL = "target-model"
STRONG_PREFIX = "STRONG ANSWER: "
TARGET_PREFIX = "TARGET ANSWER: "
HARDER = " (harder: "

#: (instruction text as judged) -> (strong score, target score)
JudgeRule = Callable[[str], tuple[int, int]]


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def iteration_of(instruction: str) -> int:
    """The mock's improve step appends one HARDER marker per rewrite."""
    return instruction.count(HARDER) + 1


def _field(prompt: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}(.*)$", prompt, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _section(prompt: str, title: str) -> str:
    match = re.search(rf"\[{re.escape(title)}\]\n(.*?)(?:\n\n\[|\n\nReply with)", prompt, re.S)
    return match.group(1) if match else ""


@dataclass
class Request:
    """One logged request."""

    model: str
    schema: str | None
    prompt: str
    temperature: float | None


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
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    #: Stop the client process with ``stop_signal`` when request number ``stop_at`` arrives
    #: (that request is never answered): a crash or Ctrl-C at an exact point of a run.
    stop_at: int | None = None
    stop_pid: int | None = None
    stop_signal: int = signal.SIGKILL
    received: int = 0

    # ---- what each step answers -------------------------------------------------------
    def encode(self, prompt: str) -> dict[str, Any]:
        seed = prompt.rsplit("Instruction:", 1)[1].strip()
        h = _digest(seed)
        use_cases = ["question answering", "creative writing", "coding help", "advice"]
        topics = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
        return {
            "use_case": use_cases[h % len(use_cases)],
            "skills": [topics[h % 7], topics[(h // 7) % 7 if (h // 7) % 7 != h % 7 else 0]],
        }

    def rubrics(self, prompt: str, k: int) -> dict[str, Any]:
        use_case = _field(prompt, "- Use case:")
        skills = _field(prompt, "- Skills:")
        return {
            "rubrics": [f"rubric {i} for {use_case} / {skills}" for i in range(k)],
            "actions": [f"action {i} for {use_case} / {skills}" for i in range(k)],
        }

    def decode(self, prompt: str, n: int) -> dict[str, Any]:
        use_case = _field(prompt, "- Use case:")
        skills = _field(prompt, "- Skills:")
        return {"instructions": [f"Task {j} on {use_case} needing {skills}." for j in range(n)]}

    def improve(self, prompt: str) -> dict[str, Any]:
        instruction = prompt.rsplit("Instruction: ", 1)[1].split("\n\nReply with")[0]
        action = _field(prompt, "Action:")
        return {"instruction": f"{instruction}{HARDER}{action})"}

    def judge(self, prompt: str) -> dict[str, Any]:
        instruction = _section(prompt, "Instruction")
        first = _section(prompt, "Assistant 1's answer")
        strong, target = self.judge_rule(instruction)
        if first.startswith(STRONG_PREFIX):
            one, two = strong + self.first_position_bias, target
        else:
            one, two = target + self.first_position_bias, strong
        return {"assistant_1": min(one, 10), "assistant_2": min(two, 10)}

    def reply(self, body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        response_format = body.get("response_format") or {}
        schema_info = response_format.get("json_schema") or {}
        name, schema = schema_info.get("name"), schema_info.get("schema") or {}
        with self.lock:
            self.requests.append(Request(body["model"], name, prompt, body.get("temperature")))
            if name and self.garbage_next[name] > 0:
                self.garbage_next[name] -= 1
                return "this is not JSON"
        if self.garbage_when and name and self.garbage_when in prompt:
            return '{"still": "not the schema"}'
        if name is None:
            instruction = prompt.strip()
            prefix = STRONG_PREFIX if body["model"] == STRONG_MODEL else TARGET_PREFIX
            return prefix + instruction
        properties = schema.get("properties", {})
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "EncodedMetadata": lambda: self.encode(prompt),
            "SelfRubrics": lambda: self.rubrics(prompt, properties["actions"]["maxItems"]),
            "DecodedInstructions": lambda: self.decode(
                prompt, properties["instructions"]["maxItems"]
            ),
            "ImprovedInstruction": lambda: self.improve(prompt),
            "PairwiseScores": lambda: self.judge(prompt),
        }
        return json.dumps(steps[name]())

    # ---- what tests read --------------------------------------------------------------
    def calls(self, schema: str | None = None, model: str | None = None) -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (schema is None or r.schema == schema) and (model is None or r.model == model)
            ]

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> MockLLM:
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with mock.lock:
                    mock.received += 1
                    stop = mock.stop_at == mock.received and mock.stop_pid is not None
                if stop:
                    assert mock.stop_pid is not None
                    os.kill(mock.stop_pid, mock.stop_signal)
                    return  # this request is never answered: it was in flight
                self._answer(body)

            def _answer(self, body: dict[str, Any]) -> None:
                content = mock.reply(body)
                prompt_tokens = len(body["messages"][-1]["content"]) // 4 + 1
                payload = json.dumps(
                    {
                        "id": "chatcmpl-mock",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": len(content) // 4 + 1,
                            "total_tokens": prompt_tokens + len(content) // 4 + 1,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def mixed_rule(text: str) -> tuple[int, int]:
    """Judge scores crossing every path: kept at once, kept after two rewrites, dropped."""
    kind = sum(map(ord, text.split(HARDER)[0])) % 3
    if kind == 0:
        return (9, 3)
    if kind == 1:
        return (9, 2) if iteration_of(text) >= 3 else (5, 5)
    return (5, 5)
