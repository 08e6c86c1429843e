"""What the mock model says at each step, as pure functions of the prompt: the loopback
mock (``mock_llm.py``) serves them over HTTP, ``mock_faults.py`` adds the misbehaviours.

The step is told by the request's JSON-schema name, or, for a request without one (a
server that takes ``json_object`` or plain prompting, the judges, the answers), by the
words of its prompt (``step_of``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from codeclm.bench.mock_texts import FIRST_PERSON_REQUESTS, VERBS, WORDS

STRONG_MODEL = "strong-model"
TARGET_MODEL = "target-model"
STRONG_PREFIX = "STRONG ANSWER: "
TARGET_PREFIX = "TARGET ANSWER: "
HARDER = " (harder: "
REFUSAL = "I'm sorry, but I can't help with that request."

#: (instruction text as judged) -> (strong score, target score)
JudgeRule = Callable[[str], tuple[int, int]]


#: What a top-up prompt says before the items it already has (``prompts/avoid.md``).
AVOID_MARKER = "do not repeat"


def first_person(text: str) -> str:
    """``text`` as a user with a problem writes it: a first-person request before it."""
    return f"{FIRST_PERSON_REQUESTS[digest(text) % len(FIRST_PERSON_REQUESTS)]} {text}"


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def iteration_of(instruction: str) -> int:
    """The mock's improve step appends one HARDER marker per rewrite."""
    return instruction.count(HARDER) + 1


def field_of(prompt: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}(.*)$", prompt, re.MULTILINE)
    return match.group(1).strip() if match else ""


#: Words of each built-in prompt that tell its step, for requests without a schema name.
STEP_MARKERS = (
    ("[The Start of Assistant 1's Answer]", "PairwiseScores"),
    ("[The Start of Assistant 1's Conversation", "PairwiseScores"),
    ("says next in a conversation", "FollowUp"),
    ("Describe it by its", "EncodedMetadata"),
    ("rubrics for judging how difficult", "SelfRubrics"),
    ("diverse instructions for this use case", "DecodedInstructions"),
    ("Improving action:", "ImprovedInstruction"),
    ("come up with a set of diverse task instructions", "BootstrappedInstructions"),
    ("#The Given Prompt#", "EvolvedInstruction"),
    ("as a semantic parse tree", "TreeInstruction"),
    ("rate according to the accuracy", "QualityRating"),
)
EVAL_MARKER = "explain your evaluation"
"""The evaluation judge's prompt (with an explanation) says this; the filter's does not."""


def step_of(prompt: str) -> str | None:
    """The step a prompt belongs to; None: a plain answer."""
    return next((step for marker, step in STEP_MARKERS if marker in prompt), None)


def count_in(prompt: str, pattern: str, default: int) -> int:
    """A number the prompt asks for ("Write 5 diverse instructions")."""
    match = re.search(pattern, prompt)
    return int(match.group(1)) if match else default


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
    prompt: str, variants: bool = False, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A use case and two skills, a function of the seed; ``variants``: some seeds get
    another spelling of the same use case, and a skill in other case and punctuation.
    Fields the schema declares beyond those (``metadata_fields``) get a value each: one
    of its allowed values, or a label; a list of one or two for a list field."""
    seed = prompt.rsplit("Instruction:", 1)[1].strip()
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
        values = [allowed[pick % len(allowed)], allowed[(pick // 7) % len(allowed)]]
        if spec.get("type") == "array":
            reply[name] = list(dict.fromkeys(values))
        else:
            reply[name] = values[0]
    return reply


def rubrics(prompt: str, k: int, salt: str, distinct: int | None = None) -> dict[str, Any]:
    """Rubric and action i; a top-up (its prompt lists what exists) numbers new ones.
    ``distinct``: the entry has only this many distinct ones in it (then repeats)."""
    use_case = field_of(prompt, "- Use case:")
    skills = field_of(prompt, "- Skills:")
    first = 0 if AVOID_MARKER not in prompt else k + digest(prompt + salt) % 50
    numbers = [i % distinct if distinct else i for i in range(first, first + k)]
    return {
        "rubrics": [f"rubric {i} for {use_case} / {skills}" for i in numbers],
        "actions": [f"action {i} for {use_case} / {skills}" for i in numbers],
    }


def decode(
    prompt: str, n: int, salt: str, distinct: int | None = None, numbered: bool = False
) -> dict[str, Any]:
    """n instructions in varied words, drawn from ``distinct`` per entry if set; or
    ``numbered``: 'Task N on USE CASE needing SKILLS.', alike in meaning, apart in words."""
    use_case = field_of(prompt, "- Use case:")
    skills = field_of(prompt, "- Skills:")
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


def improve(prompt: str, pad_to: int = 0) -> dict[str, Any]:
    """The instruction with the action appended; ``pad_to``: a rewrite that long (a model
    that writes at length), in characters."""
    instruction = prompt.rsplit("Instruction: ", 1)[1].split("\n\nReply with")[0]
    action = field_of(prompt, "Improving action:")
    rewrite = f"{instruction}{HARDER}{action})"
    if len(rewrite) < pad_to:
        rewrite += " Consider also " + "every further detail " * ((pad_to - len(rewrite)) // 22)
    return {"instruction": rewrite}


def bootstrap(prompt: str, n: int) -> dict[str, Any]:
    """Self-Instruct: n new tasks named by the prompt's digest, plus a copy of an example
    (which the ROUGE-L novelty filter must reject)."""
    examples = re.findall(r"^Task \d+: (.*)$", prompt, re.MULTILINE)
    h = digest(prompt)
    topics = ["rivers", "tax forms", "chess", "sourdough", "compilers", "jazz", "tides"]
    verbs = ["Explain", "Summarize", "Compare", "Critique", "Plan", "Describe", "List"]
    made = [
        f"{verbs[(h + j) % 7]} {topics[(h // 7 + j) % 7]} case {h % 10007}-{j}."
        for j in range(n - 1)
    ]
    return {"instructions": [*made, examples[0]] if examples else made}


def evolve(prompt: str) -> dict[str, Any]:
    """Evol-Instruct: in depth appends the operator's first words; in breadth, a new task."""
    given = prompt.split("#The Given Prompt#:\n", 1)[1].split("\n\nReply with")[0]
    if "Prompt Creator" in prompt:
        return {"instruction": f"A rarer task in the domain of: {given}"}
    method = prompt.split("following method:\n", 1)[1].split("\n", 1)[0]
    if method.startswith("If #The Given Prompt# can be solved"):  # a failed evolution
        return {"instruction": given}
    return {"instruction": f"{given} [{' '.join(method.split()[:3])}]"}


