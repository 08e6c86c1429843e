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

_THINK = re.compile(r"<(think|thinking|reasoning)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_OPEN_THINK = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_DECLINE = (
    r"i (?:can(?:'|’)?t|can ?not|won(?:'|’)?t|will not|must (?:decline|refuse)|"
    r"(?:have|'ve|’ve) to decline|(?:am|'m|’m) (?:not able|unable|not allowed|not "
    r"permitted|not comfortable))|i(?:'|’)m (?:not able|unable|not allowed|not permitted|"
    r"not comfortable)"
)
_DECLINED = re.compile(
    rf"^\W*(?:(?:(?:i(?:'|’)?m |i am |i )?(?:so |very )?(?:sorry|apologi[sz]e)|as an ai"
    rf"(?: language model)?)\b[^.!?\n]{{0,60}}?\b)?(?:{_DECLINE})\b"
    r"(?!\s+(?:stress|emphasi[sz]e|overstate|wait|believe|imagine|agree|recommend \w+ enough))",
    re.IGNORECASE,
)
REFUSAL_MAX_WORDS = 80
"""A declining first sentence makes a reply a refusal only when the reply is this short:
a long answer that opens with a caveat ("I can't give legal advice, but …") answers."""


class UnparseableReply(Exception):
    """The model's reply did not match the requested schema (retried, then recorded)."""

    usage: Any = None
    """The tokens the replies spent (a ``TokenUsage``), when known: paid all the same."""


class Refusal(UnparseableReply):
    """The model declined to answer (retried, then recorded as a refusal)."""


class CutReply(UnparseableReply):
    """The reply stopped at ``max_tokens`` before it was complete, even at the role's
    ceiling: not retried (the same request would stop there again), recorded."""


def without_reasoning(content: str) -> str:
    """The reply with its ``<think>…</think>`` blocks (and an unclosed one's tail) removed."""
    return split_reasoning(content)[1]


def split_reasoning(content: str) -> tuple[str, str]:
    """``(reasoning, answer)``: the ``<think>…</think>`` blocks of a reply apart from the rest.

    Servers that do not split reasoning out (into ``reasoning_content``) send it inline; an
    unclosed block (the reply stopped while thinking) is reasoning to the end.
    """
    thoughts = [match.group(2).strip() for match in _THINK.finditer(content)]
    text = _THINK.sub("", content)
    if (unclosed := _OPEN_THINK.search(text)) is not None:
        thoughts.append(text[unclosed.end() :].strip())
        text = text[: unclosed.start()]
    return "\n\n".join(t for t in thoughts if t), text.strip() if thoughts else text


def is_refusal(text: str) -> bool:
    """Whether a free-text answer declines the request instead of answering it.

    Recognised by its first sentence ("I'm sorry, but I can't help with that.", "I cannot
    assist with …", "As an AI, I am unable to …"), in a reply short enough that nothing else
    follows: an answer that opens with a caveat and then answers is not a refusal.
    """
    stripped = text.strip()
    return (
        bool(stripped)
        and len(stripped.split()) <= REFUSAL_MAX_WORDS
        and _DECLINED.match(stripped) is not None
    )


