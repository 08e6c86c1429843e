"""What the mock model says to each request: the step's reply as ``mock_model`` writes it,
through the misbehaviours a test asked for (``mock_faults.Misbehaviour``)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeclm.bench import mock_faults as faults
from codeclm.bench import mock_model as model
from codeclm.bench.mock_model import REFUSAL, JudgeRule
from codeclm.bench.mock_reading import ReadPrompt


@dataclass
class Script(faults.Misbehaviour):
    """What each step answers (its judge's rule and biases), and which replies a test
    spoils on purpose."""

    judge_rule: JudgeRule = lambda instruction: (9, 2)
    #: Added to whichever answer is shown first: a position-biased judge.
    first_position_bias: int = 0
    #: Added to the longer answer: a judge that rewards length.
    length_bias: int = 0
    #: schema name -> how many of its next replies are not JSON (then valid again).
    garbage_next: Counter[str] = field(default_factory=Counter)
    #: reply garbage forever to a step whose prompt contains this text
    garbage_when: str | None = None
    #: refuse forever a step whose prompt contains this text
    refuse_when: str | None = None
    #: An answer's typical length in tokens (each between half and 1.5 times it, fixed by
    #: its prompt), as a capable model writes; 0: the instruction echoed, a few tokens.
    answer_tokens: int = 0
    #: The folder of prompt overrides the client was given (its prompts are read against
    #: these files); None: the built-in prompts.
    prompts_dir: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(
        self, body: dict[str, Any], asked: tuple[str | None, dict[str, Any], ReadPrompt]
    ) -> tuple[str, str, str | None]:
        """The reply's content, its ``finish_reason``, and a refusal for the ``refusal`` field.
        ``asked``: the request's step, schema and prompt read back (``request_step``)."""
        prompt = body["messages"][-1]["content"]
        step, schema, read = asked
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
            bias = (self.first_position_bias, self.length_bias)
            return model.judge(read, self.judge_rule, *bias), "stop", None
        salt = f"{body.get('seed')}|{body['model']}"
        values = read.values
        use_case = values.get("use_case", "").strip()
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "EncodedMetadata": lambda: model.encode(values, self.label_variants, schema),
            "SelfRubrics": lambda: model.rubrics(
                prompt, values, salt, self.rubrics_distinct.get(use_case)
            ),
            "DecodedInstructions": lambda: faults.copying(
                model.decode(prompt, values, salt, self.decode_distinct, self.numbered_decode),
                self.fault_seed,
                self.copied_items,
                self.copy_rate,
            ),
            "ImprovedInstruction": lambda: model.improve(values, self.rewrite_chars),
            "BootstrappedInstructions": lambda: model.bootstrap(prompt, values),
            "EvolvedInstruction": lambda: model.evolve(read),
            "TreeInstruction": lambda: model.grow_tree(values),
            "QualityRating": lambda: model.rating(values),
            "FollowUp": lambda: model.follow_up(values),
        }
        filled = lambda: model.filled({"properties": schema})  # noqa: E731
        # A prompt none of the steps' files renders (another client's): a filled schema.
        make = steps.get(step, filled) if read.name is not None else filled
        payload = faults.as_a_model_would(
            faults.in_first_person(make(), self.fault_seed, self.first_person_rate),
            f"{prompt}|{salt}",
            fault_seed=self.fault_seed,
            short_list_rate=self.short_list_rate,
            list_cap=self.list_cap,
            repeat_rate=self.repeat_rate,
            use_case=use_case,
        )
        # a long reply for its budget: the same request always, a larger budget maybe not
        roll = faults.roll(self.fault_seed, f"cut|{prompt}|{salt}|{model.max_tokens_of(body)}")
        cut = faults.cut_reply(payload, self.cut_objects) if roll < self.cut_rate else None
        if self.cut_when is not None and self.cut_when in prompt:
            cut = faults.cut_reply(payload, objects=True)
        if cut is not None:
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
        roll = faults.roll(self.fault_seed, f"long|{role}|{prompt}")
        long = role in self.long_answer_roles and roll < self.long_answer_rate
        length = model.typical_length(f"{role}|{prompt}", self.answer_tokens)
        text = model.answer(prompt, role, self.long_answer_tokens if long else length)
        return *faults.within_budget(text, model.max_tokens_of(body)), None
