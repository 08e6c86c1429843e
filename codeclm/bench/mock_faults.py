"""How the loopback mock misbehaves, as real servers and models do.

Two kinds, kept apart so a retry meets what a real one would:

- what a *model* does the same way for the same request (a short or repeated list, a reply
  cut at ``max_tokens``, a refusal of one sampling seed) is rolled from the request's own
  digest (``roll``), so a retry or a resumed run meets the same reply;
- what a busy *server* does at random (503, 429, a hang, a reply wrapped in prose) is drawn
  per call from a seeded generator (``draw``).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from codeclm.bench import mock_model as model

Refused = tuple[int, dict[str, Any], dict[str, str]]
"""An HTTP status, its JSON error and headers."""


@dataclass
class Misbehaviour:
    """What goes wrong, and how often: the mock's fields a test sets (all off by default)."""

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
    """The next this-many free-text answer calls get HTTP ``answer_error_status`` (structured
    steps are served) ..."""
    answer_error_status: int = 503
    """... 503 (busy: each request asks again twice itself before the graph's retry sees
    it) or 500 (a server error: straight to the graph's retry)."""
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
    """A list reply of two or more items (the long replies) stops at max_tokens in the
    middle of its last item (finish_reason 'length'). Rolled per request, its budget
    included: asked again with a larger budget, it may come whole."""
    cut_objects: bool = False
    """``cut_rate`` applies to replies without a list too (stopped half-way)."""
    cut_when: str | None = None
    """Every structured reply to a prompt containing this text is cut half-way, at any
    budget (a small model that loops until max_tokens on that step)."""
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
    long_answer_roles: tuple[str, ...] = (model.STRONG_MODEL, model.TARGET_MODEL)
    """The models whose answers run long at ``long_answer_rate`` (each rolled apart)."""
    copied_items: tuple[str, ...] = ()
    copy_rate: float = 0.0
    """Decoded instructions that are one of ``copied_items`` (a benchmark's), at this rate:
    a model that reproduces evaluation items it has seen."""
    first_person_rate: float = 0.0
    """Instructions, rewrites and later turns the mock writes as first-person requests
    ("I can't …", "I'm unable to …"), each at this rate: the user's voice."""
    rewrite_chars: int = 0
    """Every improved instruction is about this long (a model that writes at length)."""
    reasoning_field: str | None = None
    """'reasoning_content' or 'reasoning': every reply carries its reasoning there."""
    think_rate: float = 0.0
    """A reply's content starts with a ``<think>`` block (besides any reasoning field)."""
    json_schema_ok: bool = True
    """False: ``response_format`` json_schema gets HTTP 400 (a server without it)."""
    json_object_ok: bool = True
    """False: ``response_format`` json_object gets HTTP 400 too (plain prompting only)."""
    fault_seed: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    """What was injected, by kind."""

    def completion(
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
        if roll(self.fault_seed, f"think|{prompt}|{body.get('seed')}") < self.think_rate:
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

    def refused_format(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """HTTP 400 for a ``response_format`` this server does not take."""
        kind = (body.get("response_format") or {}).get("type")
        if (kind == "json_schema" and not self.json_schema_ok) or (
            kind == "json_object" and not self.json_object_ok
        ):
            self.faults[f"400 {kind}"] += 1
            message = f"response_format type '{kind}' is not supported by this server"
            error = {"message": message, "type": "invalid_request_error"}
            return 400, {"error": {**error, "param": "response_format"}}, {}
        return None


#: The fields of replies in the user's voice: instructions, rewrites, later turns.
USER_VOICE = ("instructions", "instruction", "message")


def in_first_person(payload: dict[str, Any], fault_seed: int, rate: float) -> dict[str, Any]:
    """The reply with some of its user-voice texts written as first-person requests."""
    if not rate:
        return payload

    def voiced(text: Any) -> Any:
        chosen = isinstance(text, str) and roll(fault_seed, f"first-person|{text}") < rate
        return model.first_person(text) if chosen else text

    return {
        key: ([voiced(t) for t in value] if isinstance(value, list) else voiced(value))
        if key in USER_VOICE
        else value
        for key, value in payload.items()
    }


def copying(
    payload: dict[str, Any], fault_seed: int, items: Sequence[str], rate: float
) -> dict[str, Any]:
    """A decode reply with some of its instructions replaced by ``items`` (copied)."""
    if not items or not rate:
        return payload

    def copied(text: str) -> str:
        if roll(fault_seed, f"copy|{text}") >= rate:
            return text
        return items[model.digest(f"which|{text}") % len(items)]

    return {**payload, "instructions": [copied(t) for t in payload["instructions"]]}


def roll(fault_seed: int, text: str) -> float:
    """A number in [0, 1) fixed by ``text``: the same request always rolls the same."""
    return model.digest(f"{fault_seed}|{text}") / 0x100000000


def draw(rng: random.Random, rates: Sequence[tuple[str, float]]) -> str | None:
    """One draw per call: which fault (if any) this call gets, each at its rate."""
    value = rng.random()
    for kind, rate in rates:
        if value < rate:
            return kind
        value -= rate
    return None


def as_a_model_would(
    payload: dict[str, Any],
    request: str,
    *,
    fault_seed: int,
    short_list_rate: float,
    list_cap: int | None,
    repeat_rate: float,
    use_case: str = "",
) -> dict[str, Any]:
    """Short lists and repeated items, the same way for the same request.

    ``short_list_rate``: about half of a list, at that rate; ``list_cap``: every list has
    between 1 and that many items (a stingy model; never more than asked); ``repeat_rate``:
    the last item repeats the first in other case and punctuation, or is a generic one.
    """
    out = dict(payload)
    for key, items in payload.items():
        if not isinstance(items, list) or key == "skills":
            continue
        items = list(items)
        if len(items) > 1 and roll(fault_seed, f"short|{key}|{request}") < short_list_rate:
            items = items[: max(1, len(items) // 2)]
        if list_cap is not None and len(items) > 1:
            most = min(list_cap, len(items))
            keep = 1 + int(roll(fault_seed, f"cap|{key}|{request}") * most)
            items = items[:keep]
        if items and roll(fault_seed, f"repeat|{key}|{request}") < repeat_rate:
            if len(items) > 1 and roll(fault_seed, f"generic|{request}") < 0.5:
                items[-1] = items[0].upper().rstrip(".") + "!"
            else:  # a generic item other entries may give too
                items[-1] = f"Tell me more about {use_case}."
        out[key] = items
    return out


def cut_reply(payload: dict[str, Any], objects: bool) -> str | None:
    """The JSON of ``payload`` stopped as ``max_tokens`` would stop it: inside its last
    list's last item (the long replies); with no list of two or more, half-way (``objects``)
    or not at all (None)."""
    text = json.dumps(payload)
    lists = [key for key, value in payload.items() if isinstance(value, list) and len(value) > 1]
    if not lists:
        return text[: len(text) // 2] if objects else None
    last = payload[lists[-1]][-1]
    return text[: text.rindex(json.dumps(last)) + max(2, len(last) // 2)]


def wrapped(text: str, style: int) -> str:
    """Valid JSON as a chatty model sends it: after prose, in a fence, after thinking."""
    if style == 0:
        return f"Sure! Here is the JSON you asked for:\n{text}\nLet me know if you need more."
    if style == 1:
        return f"```json\n{text}\n```"
    return f"<think>\nThe user wants JSON. {{draft}} Let me write it.\n</think>\n{text}"


def within_budget(content: str, max_tokens: int | None) -> tuple[str, str]:
    """The reply as a server sends it under ``max_tokens`` (the mock counts 4 characters a
    token): whole, or cut there with ``finish_reason`` length."""
    if max_tokens is None or len(content) // 4 + 1 <= max_tokens:
        return content, "stop"
    return content[: max(0, 4 * max_tokens - 4)], "length"
