"""The prompt of each step, one Markdown file per step, overridable from a folder.

Templates use ``$name`` placeholders (``string.Template``), so JSON braces in few-shot
examples need no escaping. A folder given as ``prompts_dir`` replaces any of these files
by name; the ones it does not contain keep the built-in text.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from codeclm.config import ConfigError

#: Each step's prompt and the placeholders it must fill.
PROMPT_VARIABLES: dict[str, frozenset[str]] = {
    "encode": frozenset({"instruction", "max_skills"}),
    "decode": frozenset({"n", "use_case", "skills", "avoid"}),
    "rubrics": frozenset({"k", "use_case", "skills", "avoid"}),
    # A top-up ask's list of what the step already has (in decode and rubrics as $avoid).
    "avoid": frozenset({"items"}),
    "improve": frozenset({"instruction", "action", "use_case", "skills"}),
    "answer": frozenset({"instruction"}),
    # The filter's judge (no explanation) and the evaluation's (with one): the paper's two.
    "judge": frozenset({"instruction", "answer_1", "answer_2"}),
    "judge_eval": frozenset({"instruction", "answer_1", "answer_2"}),
    # Conversations (--turns T > 1): the user's next turn, a later turn made harder, and
    # the judges of a later turn, which see both conversations up to it.
    "follow_up": frozenset({"use_case", "skills", "user_turns", "turn", "plan"}),
    "improve_turn": frozenset({"instruction", "action", "use_case", "skills", "earlier", "turn"}),
    "judge_turn": frozenset({"instruction", "conversation_1", "conversation_2", "turn"}),
    "judge_eval_turn": frozenset({"instruction", "conversation_1", "conversation_2", "turn"}),
    # The baselines (run --method self-instruct | alpagasus | evol-instruct |
    # wizardlm-plus | tree-instruct).
    "self_instruct": frozenset({"examples", "n"}),
    "rate_quality": frozenset({"instruction", "answer"}),
    "evolve_depth": frozenset({"instruction", "method"}),
    "evolve_breadth": frozenset({"instruction"}),
    "tree_instruct": frozenset({"instruction", "nodes"}),
}


#: Placeholders a prompt may leave out: ``$fields``, the declared metadata fields
#: (``metadata_fields``), empty when none are declared. An override without it still works;
#: the model then is not told about the extra fields (the encoder's schema still asks).
OPTIONAL_VARIABLES: dict[str, frozenset[str]] = {
    "encode": frozenset({"fields"}),
    "decode": frozenset({"fields"}),
    "rubrics": frozenset({"fields"}),
}


@dataclass(frozen=True)
class Prompts:
    """The loaded templates, by step name."""

    templates: dict[str, Template]

    def render(self, step: str, **values: object) -> str:
        optional = {name: "" for name in OPTIONAL_VARIABLES.get(step, ())}
        return self.templates[step].substitute(optional | {k: str(v) for k, v in values.items()})


def conversation_text(user_turns: list[str], answers: list[str], assistant: str) -> str:
    """A conversation as the multi-turn judges read it (MT-Bench's layout)."""
    lines = []
    for text, answer in zip(user_turns, answers, strict=True):
        lines += [f"### User:\n{text}", f"### {assistant}:\n{answer}"]
    return "\n\n".join(lines)


def load_prompts(override_dir: str | Path | None = None) -> Prompts:
    """Built-in prompts, with any same-named ``.md`` file from ``override_dir`` in their place."""
    templates: dict[str, Template] = {}
    builtin = resources.files(__package__)
    for step, variables in PROMPT_VARIABLES.items():
        source = builtin.joinpath(f"{step}.md")
        if override_dir is not None and (Path(override_dir) / f"{step}.md").is_file():
            source = Path(override_dir) / f"{step}.md"  # type: ignore[assignment]
        template = Template(source.read_text(encoding="utf-8"))
        used = {m[1] or m[2] for m in template.pattern.findall(template.template) if m[1] or m[2]}
        missing = variables - used
        unknown = used - variables - OPTIONAL_VARIABLES.get(step, frozenset())
        if missing or unknown:
            raise ConfigError(
                f"prompt {source}: "
                + (f"missing ${', $'.join(sorted(missing))} " if missing else "")
                + (f"unknown ${', $'.join(sorted(unknown))}" if unknown else "")
            )
        templates[step] = template
    return Prompts(templates)
