"""Every model call in a LangSmith trace, under the graph node that made it.

LangGraph traces its nodes when ``LANGSMITH_TRACING=true`` (LangChain's callbacks), but
codeclm's calls skip ChatOpenAI's callback machinery (``client.py``: it costs more CPU
than the request), so they would vanish from the trace. Each call is recorded here as a
child run of kind ``llm``: its role, model, server and step, the tokens (LangSmith's
``usage_metadata``), how often it was asked (429s waited out, a format the server
rejected, an endpoint's failures), whether the response cache answered it, and the reply.
The node's run is the parent through context variables, as in any LangSmith code.

With tracing off (the default) a call costs one check of a cached setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from langsmith.run_helpers import trace
from langsmith.utils import tracing_is_enabled

from codeclm.llm.reply import describe_error
from codeclm.redact import scrub, server_name
from codeclm.state import TokenUsage


@dataclass
class ModelSpan:
    """One model call's record in the trace (``run`` None: tracing is off)."""

    run: Any = None
    waits: list[str] = field(default_factory=list)
    """Why it was asked again, each time: the provider's words (``RateLimitError HTTP 429:
    ...``), without a key."""

    def again(self, why: str) -> None:
        if self.run is not None:
            self.waits.append(why)

    def done(self, content: str, usage: TokenUsage, finish_reason: str | None = None) -> None:
        """The call's reply and tokens (a cached reply: no tokens paid, ``cached``)."""
        if self.run is None:
            return
        tokens: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }
        if usage.reasoning_tokens:
            tokens["output_token_details"] = {"reasoning": usage.reasoning_tokens}
        self.run.set(
            usage_metadata=tokens,
            metadata={
                "cached": bool(usage.cached_calls),
                "asked_again": self.waits,
                "finish_reason": finish_reason,
            },
        )
        self.run.end(outputs={"content": content, "usage_metadata": tokens})


@contextmanager
def model_span(
    role: str, model: str, server: str, step: str, prompt: str, max_tokens: int
) -> Iterator[ModelSpan]:
    """A call of ``role``'s model for ``step`` (a schema's name, or ``text``)."""
    if not tracing_is_enabled():
        yield ModelSpan()
        return
    metadata = {
        "ls_provider": "openai",
        "ls_model_name": model,
        "ls_model_type": "chat",
        "ls_max_tokens": max_tokens,
        "codeclm_role": role,
        "codeclm_step": step,
        "server": server,
    }
    inputs = {"messages": [{"role": "user", "content": prompt}], "model": model}
    failed: Exception | None = None
    with trace(f"{role}: {step}", run_type="llm", inputs=inputs, metadata=metadata) as run:
        try:
            yield ModelSpan(run)
        except Exception as exc:  # recorded in the provider's words without a key, not raw
            run.end(error=scrub(describe_error(exc)))
            failed = exc
    if failed is not None:
        raise failed


#: The most a command waits at its end for its traces to leave.
FLUSH_SECONDS = 5.0


def tracing_destination() -> str | None:
    """Where this process's traces go, said at its start (None: tracing is off). The
    LangSmith threads are made daemons, so an endpoint that cannot be reached holds the
    exit no longer than ``finish_tracing`` waits."""
    if not tracing_is_enabled():
        return None
    from langsmith import utils

    os.environ.setdefault("LANGSMITH_USE_DAEMON", "true")
    utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
    endpoint = utils.get_env_var("ENDPOINT") or "https://api.smith.langchain.com"
    project = utils.get_tracer_project()
    if not utils.get_env_var("API_KEY") and "smith.langchain.com" in endpoint:
        return f"tracing is on, but no LANGSMITH_API_KEY is set: {endpoint} will refuse traces"
    return f"tracing to {server_name(endpoint)} (project {project})"


def finish_tracing(timeout: float = FLUSH_SECONDS) -> str | None:
    """Send the traces still queued, waiting at most ``timeout``; the one line to say when
    some could not be sent (they are dropped), else None. LangSmith's own retry warnings
    are kept out of the terminal: this line says it once."""
    if not tracing_is_enabled():
        return None
    from langsmith.run_trees import get_cached_client

    logging.getLogger("langsmith").setLevel(logging.CRITICAL)
    client = get_cached_client()
    client.flush(timeout=timeout)
    queue = client.tracing_queue
    left = queue.unfinished_tasks if queue is not None else 0
    if not left:
        return None
    return (
        f"traces: {left} batch(es) not sent within {timeout:g}s (the tracing endpoint did "
        "not take them): dropped"
    )
