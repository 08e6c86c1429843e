"""A loopback stand-in for LangSmith's ingestion API that keeps what the tracer sends, so a
test can see a traced run offline (``LANGSMITH_ENDPOINT`` pointed here).

``GET /info`` asks the client for plain JSON batches (``POST /runs/batch``, no multipart,
no compression); runs posted and patched are merged by id (``runs``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from codeclm.bench.mock_server import Answer, LoopbackServer

#: Complete, or the client's tracing thread fails on the first missing key and never sends.
INFO = {
    "batch_ingest_config": {
        "use_multipart_endpoint": False,
        "size_limit": 100,
        "size_limit_bytes": None,
        "scale_up_nthreads_limit": 16,
        "scale_up_qsize_trigger": 1000,
        "scale_down_nempty_trigger": 4,
    }
}


@dataclass
class MockLangSmith(LoopbackServer):
    """What the tracer sent: every request, and the runs it described."""

    received: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self.lock:
            self.received.append((method, path, headers))
        if path.startswith("/info"):
            return 200, INFO, {}
        if method == "POST" and path.startswith("/runs/batch"):
            batch = json.loads(body or b"{}")
            for run in [*(batch.get("post") or []), *(batch.get("patch") or [])]:
                self._merge(run)
            return 202, {}, {}
        if method == "POST" and path.rstrip("/") == "/runs":
            self._merge(json.loads(body))
            return 202, {}, {}
        if method == "PATCH" and path.startswith("/runs/"):
            self._merge({"id": path.rsplit("/", 1)[1], **json.loads(body)})
            return 202, {}, {}
        return 404, {"detail": f"no route {method} {path}"}, {}

    def _merge(self, run: dict[str, Any]) -> None:
        with self.lock:
            known = self._runs.setdefault(str(run["id"]), {})
            known.update({key: value for key, value in run.items() if value is not None})

    def runs(self) -> list[dict[str, Any]]:
        """Every run sent (a node, a model call, the graph), its posts and patches merged."""
        with self.lock:
            return [dict(run) for run in self._runs.values()]