# ---- the user's voice: instructions, rewrites and later turns ---------------------------
# A user writes "I can't log in to the billing portal" or "I won't be able to attend, so
# write a note": first-person requests, which ``is_refusal`` (for answers) would reject.
# Text in the user's voice is a refusal only when the whole of it declines the task: a
# decline of "that" / "this request" (or of writing such content), for a reason or none,
# then at most the polite offers a model adds ("However, I can help with …").
_PREFIX = (
    r"(?:(?:(?:i(?:'|’)?m |i am )?(?:so |very |really )?sorry|i apologi[sz]e|unfortunately|"
    r"i(?:'|’)m afraid|i am afraid)\b[^.!?\n]{0,40}?[,.!]?\s*(?:but\s+)?|"
    r"as an ai(?: language model| assistant| model)?,\s*)"
)
_CANNOT = (
    r"(?:i (?:can(?:'|’)?t|can ?not|won(?:'|’)?t(?: be able to)?|will not(?: be able to)?|"
    r"am (?:not able|unable|not allowed|not permitted) to)|"
    r"i(?:'|’)m (?:not able|unable|not allowed|not permitted) to)"
)
_VERB = (
    r"(?:help|assist|comply|fulfil+|complete|do|provide|generate|create|write|produce|"
    r"continue|engage|answer|respond|rewrite|rephrase|modify|improve|change|edit|make)"
)
_THAT = (
    r"(?:that|this|it|your request|the request|this request|that request|such (?:a )?"
    r"(?:request|task|content)|requests? like (?:this|that))(?:\s+(?:request|task|for you|here))?"
)
#: What a model declines to write ("I cannot provide instructions for …").
_CONTENT = (
    r"(?:(?:any |such |that |this )?(?:instructions|information|content|guidance|assistance|"
    r"advice|details|code|material)|(?:creating|writing|generating|providing|producing|making)"
    r")\b[^,;?]*"
)
_REASON = r"(?:,?\s+(?:because|as|since|due to|given)\b[^?]*)?"
_DECLINE_SENTENCE = re.compile(
    rf"^\W*{_PREFIX}?(?:{_CANNOT}\s+{_VERB}(?:\s+(?:you\s+)?with)?(?:\s+(?:{_THAT}|{_CONTENT}))?"
    rf"|i (?:must|have to|need to) (?:decline|refuse)(?:\s+{_THAT})?|i(?:'|’)m not able to "
    rf"help|this (?:is not|isn(?:'|’)t) something i can (?:help|assist) with){_REASON}\s*[.!]?\s*$",
    re.IGNORECASE,
)
_AI_ITSELF = re.compile(r"^\W*as an ai(?: language model| assistant| model)?\s*,", re.IGNORECASE)
#: Sentences a model adds after a decline: offers, apologies, invitations.
_AFTERWORD = re.compile(
    r"^\W*(?:however|but|instead|if you|is there|let me know|feel free|please|perhaps|"
    r"would you like|i(?:'|’)d be happy|i would be happy|i(?:'|’)m happy|i am happy|"
    r"i can (?:help|offer|suggest|provide)|i(?:'|’)m sorry|sorry|thank you|thanks)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")


def declines_task(text: str) -> bool:
    """Whether text a model wrote in the user's voice (an instruction, a rewrite, a later
    turn) is a decline of the task instead: "I'm sorry, but I can't help with that.", "I
    cannot provide instructions for making weapons.", "As an AI language model, I …". A
    first-person request ("I can't get my script to read the CSV", "Sorry, I can't do it.
    Can you explain recursion again?") is the user's."""
    stripped = text.strip()
    if not stripped or len(stripped.split()) > REFUSAL_MAX_WORDS:
        return False
    if _AI_ITSELF.match(stripped):
        return True
    first, *rest = [s.strip() for s in _SENTENCE.findall(stripped) if s.strip()]
    return bool(_DECLINE_SENTENCE.match(first)) and all(_AFTERWORD.match(s) for s in rest)


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
    # no JSON: a decline of the step, not bad JSON (the user's voice: only a whole decline)
    declined = declines_task if getattr(schema, "USER_VOICE", False) else is_refusal
    if not values and declined(text):
        raise Refusal(f"refused: {' '.join(text.split())[:200]}")
    found = f"does not match {schema.__name__}: {first_error}" if first_error else "has no JSON"
    if cut:
        raise CutReply(f"cut at max_tokens; reply {found} (reply starts {content[:80]!r})")
    raise UnparseableReply(f"reply {found} (reply starts {content[:80]!r})")


def _has_lists(schema: type[BaseModel]) -> bool:
    return any(
        getattr(field.annotation, "__origin__", None) is list
        for field in schema.model_fields.values()
    )
