"""Getting a structured reply out of what real models send.

Servers that enforce ``response_format`` return bare JSON; many do not, and models wrap
the object in a code fence, in a sentence or after a ``<think>`` block, or stop at
``max_tokens`` half-way through a list. Before a reply counts as unparseable, the JSON is
taken out of the fence (langchain-core's ``parse_json_markdown``), out of surrounding prose
(the standard library's ``JSONDecoder.raw_decode`` from each opening brace) and, for a
reply cut at ``max_tokens``, out of the complete part (pydantic-core's partial JSON, which
drops the unfinished last item). A refusal is its own error, never "bad JSON".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, TypeVar

import pydantic_core
from langchain_core.utils.json import parse_json_markdown
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_OPEN_THINK = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i can(?:'|no)t|i cannot|i won'?t|i will not|"
    r"i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai)",
    re.IGNORECASE,
)


class UnparseableReply(Exception):
    """The model's reply did not match the requested schema (retried, then recorded)."""


class Refusal(UnparseableReply):
    """The model declined to answer (retried, then recorded as a refusal)."""


class ShortReply(Exception):
    """Every ask was answered, but fewer distinct items came back than the step needs.

    Not retried within the run (the same requests would be answered from the cache);
    recorded, and asked again with fresh sampling by the next run.
    """


def without_reasoning(content: str) -> str:
    """The reply with its ``<think>…</think>`` blocks (and an unclosed one's tail) removed."""
    text = _THINK.sub("", content)
    unclosed = _OPEN_THINK.search(text)
    return text[: unclosed.start()] if unclosed else text


def json_values(text: str) -> Iterator[Any]:
    """Every JSON value the text may hold: fenced or whole first, then each embedded one."""
    try:
        whole = parse_json_markdown(text, parser=json.loads)
    except (json.JSONDecodeError, ValueError):
        whole = None
    if whole is not None:
        yield whole
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        yield value


def _complete_part(text: str) -> Any:
    """What a reply cut at ``max_tokens`` says in full: its unfinished last item dropped."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        return pydantic_core.from_json(text[start:].rstrip("` \n"), allow_partial=True)
    except ValueError:
        return None


def _shaped(value: Any, schema: type[BaseModel]) -> Any:
    """A bare list where the schema has one list field: the model left out the object."""
    if isinstance(value, list) and len(schema.model_fields) == 1:
        return {next(iter(schema.model_fields)): value}
    return value


def parse_reply(
    content: str, schema: type[M], *, cut: bool = False, refusal: str | None = None
) -> M:
    """The reply as ``schema``; raises ``Refusal`` or ``UnparseableReply`` with the reason.

    ``cut``: the server said the reply stopped at ``max_tokens`` (``finish_reason`` length):
    for a schema of lists, the complete items are kept. ``refusal``: the server's own
    refusal field (OpenAI structured outputs).
    """
    if refusal:
        raise Refusal(f"refused: {refusal.strip()[:200]}")
    text = without_reasoning(content)
    first_error: str | None = None
    values = list(json_values(text))
    if cut and _has_lists(schema):
        values.append(_complete_part(text))
    for value in values:
        if value is None:
            continue
        try:
            return schema.model_validate(_shaped(value, schema))
        except ValidationError as exc:
            first_error = first_error or exc.errors()[0]["msg"]
    if not values and _REFUSAL.match(text.strip()):
        raise Refusal(f"refused: {' '.join(text.split())[:200]}")
    why = "cut at max_tokens; " if cut else ""
    found = f"does not match {schema.__name__}: {first_error}" if first_error else "has no JSON"
    raise UnparseableReply(f"{why}reply {found} (reply starts {content[:80]!r})")


def _has_lists(schema: type[BaseModel]) -> bool:
    return any(
        getattr(field.annotation, "__origin__", None) is list
        for field in schema.model_fields.values()
    )
