"""The prompt of each step, one Markdown file per step, overridable from a folder.

Templates use ``$name`` placeholders (``string.Template``), so JSON braces in few-shot
examples need no escaping. Every ``.md`` file here is a prompt, named by its file; its
placeholders are the ones the step fills. A folder given as ``prompts_dir`` replaces any of
these files by name (the replacement must use the same placeholders); the ones it does not
contain keep the built-in text, and a file of a new name there is a new prompt (the prompt
of a step added outside this package).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from codeclm.config import ConfigError

#: Placeholders a prompt may leave out: ``$fields``, the declared metadata fields
#: (``metadata_fields``), empty when none are declared. An override without it still works;
#: the model then is not told about the extra fields (the encoder's schema still asks).
OPTIONAL_VARIABLES: dict[str, frozenset[str]] = {
    "encode": frozenset({"fields"}),
    "decode": frozenset({"fields"}),
    "rubrics": frozenset({"fields"}),
}


def placeholders(template: Template) -> frozenset[str]:
    """The ``$name`` placeholders a template fills."""
    return frozenset(
        m[1] or m[2] for m in template.pattern.findall(template.template) if m[1] or m[2]
    )


@dataclass(frozen=True)
class Prompts:
    """The loaded templates, by step name."""

    templates: dict[str, Template]

    def render(self, step: str, **values: object) -> str:
        optional = {name: "" for name in OPTIONAL_VARIABLES.get(step, ())}
        return self.templates[step].substitute(optional | {k: str(v) for k, v in values.items()})

    def placeholders(self, step: str) -> frozenset[str]:
        """What ``render`` must be given for ``step`` (its optional ones apart)."""
        return placeholders(self.templates[step]) - OPTIONAL_VARIABLES.get(step, frozenset())


def conversation_text(user_turns: list[str], answers: list[str], assistant: str) -> str:
    """A conversation as the multi-turn judges read it (MT-Bench's layout)."""
    lines = []
    for text, answer in zip(user_turns, answers, strict=True):
        lines += [f"### User:\n{text}", f"### {assistant}:\n{answer}"]
    return "\n\n".join(lines)


def _files(folder: Traversable | Path) -> dict[str, Traversable | Path]:
    return {f.name[:-3]: f for f in folder.iterdir() if f.name.endswith(".md") and f.is_file()}


def load_prompts(override_dir: str | Path | None = None) -> Prompts:
    """Built-in prompts, with any same-named ``.md`` file from ``override_dir`` in their place
    (and its new ones beside them)."""
    builtin = _files(resources.files(__package__))
    overrides = _files(Path(override_dir)) if override_dir is not None else {}
    templates: dict[str, Template] = {}
    for step, source in sorted((builtin | overrides).items()):
        template = Template(source.read_text(encoding="utf-8"))
        if step in builtin and source is not builtin[step]:
            _check(step, source, template, placeholders(Template(builtin[step].read_text("utf-8"))))
        templates[step] = template
    return Prompts(templates)


def _check(
    step: str, source: Traversable | Path, template: Template, wanted: frozenset[str]
) -> None:
    """An override fills the placeholders the built-in prompt does (optional ones apart)."""
    optional = OPTIONAL_VARIABLES.get(step, frozenset())
    used = placeholders(template)
    missing, unknown = wanted - optional - used, used - wanted - optional
    if missing or unknown:
        raise ConfigError(
            f"prompt {source}: "
            + (f"missing ${', $'.join(sorted(missing))} " if missing else "")
            + (f"unknown ${', $'.join(sorted(unknown))}" if unknown else "")
        )
