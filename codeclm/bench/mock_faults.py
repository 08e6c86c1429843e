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
from collections.abc import Sequence
from typing import Any

from codeclm.bench import mock_model as model

FAULTS = ("503", "invalid_json", "hang", "429", "refusal", "wrap")
"""The server-side faults, in the order their rates are laid end to end on one draw."""


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
                items[-1] = f"Tell me more about {model.field_of(request, '- Use case:')}."
        out[key] = items
    return out


def cut_list_reply(payload: dict[str, Any]) -> str | None:
    """The JSON of ``payload`` stopped inside its last list's last item, as ``max_tokens``
    would stop it; None when it has no list of two or more items."""
    lists = [key for key, value in payload.items() if isinstance(value, list) and len(value) > 1]
    if not lists:
        return None
    text = json.dumps(payload)
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
