"""The loopback mock's Batch API, in the shape of OpenAI's: files (upload, content), batches
(create, retrieve, cancel), output and error files; lines come back in no particular order.

How it misbehaves, for the tests: a batch takes ``delay`` seconds to complete; the next
``expire_next`` batches expire with only their first half of lines done (the rest in the
error file, ``batch_expired``); the next ``fail_lines`` lines fail (``server_error``).
Each line is answered by the mock's own chat completions, so a batched run gets the very
replies an online one does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

Answer = tuple[int, dict[str, Any], dict[str, str]]
Chat = Callable[[dict[str, Any]], Awaitable[Answer]]

RAW = "__raw__"
"""A payload key the mock's server writes as the body itself (a file's content)."""


@dataclass
class MockBatches:
    """Files and batches, in memory, with the faults the tests set."""

    delay: float = 0.05
    expire_next: int = 0
    fail_lines: int = 0
    fail_next: int = 0
    """The next batches fail as a whole (as OpenAI fails one over a quota: no file)."""
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines_submitted: Counter[str] = field(default_factory=Counter)
    """Each custom_id, as many times as a batch carried it."""
    created: threading.Event = field(default_factory=threading.Event)
    """Set when the first batch is created (a test waits on it from its own thread)."""
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):05d}"

    async def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, chat: Chat
    ) -> Answer | None:
        """The answer to a files or batches request, or None for any other path."""
        parts = path.split("?")[0].rstrip("/").split("/")
        if "files" in parts:
            return self._files(method, parts[parts.index("files") + 1 :], headers, body)
        if "batches" in parts:
            rest = parts[parts.index("batches") + 1 :]
            if method == "POST" and not rest:
                return self._create(json.loads(body), chat, headers.get("x-codeclm-worker"))
            if method == "GET" and not rest:  # newest first, as OpenAI lists them
                data = [_public(b) for b in reversed(self.batches.values())]
                return 200, {"object": "list", "data": data, "has_more": False}, {}
            if rest and rest[0] in self.batches:
                batch = self.batches[rest[0]]
                ended = batch["status"] in ("completed", "expired", "failed")
                if method == "POST" and rest[1:] == ["cancel"] and not ended:
                    batch["status"] = "cancelling"
                    batch["cancel"] = True
                return 200, _public(batch), {}
            return 404, {"error": {"message": f"no batch {rest[:1]}"}}, {}
        return None

    def _files(self, method: str, rest: list[str], headers: dict[str, str], body: bytes) -> Answer:
        if method == "POST" and not rest:
            name, content = _upload(headers.get("content-type", ""), body)
            ident = self._id("file")
            self.files[ident] = content
            info = {"id": ident, "object": "file", "bytes": len(content), "filename": name}
            return 200, {**info, "purpose": "batch", "created_at": int(time.time())}, {}
        if method == "GET" and len(rest) == 2 and rest[1] == "content" and rest[0] in self.files:
            return 200, {RAW: self.files[rest[0]].decode()}, {}
        return 404, {"error": {"message": f"no file {rest[:1]}"}}, {}

    def _create(self, request: dict[str, Any], chat: Chat, worker: str | None) -> Answer:
        content = self.files.get(request.get("input_file_id", ""))
        if content is None:
            return 400, {"error": {"message": "input_file_id: no such file"}}, {}
        lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        ident = self._id("batch")
        batch = {
            "id": ident,
            "object": "batch",
            "endpoint": request.get("endpoint"),
            "input_file_id": request["input_file_id"],
            "completion_window": request.get("completion_window", "24h"),
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
            "worker": worker,
        }
        self.batches[ident] = batch
        self.created.set()
        self.lines_submitted.update(line["custom_id"] for line in lines)
        if self.fail_next > 0:
            self.fail_next -= 1
            errors = [{"code": "token_limit_exceeded", "message": "enqueued token limit reached"}]
            batch.update(status="failed", errors={"object": "list", "data": errors})
            return 200, _public(batch), {}
        expire = self.expire_next > 0
        self.expire_next -= expire
        batch["task"] = asyncio.ensure_future(self._run(batch, lines, chat, expire))
        return 200, _public(batch), {}

    async def _run(
        self, batch: dict[str, Any], lines: list[dict[str, Any]], chat: Chat, expire: bool
    ) -> None:
        created = time.monotonic()
        while time.monotonic() < created + self.delay:  # (a test may shorten it meanwhile)
            await asyncio.sleep(min(0.01, self.delay))
        done = lines[: len(lines) // 2] if expire else lines
        output, errors = [], []
        for line in done:
            if batch.get("cancel"):
                break
            if self.fail_lines > 0:
                self.fail_lines -= 1
                errors.append(_error(line, "server_error", "the line failed; try it again"))
                continue
            status, payload, _ = await chat(line["body"])
            reply = {"status_code": status, "request_id": self._id("req"), "body": payload}
            output.append(
                {
                    "id": self._id("line"),
                    "custom_id": line["custom_id"],
                    "response": reply,
                    "error": None,
                }
            )
        answered = {row["custom_id"] for row in output + errors}
        reason = "batch_expired" if expire else "batch_cancelled"
        errors += [
            _error(line, reason, reason) for line in lines if line["custom_id"] not in answered
        ]
        output.reverse()  # lines come back in no particular order
        if output:
            batch["output_file_id"] = self._store(output)
        if errors:
            batch["error_file_id"] = self._store(errors)
        batch["request_counts"].update(completed=len(output), failed=len(errors))
        batch["status"] = (
            "expired" if expire else "cancelled" if batch.get("cancel") else "completed"
        )

    def _store(self, rows: list[dict[str, Any]]) -> str:
        ident = self._id("file")
        self.files[ident] = "".join(json.dumps(row) + "\n" for row in rows).encode()
        return ident


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in batch.items() if key not in ("task", "cancel")}


def _error(line: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    return {
        "id": None,
        "custom_id": line["custom_id"],
        "response": None,
        "error": {"code": code, "message": message},
    }


def _upload(content_type: str, body: bytes) -> tuple[str, bytes]:
    """The file part of a multipart/form-data upload: its name and content."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            content = part.get_payload(decode=True)
            data = content if isinstance(content, bytes) else b""
            return part.get_filename() or "batch.jsonl", data
    return "batch.jsonl", b""
