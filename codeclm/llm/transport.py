"""The hot path of every model call: ``POST /chat/completions`` over one aiohttp session.

The OpenAI SDK's request path (httpx request building, URL parsing, header merging, the
transport adapter) cost about a third of the client's CPU per call (docs/performance.md).
This sends the same request, with the headers of the SDK client that ``ChatOpenAI``
holds, straight through aiohttp (which the SDK's own aiohttp transport uses underneath),
and raises the SDK's own exception classes, so retries and error records are unchanged.
"""

from __future__ import annotations

import json
import os
import socket
from functools import cache
from typing import Any

import aiohttp
import httpx2
import openai

from codeclm.llm.parsing import UnparseableReply


@cache
def worker_id() -> str:
    """This process, as leases and providers' logs name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


WORKER_HEADER = "X-Codeclm-Worker"
"""Sent with every call: a provider's logs (and the test mock) can tell workers apart."""


class ChatTransport:
    """One role's connection pool to its endpoint (opened in the running event loop)."""

    def __init__(self, client: openai.AsyncOpenAI, timeout: float) -> None:
        self.client = client
        self.url = str(client.base_url).rstrip("/") + "/chat/completions"
        self.headers = {
            key: value
            for key, value in {**client.default_headers, **client.auth_headers}.items()
            if isinstance(value, str)
        }
        self.headers[WORKER_HEADER] = worker_id()
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0)  # the role's limits decide, not the pool
            self._session = aiohttp.ClientSession(
                headers=self.headers, timeout=self.timeout, connector=connector
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completion's JSON; a non-2xx answer raises the SDK's matching error."""
        request = None
        try:
            async with self._open().post(self.url, data=json.dumps(body)) as response:
                payload = await response.read()
                if response.status < 400:
                    try:
                        result: dict[str, Any] = json.loads(payload)
                    except ValueError:
                        raise UnparseableReply("the server's answer is not JSON") from None
                    return result
                request = httpx2.Request("POST", self.url)
                error = httpx2.Response(
                    response.status,
                    headers=list(response.headers.items()),
                    content=payload,
                    request=request,
                )
        except TimeoutError:
            raise openai.APITimeoutError(request=httpx2.Request("POST", self.url)) from None
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(
                message=f"Connection error: {type(exc).__name__}",
                request=httpx2.Request("POST", self.url),
            ) from None
        raise self.client._make_status_error_from_response(error)
