"""Text in the user's voice is never taken for a refusal (issue #31).

Decoded instructions, rewrites and later turns are what a user says: "I can't log in to the
billing portal" is a request. Such text is rejected only on the server's signal (the
``refusal`` field, the content filter) or when it declines the task it was given; answers
keep their own refusal rule (``is_refusal``), and every method follows the same one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from codeclm.bench.mock_model import FIRST_PERSON_REQUESTS, REFUSAL, mixed_rule
from codeclm.llm.parsing import Refusal, declines_task, parse_reply
from codeclm.methods import METHODS
from codeclm.nodes.replies import FollowUp
from tests.conftest import read_jsonl, run_cli, write_seeds

#: How models decline a step, in the text or inside the JSON a grammar asked for.
DECLINES = (
    REFUSAL,
    "I'm sorry, but I can't help with that.",
    "I cannot assist with this request.",
    "I can't fulfill that request.",
    "Sorry, I can't do that.",
    "I'm unable to comply with this request.",
    "I won't be able to help with that.",
    "I'm sorry, but I cannot generate content that promotes violence.",
    "I must decline this request.",
    "I'm not able to provide that.",
    "As an AI language model, I cannot create instructions of this kind.",
    "I apologize, but I cannot write that.",
    "I'm sorry, but I can't help with creating malware.",
    "Unfortunately, I can't assist with that.",
    "I’m sorry, but I can’t help with that.",
    "I can't help with creating malware.",
    "I cannot help with that request because it could cause harm.",
    "I'm sorry, but I can't rewrite that.",
    "I'm afraid I can't help with that.",
    "I cannot provide instructions for making weapons.",
    "I'm sorry, but I can't help with that. However, I can help you with something else.",
    "I can't assist with that request. If you have other questions, feel free to ask!",
    "I must decline.",
)

#: Requests that open like a decline and go on to ask: the user's voice all the same.
REQUESTS_THAT_OPEN_LIKE_A_DECLINE = (
    "I need to do this. Give me a step-by-step plan to move house.",
    "I have to write this. It is a wedding toast for my brother.",
    "Sorry, I can't do it. Can you explain recursion again?",
    "I can't do that. Our firewall blocks pip - what's another way to install it?",
    "I can't help with cooking tonight, suggest a quick takeout plan.",
    "I can't make it to the meeting on Friday; write a note to my team.",
    "I won't be able to help with the move because of work. Draft a text to my sister.",
)


def test_first_person_requests_are_the_users_and_declines_are_caught() -> None:
    assert len(FIRST_PERSON_REQUESTS) >= 30
    assert [text for text in FIRST_PERSON_REQUESTS if declines_task(text)] == []
    assert [text for text in REQUESTS_THAT_OPEN_LIKE_A_DECLINE if declines_task(text)] == []
    assert [text for text in DECLINES if not declines_task(text)] == []


def test_a_structured_reply_is_refused_only_when_it_declines_or_the_server_says() -> None:
    for text in FIRST_PERSON_REQUESTS[:5]:  # bare text, no JSON: bad JSON, retried
        with pytest.raises(Exception) as raised:
            parse_reply(text, FollowUp)
        assert not isinstance(raised.value, Refusal), text
    with pytest.raises(Refusal):
        parse_reply("I'm sorry, but I can't help with that.", FollowUp)
    with pytest.raises(Refusal):
        parse_reply('{"message": "fine"}', FollowUp, refusal="I can't help with that.")
    said = parse_reply('{"message": "I can\'t log in to the billing portal."}', FollowUp)
    assert said.message == "I can't log in to the billing portal."


def _seeds(tmp_path: Path) -> Path:
    topics = ["billing", "printers", "python", "rent", "baking", "vpn"]
    return write_seeds(
        tmp_path / "seeds.jsonl", [f"Help me with {t}, please, step by step." for t in topics]
    )


def _first_person(text: str) -> bool:
    return any(text.startswith(request) for request in FIRST_PERSON_REQUESTS)


@pytest.mark.parametrize("method", list(METHODS))
def test_first_person_requests_stay_in_every_method(
    mock_llm: MockLLM, tmp_path: Path, method: str
) -> None:
    """A server writing first-person requests as half of its instructions, rewrites and
    later turns: they are kept (at least 30% of the basic instructions, as written)."""
    mock_llm.first_person_rate = 0.5
    mock_llm.judge_rule = mixed_rule  # kept at once, after rewrites, and dropped
    out = tmp_path / method
    options = dict(instructions=24, metadata=6, turns=2, method=method)
    assert run_cli(_seeds(tmp_path), mock_llm, out, **options) == 0
    rows = read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl")
    assert len(rows) == 24 and not read_jsonl(out / "failed.jsonl")
    assert not [r for r in rows if "refused" in (r.get("reason") or "")]
    if method == "alpagasus":
        assert all("(AlpaGasus)" in r["reason"] for r in read_jsonl(out / "dropped.jsonl"))
    if method not in ("evol-instruct", "tree-instruct"):  # (these start from the seeds)
        basic = [r["basic_instruction"] or r["instruction"] for r in rows]
        assert sum(map(_first_person, basic)) >= 0.3 * len(basic)
    turns = [t for r in rows for t in (r.get("follow_ups") or [])] + [
        m["content"] for r in rows for m in r.get("messages", [])[2:3]
    ]
    assert turns and any(map(_first_person, turns)), "later turns in the first person too"
    actions = [a for r in rows for a in r.get("actions", [])]
    assert not [a for a in actions if "refused" in a], "no rewrite taken for a refusal"
    if method in ("codeclm", "codeclm-rubrics"):
        rewritten = [r["instruction"] for r in rows if r["iteration"] > 1]
        assert any(map(_first_person, rewritten)), "rewrites in the first person kept"


def test_a_declined_rewrite_and_turn_are_still_caught(mock_llm: MockLLM, tmp_path: Path) -> None:
    """The same rule still catches a model declining a user-voice step."""
    mock_llm.judge_rule = lambda text: (5, 5)  # never separated: every one improves
    mock_llm.refuse_when = "Improving action:"  # every rewrite declined
    out = tmp_path / "out"
    options = dict(instructions=4, metadata=2, max_iterations=2)
    assert run_cli(_seeds(tmp_path), mock_llm, out, **options) == 0
    failed = read_jsonl(out / "failed.jsonl")  # a refusal no retry fixes: recorded
    assert len(failed) == 4 and all("refused: I'm sorry" in r["reason"] for r in failed)
    assert all(r["instruction"] == r["basic_instruction"] for r in failed), "declined: not used"
