"""The methods codeclm runs, in one registry: what each one does, in one place.

``--method`` picks one: the full CodecLM method, its two ablations from the paper's Table 3,
or a baseline. Every other module asks this registry (``method_spec(name)``) rather than
comparing method names, so adding a method is one entry here, plus its nodes and graph
shape if it needs new ones (``codeclm/graph/instruction.py`` builds each shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

Method = Literal[
    "codeclm",
    "codeclm-metadata",
    "codeclm-rubrics",
    "self-instruct",
    "alpagasus",
    "evol-instruct",
    "wizardlm-plus",
    "tree-instruct",
]

#: How the 'prepare' thread makes the basic instructions: decoded from an encoded metadata
#: pool (CodecLM), Self-Instruct's bootstrap rounds, or the seeds themselves (Evol-Instruct).
PrepareRoute = Literal["metadata", "bootstrap", "seeds"]

#: The shape of one instruction's graph (``codeclm/graph/instruction.py`` wires each one).
InstructionShape = Literal["judge_loop", "answer", "improve_once", "evolve", "rate", "tree"]


class MethodProgress(BaseModel):
    """A method's own bookkeeping across its 'prepare' steps, kept in the 'prepare'
    thread's ``progress`` (none for the CodecLM methods)."""

    def counts(self) -> dict[str, int]:
        """What ``run.json``'s counts record of it (``Counts``' field names)."""
        return {}


class BootstrapProgress(MethodProgress):
    """self-instruct: its generation rounds so far (each one a checkpointed step) and the
    generated instructions the ROUGE-L novelty filter turned away."""

    rounds: int = 0
    rejected: int = 0

    def counts(self) -> dict[str, int]:
        return {"self_instruct_rejected": self.rejected}


@dataclass(frozen=True)
class MethodSpec:
    """One method: how it prepares, which graph its instructions take, what it records."""

    name: str
    summary: str
    prepare: PrepareRoute
    shape: InstructionShape
    uses_rubrics: bool
    judges: bool
    #: Settings only this method reads: they enter its runs' fingerprint, and no other's.
    settings: tuple[str, ...] = field(default=())
    #: Its own bookkeeping in the 'prepare' thread (``PrepareState.method_progress``).
    progress: type[MethodProgress] = MethodProgress

    @property
    def makes_metadata(self) -> bool:
        """Whether the run has a metadata pool (use case + skills) to report and export."""
        return self.prepare == "metadata"


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            name="codeclm",
            summary="the full method: metadata, Self-Rubrics, Contrastive Filtering",
            prepare="metadata",
            shape="judge_loop",
            uses_rubrics=True,
            judges=True,
        ),
        MethodSpec(
            name="codeclm-metadata",
            summary="ablation: instructions decoded from metadata, answered by the strong model",
            prepare="metadata",
            shape="answer",
            uses_rubrics=False,
            judges=False,
        ),
        MethodSpec(
            name="codeclm-rubrics",
            summary="ablation: + one Self-Rubrics improvement, no Contrastive Filtering",
            prepare="metadata",
            shape="improve_once",
            uses_rubrics=True,
            judges=False,
        ),
        MethodSpec(
            name="self-instruct",
            summary="baseline: Self-Instruct's bootstrap from the seeds",
            prepare="bootstrap",
            shape="answer",
            uses_rubrics=False,
            judges=False,
            settings=("rouge_threshold",),
            progress=BootstrapProgress,
        ),
        MethodSpec(
            name="alpagasus",
            summary="baseline: Self-Instruct's pairs kept only when the strong model rates "
            "them 4.5 of 5 or more (AlpaGasus)",
            prepare="bootstrap",
            shape="rate",
            uses_rubrics=False,
            judges=False,
            settings=("rouge_threshold", "rating_threshold"),
            progress=BootstrapProgress,
        ),
        MethodSpec(
            name="evol-instruct",
            summary="baseline: WizardLM's Evol-Instruct on the seeds",
            prepare="seeds",
            shape="evolve",
            uses_rubrics=False,
            judges=False,
            settings=("evol_rounds",),
        ),
        MethodSpec(
            name="wizardlm-plus",
            summary="baseline: Evol-Instruct on CodecLM's basic instructions (WizardLM+)",
            prepare="metadata",
            shape="evolve",
            uses_rubrics=False,
            judges=False,
            settings=("evol_rounds",),
        ),
        MethodSpec(
            name="tree-instruct",
            summary="baseline: Tree-Instruct on the seeds (a semantic tree, nodes added)",
            prepare="seeds",
            shape="tree",
            uses_rubrics=False,
            judges=False,
            settings=("tree_nodes",),
        ),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The spec of a recorded method name; a run recorded before methods existed: codeclm."""
    return METHODS.get(name, METHODS["codeclm"])


def methods_help() -> str:
    """The ``--method`` help: each method and what it is."""
    return "; ".join(f"{spec.name}: {spec.summary}" for spec in METHODS.values())
