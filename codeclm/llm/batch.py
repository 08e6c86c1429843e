"""Batch mode (``--batch``): a role's requests go through the provider's Batch API (OpenAI's
``/v1/files`` and ``/v1/batches``, half price) instead of one HTTP call each.

A ``Batcher`` gathers the requests the waiting threads need (each keyed by its response-cache
key, the batch line's ``custom_id``), and once no new one has come for a moment writes them
into batch files (at most ``max_lines`` a file, one model a file), submits them and polls
them. Each reply goes to the request waiting for it, which takes it as it takes an online
reply (validated, cached, priced at the batch discount). The batches out are kept in the
run's store (``BatchBook``), so a process may stop while they run: the next run collects
them and submits none of their lines again. An expired or cancelled batch's unfinished
lines, and lines that failed for a passing reason, are submitted again (only those); a line
the provider refused (a 4xx) fails its request with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import openai

from codeclm.llm.batch_book import PENDING, BatchBook, SubmittedBatch
from codeclm.llm.transport import WORKER_HEADER, worker_id

log = logging.getLogger("codeclm")

ENDED = ("completed", "expired", "cancelled", "failed")
SUBMITTING = "(being submitted)"
MAX_TRIES = 5
"""Batches a line may go out in (expired, cancelled, failed for a passing reason) before
its request fails."""


_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    422: openai.UnprocessableEntityError,
}


def line_error(status_code: int, message: str) -> openai.APIStatusError:
    """A batch line (or batch) the provider answered with an error, as the HTTP error an
    online call gets: the graph's retry policy and the structured-output fallback (a 400
    naming ``response_format``) read it the same way."""
    request = httpx.Request("POST", "https://batch.invalid/v1/chat/completions")
    response = httpx.Response(status_code, request=request)
    kind = _ERRORS.get(status_code, openai.APIStatusError)
    body = {"error": {"message": message}}
    return kind(f"batch line (HTTP {status_code}): {message}", response=response, body=body)


@dataclass
class BatchCounts:
    """What the progress shows of batch mode."""

    submitted: int = 0
    completed: int = 0
    lines_out: int = 0
    lines_done: int = 0
    resubmitted: int = 0

    @property
    def in_progress(self) -> int:
        return self.submitted - self.completed


@dataclass
class Batcher:
    """One endpoint's (base URL and model's) batches: gathered, submitted, polled, handed out."""

    client: openai.AsyncOpenAI
    endpoint: str
    book: BatchBook
    quiet_seconds: float = 1.0
    poll_seconds: float = 30.0
    max_lines: int = 50_000
    counts: BatchCounts = field(default_factory=BatchCounts)
    _queue: dict[str, dict[str, Any]] = field(default_factory=dict)
    _bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    _waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _done: dict[str, dict[str, Any] | BaseException] = field(default_factory=dict)
    _out: dict[str, str] = field(default_factory=dict)
    """custom_id → the batch carrying it."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _collecting: set[str] = field(default_factory=set)
    _flush: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _kept_for: dict[str, str] = field(default_factory=dict)
    """Lines handed out to no request yet, and the batch they came in."""
    _tries: dict[str, int] = field(default_factory=dict)
    """How many batches carried each line (one that keeps failing stops being resubmitted)."""

    def _take_up(self, batch: SubmittedBatch) -> None:
        """Collect a batch another process submitted (once). A batch an earlier process (or
        another worker) left out is taken up when a request asks for one of its lines, so a
        worker collects only what its own threads need."""
        if batch.id in self._collecting:
            return
        self._collecting.add(batch.id)
        self._out.update(dict.fromkeys(batch.lines, batch.id))
        if batch.id.startswith(PENDING):
            self._spawn(self._recover(batch))
            return
        self.counts.submitted += 1
        self.counts.lines_out += len(batch.lines)
        self._spawn(self._collect(batch))

    async def _recover(self, pending: SubmittedBatch) -> None:
        """A batch recorded as its file only (its process stopped between upload and
        create): the provider's batch of that file is collected; if it made none, the
        lines are not out, and are submitted."""
        file_id = pending.id.removeprefix(PENDING)
        async for found in self.client.batches.list(limit=100):
            if found.input_file_id == file_id:
                batch = SubmittedBatch(found.id, self.endpoint, pending.lines)
                await self.book.add(batch)
                await self.book.close(pending.id)
                self._collecting.add(batch.id)
                self._take_up_counts(batch)
                await self._collect(batch)
                return
        await self.book.close(pending.id)
        for key in pending.lines:
            self._out.pop(key, None)
            if key in self._waiting:
                self._queue[key] = self._bodies[key]
        if self._queue and (self._flush is None or self._flush.done()):
            self._flush = asyncio.ensure_future(self._gather())

    def _take_up_counts(self, batch: SubmittedBatch) -> None:
        self._out.update(dict.fromkeys(batch.lines, batch.id))
        self.counts.submitted += 1
        self.counts.lines_out += len(batch.lines)

    async def aclose(self) -> None:
        for task in [*self._tasks, *([self._flush] if self._flush else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def complete(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for ``body`` (``key``: its custom_id), once its batch is in."""
        if key in self._done:
            result = self._done.pop(key)
            await self._close_when_taken(self._kept_for.pop(key))
            if isinstance(result, BaseException):
                raise result
            return result
        future = self._waiting.get(key)
        joined = future is not None  # another request of the same key is waiting already
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
        self._bodies[key] = body
        if key not in self._out and (out := await self.book.carrying(self.endpoint, key)):
            self._take_up(out)  # a worker that stopped (or another one) submitted it
        if key not in self._out:
            self._queue[key] = body
            self._wake.set()
            if self._flush is None or self._flush.done():
                self._flush = asyncio.ensure_future(self._gather())
        result = await asyncio.shield(future)
        unpaid = {"prompt_tokens": 0, "completion_tokens": 0}
        return {**result, "usage": unpaid} if joined else result  # (one line, paid once)

    async def _gather(self) -> None:
        """Submit what was asked, once no new request has come for ``quiet_seconds``."""
        while self._queue:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.quiet_seconds)
                continue  # a new request came: wait for the next quiet moment
            except TimeoutError:
                pass
            lines, self._queue = list(self._queue.items()), {}
            for key, _ in lines:
                self._out[key] = SUBMITTING  # a request for it meanwhile waits, not queues
            for start in range(0, len(lines), self.max_lines):
                chunk = lines[start : start + self.max_lines]
                try:
                    await self._submit(chunk)
                except Exception as exc:  # (after the client's own retries): those fail
                    log.warning("a batch could not be submitted: %s", exc)
                    for key, _ in chunk:
                        self._out.pop(key, None)
                        self._hand(key, exc)

    async def _submit(self, lines: list[tuple[str, dict[str, Any]]]) -> None:
        content = "".join(
            json.dumps(
                {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}
            )
            + "\n"
            for key, body in lines
        )
        headers = {WORKER_HEADER: worker_id()}  # which process submitted it (for scale-out)
        keys = tuple(key for key, _ in lines)
        upload = await self.client.files.create(
            file=("codeclm-batch.jsonl", content.encode()), purpose="batch", extra_headers=headers
        )
        pending = SubmittedBatch(PENDING + upload.id, self.endpoint, keys)
        await self.book.add(pending)  # first: a kill before the next line leaves this
        created = await self.client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            extra_headers=headers,
        )
        batch = SubmittedBatch(created.id, self.endpoint, keys)
        await self.book.add(batch)
        await self.book.close(pending.id)
        self._collecting.add(batch.id)
        self._out.update(dict.fromkeys(batch.lines, batch.id))
        self.counts.submitted += 1
        self.counts.lines_out += len(lines)
        log.info("batch %s submitted: %d requests", batch.id, len(lines))
        self._spawn(self._collect(batch))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _collect(self, batch: SubmittedBatch) -> None:
        """Poll the batch to its end, then hand out its lines; resubmit what did not finish.
        A batch the provider could not take fails the requests of its lines with the reason."""
        try:
            found = await self._ended(batch.id)
            answered = await self._rows(found)
        except Exception as exc:  # the batch cannot be read: its requests fail, with why
            log.warning("batch %s could not be collected: %s", batch.id, exc)
            answered, found = {}, None
            for key in batch.lines:
                self._out.pop(key, None)
                self._hand(key, exc)
            return
        refused = _refusal(found)
        again = []
        for key in batch.lines:
            self._out.pop(key, None)
            self._kept_for[key] = batch.id  # (until a request takes its reply)
            outcome = refused or _outcome(answered.get(key))
            if outcome is None and self._tries.get(key, 1) >= MAX_TRIES:
                outcome = line_error(500, f"no reply after {MAX_TRIES} batches")
            if outcome is None:  # expired, cancelled, failed for a passing reason
                again.append(key)
            else:
                self._hand(key, outcome)
        self.counts.completed += 1
        self.counts.lines_done += len(batch.lines) - len(again)
        for key in again:
            if key in self._waiting:  # (a line nobody waits for now is asked for again)
                self.counts.resubmitted += 1
                self._tries[key] = self._tries.get(key, 1) + 1
                self._queue[key] = self._bodies[key]
        await self._close_when_taken(batch.id)
        if again and self._queue and (self._flush is None or self._flush.done()):
            self._flush = asyncio.ensure_future(self._gather())

    async def _ended(self, batch_id: str) -> Any:
        """The batch once it has ended; a poll that fails for a passing reason is tried
        again at the next poll (a batch runs for hours: one dropped connection is nothing)."""
        failures = 0
        while True:
            try:
                found = await self.client.batches.retrieve(batch_id)
                failures = 0
                if found.status in ENDED:
                    return found
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError):
                failures += 1
                if failures >= MAX_TRIES * 4:
                    raise
            await asyncio.sleep(self.poll_seconds)

    async def _rows(self, found: Any) -> dict[str, dict[str, Any]]:
        """The batch's output and error lines, by custom_id (they come in no order)."""
        answered: dict[str, dict[str, Any]] = {}
        for file_id in (found.output_file_id, found.error_file_id):
            if file_id:
                text = (await self.client.files.content(file_id)).text
                rows = (json.loads(line) for line in text.splitlines() if line.strip())
                answered.update((row["custom_id"], row) for row in rows)
        return answered

    @property
    def asked(self) -> int:
        """Requests waiting for their reply."""
        return sum(not future.done() for future in self._waiting.values())

    @property
    def settled(self) -> bool:
        """Every request asked for is in a batch out, and at least one is: only the
        provider can move this run now (``--detach`` may stop here)."""
        flushing = self._flush is not None and not self._flush.done()
        waiting = [key for key, future in self._waiting.items() if not future.done()]
        return (
            bool(waiting)
            and not self._queue
            and not flushing
            and all(key in self._out for key in waiting)
        )

    def _hand(self, key: str, outcome: dict[str, Any] | BaseException) -> None:
        future = self._waiting.pop(key, None)
        self._bodies.pop(key, None)
        if future is None:
            self._done[key] = outcome  # a batch of an earlier process: its node asks soon
            return
        self._kept_for.pop(key, None)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _close_when_taken(self, batch_id: str) -> None:
        """The batch leaves the store once every reply of it went to a request: until then
        a process that stops leaves it for the next to collect (its files stay at the
        provider), and no reply it paid for is lost."""
        if batch_id not in self._kept_for.values():
            await self.book.close(batch_id)


def _refusal(found: Any) -> BaseException | None:
    """A batch the provider failed as a whole (its input did not validate, a quota): its
    lines' requests fail with the reason, none is submitted again."""
    if found.status != "failed":
        return None
    errors = getattr(getattr(found, "errors", None), "data", None) or []
    why = "; ".join(
        f"{getattr(e, 'code', '') or 'error'}: {getattr(e, 'message', e)}" for e in errors[:3]
    )
    why = why or "the batch failed"
    return line_error(400, why)


def _outcome(row: dict[str, Any] | None) -> dict[str, Any] | BaseException | None:
    """A line's chat completion, its refusal (a 4xx), or None: submit it again."""
    if row is None:
        return None
    response = row.get("response") or {}
    status = int(response.get("status_code") or 0)
    if status == 200:
        return dict(response["body"])
    if 400 <= status < 500 and status not in (408, 409, 429):
        error = (response.get("body") or {}).get("error") or {}
        return line_error(status, str(error.get("message", "")))
    return None  # a 429 or 5xx, or an error-file line (expired, failed): submitted again
