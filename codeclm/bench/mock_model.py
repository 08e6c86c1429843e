"""What the mock model says at each step, as pure functions of what it was asked: the
loopback mock (``mock_llm.py``) serves them over HTTP, ``mock_faults.py`` adds the
misbehaviours.

The step is told by the request's JSON-schema name, or, for a request without one (a
server that takes ``json_object`` or plain prompting, the judges, the answers), by the
prompt file it was rendered from and the reply that file's step declares; the values come
from reading the prompt back against its file (``mock_reading``), never from its wording."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeclm.bench.mock_reading import ReadPrompt, reader
from codeclm.bench.mock_texts import FIRST_PERSON_REQUESTS, VERBS, WORDS
from codeclm.nodes.benchmark_item import JUDGE_ITEM

STRONG_MODEL = "strong-model"
TARGET_MODEL = "target-model"
STRONG_PREFIX = "STRONG ANSWER: "
TARGET_PREFIX = "TARGET ANSWER: "
HARDER = " (harder: "
REFUSAL = "I'm sorry, but I can't help with that request."


#: (instruction text as judged) -> (strong score, target score)
JudgeRule = Callable[[str], tuple[int, int]]


def first_person(text: str) -> str:
    """``text`` as a user with a problem writes it: a first-person request before it."""
    return f"{FIRST_PERSON_REQUESTS[digest(text) % len(FIRST_PERSON_REQUESTS)]} {text}"


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def iteration_of(instruction: str) -> int:
    """The mock's improve step appends one HARDER marker per rewrite."""
    return instruction.count(HARDER) + 1


