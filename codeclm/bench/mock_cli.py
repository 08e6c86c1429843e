"""``python -m codeclm.bench.mock_cli``: the loopback mock in a process of its own (benchmarks
start it so, and the mock's CPU is not counted as the client's); its base URL on the first
line of its output."""

from __future__ import annotations

import argparse
import asyncio
import sys

from codeclm.bench.mock_llm import MockLLM, mixed_rule


def main(argv: list[str] | None = None) -> None:
    """Serve the mock from this process until killed; print its base URL on the first line."""
    parser = argparse.ArgumentParser(prog="python -m codeclm.bench.mock_cli")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--slots", type=int, default=None, help="calls served at once")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of HTTP 503s")
    parser.add_argument("--invalid-json-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of HTTP 429s")
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="the Retry-After of those 429s (seconds)"
    )
    parser.add_argument("--mixed", action="store_true", help="judge by mixed_rule (loops, drops)")
    parser.add_argument(
        "--label-variants",
        action="store_true",
        help="spell a use case (and a skill) differently for some seeds, as real encoders do",
    )
    parser.add_argument(
        "--answer-tokens",
        type=int,
        default=0,
        help="answers of half to 1.5 times this many tokens, as a capable model writes "
        "(default: the instruction echoed)",
    )
    parser.add_argument("--stingy", action="store_true", help="every list reply has 1 to 3 items")
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="misbehave as real models do: short and repeated lists, wrapped JSON, refusals, "
        "cut replies, 429s and 503s (MockLLM.realistic)",
    )
    args = parser.parse_args(argv)
    make = MockLLM.realistic if args.realistic else MockLLM
    rates = {
        name: getattr(args, name)
        for name in ("error_rate", "invalid_json_rate", "hang_rate", "rate_limit_rate")
        if getattr(args, name)
    }
    mock = make(
        record=False,
        latency=args.latency,
        slots=args.slots,
        **rates,
        list_cap=3 if args.stingy else None,
        retry_after=args.retry_after,
        answer_tokens=args.answer_tokens,
    )
    if args.mixed:
        mock.judge_rule = mixed_rule
    mock.label_variants = args.label_variants

    async def serve() -> None:
        server = await mock.serve(args.port)
        print(mock.base_url, flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
