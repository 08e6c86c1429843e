"""How the mock knows what it is asked: each request's prompt read back against the prompt
files the steps declare, as the inverse of rendering.

Every prompt file becomes a pattern (its text literal, each ``$placeholder`` a group), so a
prompt tells which file it was rendered from and with which values; the step that renders
that file says what reply it wants (``Step.reply``). Nothing here knows a prompt's wording:
a prompt rewritten in other words is still read, and a new step's prompt is read as soon as
its file exists.

What a test double can live with: a value that itself contains the text that follows its
placeholder in the file is cut there (the rest goes to the next value); and the answer's
file is its instruction alone, so a prompt no other file reads (another client's, or one
reworded without its file) is answered as an instruction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Template

from codeclm.graph import all_steps
from codeclm.prompts import load_prompts


@dataclass(frozen=True)
class ReadPrompt:
    """What a prompt was rendered from: its file's name and the placeholders' values (an
    unknown prompt: no name, no values)."""

    name: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    reply: str | None = None
    """The reply the step rendering it declares ('PairwiseScores' for a judge's line)."""


def _pattern(template: Template) -> tuple[re.Pattern[str], str]:
    """The template as a regular expression, and its longest literal part (a quick test).

    A placeholder is the shortest text that lets the rest match; one followed at once by
    another (``$skills$fields``) is the rest of its line, the next one what follows."""
    text = template.template
    matches = list(template.pattern.finditer(text))
    parts, literals, seen, at = [], [], set(), 0
    for index, match in enumerate(matches):
        literal = text[at : match.start()]
        parts.append(re.escape(literal))
        literals.append(literal)
        at = match.end()
        name = match["named"] or match["braced"]
        adjacent = index + 1 < len(matches) and matches[index + 1].start() == at
        if match["escaped"] is not None:
            parts.append(re.escape("$"))
        elif name in seen:
            parts.append(f"(?P={name})")
        elif name is not None:
            seen.add(name)
            parts.append(f"(?P<{name}>[^\n]*)" if adjacent else f"(?P<{name}>.*?)")
    parts.append(re.escape(text[at:]))
    literals.append(text[at:])
    return re.compile("".join(parts), re.DOTALL), max(literals, key=len)


@dataclass(frozen=True)
class PromptReader:
    """The prompt files as patterns, the most specific (most literal text) first."""

    patterns: tuple[tuple[str, re.Pattern[str], str], ...]
    replies: dict[str, str | None]

    def read(self, prompt: str) -> ReadPrompt:
        for name, pattern, literal in self.patterns:
            if literal in prompt and (match := pattern.fullmatch(prompt)) is not None:
                values = {k: v for k, v in match.groupdict().items() if v is not None}
                return ReadPrompt(name, values, self.replies.get(name))
        return ReadPrompt()


def reader(prompts_dir: Path | str | None = None) -> PromptReader:
    """The reader of the built-in prompts (and of a folder overriding them), built once
    per folder."""
    return _reader(Path(prompts_dir).resolve() if prompts_dir is not None else None)


@cache
def _reader(prompts_dir: Path | None) -> PromptReader:
    templates = load_prompts(prompts_dir).templates
    compiled = [(name, *_pattern(template)) for name, template in templates.items()]
    compiled.sort(key=lambda item: -len(re.sub(r"\(\?P.*?\)", "", item[1].pattern)))
    declared: dict[str, set[str | None]] = {}
    for step in all_steps().values():
        for name in step.prompts:
            declared.setdefault(name, set()).add(step.reply)
    # A prompt two steps render for different replies (a fragment: the top-up's "avoid"
    # list) tells no reply by itself.
    replies = {name: next(iter(r)) if len(r) == 1 else None for name, r in declared.items()}
    return PromptReader(tuple(compiled), replies)