def field_of(prompt: str, label: str) -> str:
    """The rest of the line after ``label`` (a metadata field's line: '- Domain: finance')."""
    match = re.search(rf"^{re.escape(label)}(.*)$", prompt, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _between(prompt: str, start: str, end: str) -> str:
    _, found, rest = prompt.partition(start)
    return rest.partition(end)[0] if found else ""


def filled(schema: dict[str, Any]) -> dict[str, Any]:
    """Some object of a schema the mock has no step for (another client's probe), as a
    model would fill it: every property present with a value of its type."""
    plain = {"integer": 5, "number": 5.0, "boolean": True, "array": [], "object": {}}
    return {
        key: plain.get(str(spec.get("type")), "text") if isinstance(spec, dict) else "text"
        for key, spec in (schema.get("properties") or {}).items()
    }


#: How a real model spells one use case differently from seed to seed (``label_variants``).
USE_CASE_VARIANTS = {
    "question answering": ["answering questions", "Question-Answering"],
    "creative writing": ["Creative Writing.", "creative  writing"],
    "coding help": ["coding assistance", "Coding_Help"],
    "advice": ["Advice", "advice!"],
}


def encode(
    values: dict[str, str], variants: bool = False, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A use case and two skills, a function of the seed; ``variants``: some seeds get
    another spelling of the same use case, and a skill in other case and punctuation.
    Fields the schema declares beyond those (``metadata_fields``) get a value each: one
    of its allowed values, or a label; a list of one or two for a list field."""
    seed = values["instruction"].strip()
    h = digest(seed)
    use_cases = ["question answering", "creative writing", "coding help", "advice"]
    topics = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
    use_case = use_cases[h % len(use_cases)]
    skills = [topics[h % 7], topics[(h // 7) % 7 if (h // 7) % 7 != h % 7 else 0]]
    if (named := re.search(r"\[use case: ([^\]]+)\]", seed)) is not None:
        use_case = named.group(1)  # a seed that names its own use case (shifted traffic)
    if variants and (h >> 8) % 3:
        use_case = USE_CASE_VARIANTS[use_case][(h >> 8) % 3 - 1]
        skills[0] = skills[0].upper() + "."
    reply: dict[str, Any] = {"use_case": use_case, "skills": skills}
    for name, spec in (properties or {}).items():
        if name in reply:
            continue
        items = spec.get("items", spec)
        allowed = items.get("enum") or [f"{name} {c}" for c in "xyz"]
        pick = digest(f"{seed}|{name}")
        picked = [allowed[pick % len(allowed)], allowed[(pick // 7) % len(allowed)]]
        if spec.get("type") == "array":
            reply[name] = list(dict.fromkeys(picked))
        else:
            reply[name] = picked[0]
    return reply


def rubrics(
    prompt: str, values: dict[str, str], salt: str, distinct: int | None = None
) -> dict[str, Any]:
    """Rubric and action i; a top-up (its prompt lists what exists) numbers new ones.
    ``distinct``: the entry has only this many distinct ones in it (then repeats)."""
    use_case, skills, k = values["use_case"].strip(), values["skills"].strip(), int(values["k"])
    first = 0 if not values.get("avoid") else k + digest(prompt + salt) % 50
    numbers = [i % distinct if distinct else i for i in range(first, first + k)]
    return {
        "rubrics": [f"rubric {i} for {use_case} / {skills}" for i in numbers],
        "actions": [f"action {i} for {use_case} / {skills}" for i in numbers],
    }


def decode(
    prompt: str,
    values: dict[str, str],
    salt: str,
    distinct: int | None = None,
    numbered: bool = False,
) -> dict[str, Any]:
    """n instructions in varied words, drawn from ``distinct`` per entry if set; or
    ``numbered``: 'Task N on USE CASE needing SKILLS.', alike in meaning, apart in words."""
    use_case, skills, n = values["use_case"].strip(), values["skills"].strip(), int(values["n"])
    items = []
    for j in range(n):
        h = digest(f"{prompt}|{salt}|{j}")
        if distinct is not None:
            h = digest(f"{use_case}|{skills}|{h % distinct}")
        if numbered:
            items.append(f"Task {h % 1000} on {use_case} needing {skills}.")
            continue
        words = [WORDS[(h >> (6 * i)) % len(WORDS)] for i in range(4)]
        items.append(
            f"{VERBS[h % len(VERBS)]} the {words[0]} {words[1]} of {words[2]} "
            f"{words[3]} for {use_case}, using {skills}."
        )
    return {"instructions": items}


def improve(values: dict[str, str], pad_to: int = 0) -> dict[str, Any]:
    """The instruction with the action appended; ``pad_to``: a rewrite that long (a model
    that writes at length), in characters."""
    instruction, action = values["instruction"], values["action"].strip()
    rewrite = f"{instruction}{HARDER}{action})"
    if len(rewrite) < pad_to:
        rewrite += " Consider also " + "every further detail " * ((pad_to - len(rewrite)) // 22)
    return {"instruction": rewrite}


def bootstrap(prompt: str, values: dict[str, str]) -> dict[str, Any]:
    """Self-Instruct: n new tasks named by the prompt's digest, plus a copy of an example
    (which the ROUGE-L novelty filter must reject)."""
    n = int(values["n"])
    examples = re.findall(r"^Task \d+: (.*)$", values["examples"], re.MULTILINE)
    h = digest(prompt)
    topics = ["rivers", "tax forms", "chess", "sourdough", "compilers", "jazz", "tides"]
    verbs = ["Explain", "Summarize", "Compare", "Critique", "Plan", "Describe", "List"]
    made = [
        f"{verbs[(h + j) % 7]} {topics[(h // 7 + j) % 7]} case {h % 10007}-{j}."
        for j in range(n - 1)
    ]
    return {"instructions": [*made, examples[0]] if examples else made}


def evolve(read: ReadPrompt) -> dict[str, Any]:
    """Evol-Instruct: in depth appends the operator's first words; in breadth, a new task."""
    given = read.values["instruction"]
    if read.name == "evolve_breadth":
        return {"instruction": f"A rarer task in the domain of: {given}"}
    method = read.values["method"].split("\n", 1)[0]
    if method.startswith("If #The Given Prompt# can be solved"):  # a failed evolution
        return {"instruction": given}
    return {"instruction": f"{given} [{' '.join(method.split()[:3])}]"}


def grow_tree(values: dict[str, str]) -> dict[str, Any]:
    """Tree-Instruct: the instruction with the nodes it was asked to add."""
    given, nodes = values["instruction"], int(values["nodes"])
    return {
        "tree": f"(task {given[:40]})",
        "expanded_tree": f"(task {given[:40]} +{nodes})",
        "instruction": f"{given} [with {nodes} more nodes]",
    }


def rating(values: dict[str, str]) -> dict[str, Any]:
    """AlpaGasus: a rating of 3, 4, 4.5 or 5, a function of the pair (half pass 4.5)."""
    pair = f"{values['instruction']}|{values['answer']}"
    score = (5.0, 3.0, 4.5, 4.0)[digest(pair) % 4]
    return {"score": score, "explanation": "The answer addresses the instruction."}


def judge(
    read: ReadPrompt, rule: JudgeRule, first_position_bias: int = 0, length_bias: int = 0
) -> str:
    """The Vicuna-style reply: one line with both scores; and, asked for it (the
    evaluation's prompts), an explanation on the lines after. ``first_position_bias`` is
    added to the answer shown first, ``length_bias`` to the longer one (biased judges)."""
    values = read.values  # (none for a prompt of another client's: it is scored all the same)
    instruction = values.get("instruction", "")
    if "conversation_1" in values:  # a later turn's judge: the last answer of each
        first = values["conversation_1"].rsplit("### Assistant 1:\n", 1)[-1]
        second = values["conversation_2"].rsplit("### Assistant 2:\n", 1)[-1]
    else:
        first, second = values.get("answer_1", ""), values.get("answer_2", "")
    strong, target = rule(instruction)
    if first.startswith(STRONG_PREFIX):
        one, two = strong + first_position_bias, target
    else:
        one, two = target + first_position_bias, strong
    if len(first) != len(second):
        one, two = (
            (one + length_bias, two) if len(first) > len(second) else (one, two + length_bias)
        )
    line = f"{min(one, 10)} {min(two, 10)}"
    if read.name in JUDGE_ITEM.prompts:  # the evaluation's judge explains (the filter's not)
        better = 1 if one >= two else 2
        return f"{line}\nAssistant {better} answered more helpfully and in more detail."
    return line


def follow_up(values: dict[str, str]) -> dict[str, Any]:
    """The user's next turn: its number and plan, and the first turn it follows."""
    turn = int(values["turn"])
    first = _between(values["user_turns"] + "\n\n", "Turn 1: ", "\n\n")
    plan = " ".join(values["plan"].split()[:3])
    return {"message": f"Turn {turn} follow-up ({plan}) to: {first}"}


def answer(prompt: str, model: str, tokens: int = 0) -> str:
    """The role's answer to the instruction, padded to about ``tokens`` tokens (0: the
    instruction echoed, far shorter than a capable model's answer)."""
    prefix = STRONG_PREFIX if model == STRONG_MODEL else TARGET_PREFIX
    text = prefix + prompt.strip()
    if tokens:  # the mock counts 4 characters a token
        words: list[str] = []
        start = digest(prompt)
        while sum(len(word) + 1 for word in words) < 4 * tokens:
            words.append(WORDS[(start + len(words)) % len(WORDS)])
        text = f"{text}\n\n{' '.join(words)}."
    return text


def typical_length(prompt: str, mean: int) -> int:
    """An answer's length in tokens, between half and one and a half times ``mean``, fixed by
    the prompt (answers vary as real ones do, the same prompt always alike)."""
    return 0 if mean <= 0 else mean // 2 + digest(f"length|{prompt}") % (mean + 1)


def paper_rule(text: str, kept: float = 0.7) -> tuple[int, int]:
    """Scores as the paper reports them: each iteration's pair is decided (kept) with
    probability ``kept``, else tied and the instruction improved again."""
    decided = digest(f"kept|{text}") / 0x100000000 < kept
    return (9, 3) if decided else (5, 5)


def mixed_rule(text: str) -> tuple[int, int]:
    """Judge scores crossing every path: kept at once, kept after two rewrites, dropped."""
    kind = sum(map(ord, text.split(HARDER)[0])) % 3
    if kind == 0:
        return (9, 3)
    if kind == 1:
        return (9, 2) if iteration_of(text) >= 3 else (5, 5)
    return (5, 5)


def request_step(
    body: dict[str, Any], prompts_dir: Path | None = None
) -> tuple[str | None, dict[str, Any], ReadPrompt]:
    """The step a request belongs to (its schema's name, else the reply its prompt file's
    step declares), the schema's properties when it sent one, and the prompt read back."""
    block = (body.get("response_format") or {}).get("json_schema") or {}
    properties = (block.get("schema") or {}).get("properties") or {}
    read = reader(prompts_dir).read(body["messages"][-1]["content"])
    return block.get("name") or read.reply, properties, read


def max_tokens_of(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if value is not None else None