def grow_tree(prompt: str) -> dict[str, Any]:
    """Tree-Instruct: the instruction with the nodes it was asked to add."""
    given = _between(prompt, "Instruction:\n", "\n\nReply with")
    nodes = count_in(prompt, r"Add exactly (\d+) new nodes", 10)
    return {
        "tree": f"(task {given[:40]})",
        "expanded_tree": f"(task {given[:40]} +{nodes})",
        "instruction": f"{given} [with {nodes} more nodes]",
    }


def rating(prompt: str) -> dict[str, Any]:
    """AlpaGasus: a rating of 3, 4, 4.5 or 5, a function of the pair (half pass 4.5)."""
    pair = _between(prompt, "[Instruction]\n", "[The End of")
    score = (5.0, 3.0, 4.5, 4.0)[digest(pair) % 4]
    return {"score": score, "explanation": "The answer addresses the instruction."}


def judge(prompt: str, rule: JudgeRule, first_position_bias: int = 0, length_bias: int = 0) -> str:
    """The Vicuna-style reply: one line with both scores; and, asked for it (the
    evaluation's prompt), an explanation on the lines after. ``first_position_bias`` is
    added to the answer shown first, ``length_bias`` to the longer one (biased judges)."""
    if "[The Start of Assistant 1's Conversation" in prompt:  # a later turn's judge
        instruction = _between(prompt, "[Question]\n", "\n\n[System]")
        conversation = _between(prompt, "Conversation with User]\n", "\n[The End of")
        first = conversation.rsplit("### Assistant 1:\n", 1)[-1]
        second = prompt.rsplit("### Assistant 2:\n", 1)[-1].split("\n[The End of", 1)[0]
    else:
        instruction = _between(prompt, "[Question]\n", "\n\n[The Start of Assistant 1")
        first = _between(prompt, "[The Start of Assistant 1's Answer]\n", "\n[The End of")
        second = _between(prompt, "[The Start of Assistant 2's Answer]\n", "\n[The End of")
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
    if EVAL_MARKER in prompt:
        better = 1 if one >= two else 2
        return f"{line}\nAssistant {better} answered more helpfully and in more detail."
    return line


def follow_up(prompt: str) -> dict[str, Any]:
    """The user's next turn: its number and plan, and the first turn it follows."""
    turn = count_in(prompt, r"turn (\d+) of the conversation", 2)
    first = _between(prompt, "Turn 1: ", "\n\n")
    plan = " ".join(_between(prompt, "Its plan: ", "\n").split()[:3])
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


def request_step(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The step a request belongs to (its schema's name, else its prompt's words), and the
    schema's properties when it sent one."""
    block = (body.get("response_format") or {}).get("json_schema") or {}
    properties = (block.get("schema") or {}).get("properties") or {}
    return block.get("name") or step_of(body["messages"][-1]["content"]), properties


def max_tokens_of(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if value is not None else None
