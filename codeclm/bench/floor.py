"""The bare-client floor: the least CPU any client can spend per call against the mock.

``python -m codeclm.bench.floor BASE_URL CALLS CONCURRENCY`` sends ``CALLS`` CodecLM-shaped
chat completions (a free-text answer, then a structured judge call with its JSON schema, in
turn) with nothing but asyncio, aiohttp and ``json``: no retries, no cache, no checkpoints.
``codeclm bench`` runs it as a child process against the same mock, with the same number of
calls, and reads its CPU time from the kernel, to set codeclm's own CPU per call beside it.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

from codeclm.bench.mock_llm import STRONG_MODEL

_ANSWER = "Answer the instruction below helpfully.\n\nInstruction: {i}"
_JUDGE = {
    "type": "json_schema",
    "json_schema": {
        "name": "PairwiseScores",
        "strict": False,
        "schema": {
            "type": "object",
            "properties": {
                "assistant_1": {"type": "integer", "minimum": 1, "maximum": 10},
                "assistant_2": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["assistant_1", "assistant_2"],
        },
    },
}


def _body(i: int) -> dict[str, object]:
    body: dict[str, object] = {
        "model": STRONG_MODEL,
        "messages": [{"role": "user", "content": _ANSWER.format(i=i)}],
        "temperature": 0.7,
        "max_completion_tokens": 1024,
    }
    if i % 2:
        body["response_format"] = _JUDGE
        body["messages"] = [
            {
                "role": "user",
                "content": f"[Instruction]\nTask {i}\n\n[Assistant 1's answer]\nSTRONG ANSWER: "
                f"a\n\n[Assistant 2's answer]\nTARGET ANSWER: b\n\nReply with JSON.",
            }
        ]
    return body


async def main(base_url: str, calls: int, concurrency: int) -> None:
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer floor", "Content-Type": "application/json"}
    todo = iter(range(calls))
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def worker() -> None:
            for i in todo:
                async with session.post(url, data=json.dumps(_body(i))) as response:
                    reply = json.loads(await response.read())
                    reply["choices"][0]["message"]["content"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
