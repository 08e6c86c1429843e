"""What every node may use but the checkpoint must not hold: models, prompts, settings.

It is LangGraph's run-time context (``Runtime[PipelineContext]``), passed to each
``ainvoke``. Keeping the models here, not in state, is also what keeps API keys out of
checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeclm.config import RunConfig
from codeclm.llm.client import RoleModel
from codeclm.prompts import Prompts


@dataclass(frozen=True)
class PipelineContext:
    strong: RoleModel
    target: RoleModel
    prompts: Prompts
    config: RunConfig
