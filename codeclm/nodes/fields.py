"""Declared metadata fields (``metadata_fields``) in the prompts and out of the replies.

With none declared every text here is empty, so the prompts are byte for byte the paper's
two-field ones (and a run's cached replies still match).
"""

from __future__ import annotations

from typing import Any

from codeclm.analysis.labels import clean_label
from codeclm.config import MetadataField
from codeclm.state import Extra


def title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def encode_fields_text(fields: tuple[MetadataField, ...]) -> str:
    """The encode prompt's ``$fields``: what else to describe, and in which values."""
    if not fields:
        return ""
    lines = ["", "Also give these fields:"]
    for field in fields:
        how = f"one or more of: {', '.join(field.values)}" if field.values else "1–3 words"
        if field.values and not field.multiple:
            how = f"one of: {', '.join(field.values)}"
        elif field.multiple and not field.values:
            how = "a list of 1–3 labels, 1–3 words each"
        lines.append(f"- {field.name}: {field.description} ({how})")
    return "\n".join(lines)


def entry_fields_text(extra: Extra) -> str:
    """The decode and rubrics prompts' ``$fields``: an entry's declared fields, a line each
    after the skills line."""
    return "".join(
        f"\n- {title(name)}: {', '.join(value) if isinstance(value, list) else value}"
        for name, value in extra.items()
    )


def read_extra(reply: Any, fields: tuple[MetadataField, ...]) -> Extra:
    """The declared fields of an encoder's reply: free text cleaned as labels are, a list
    without repeats; allowed values as given (the schema checked them)."""
    extra: Extra = {}
    for field in fields:
        value = getattr(reply, field.name)
        clean = (lambda v: v) if field.values else clean_label
        if field.multiple:
            items: list[str] = []
            for item in value:
                if (label := clean(item)) and label not in items:
                    items.append(label)
            extra[field.name] = items
        else:
            extra[field.name] = clean(value)
    return extra
