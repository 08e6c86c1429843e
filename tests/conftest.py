"""Shared fixtures: the loopback mock, and a helper running ``codeclm run`` against it."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM
from codeclm.bench.postgres_server import PostgresServer
from codeclm.cli import main

# A suite started in the background by a shell without job control (``make test &`` in a
# script) inherits SIGINT ignored, and so would the runs its tests stop with Ctrl-C's
# signal: a handler here makes the children start with the default again (an ignored
# signal stays ignored across exec; a handled one does not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SECRET = "sk-test-DO-NOT-LEAK-4242"
BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
#: The fields of a dataset.jsonl row (README, "Outputs"), whatever the method.
DATASET_ROW_KEYS = frozenset(
    {
        "id",
        "instruction",
        "response",
        "response_source",
        "metadata",
        "iteration",
        "scores",
        "seed_ids",
        "actions",
        "basic_instruction",
        "messages",
        "target_refused",
        "target_cut",
    }
)


#: Fixtures that mean a test needs a real server or program, by the marker that selects it
#: (``pytest -m "not postgres and not browser"`` runs the rest; see README, Development).
NEEDS = {"postgres": "postgres", "browser": "browser", "page": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the real servers its fixtures start (PostgreSQL, Chromium)."""
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in NEEDS:
                item.add_marker(NEEDS[fixture])


@pytest.fixture
def mock_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockLLM]:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    mock = MockLLM().start()
    yield mock
    mock.stop()


@pytest.fixture
def realistic_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockLLM]:
    """The mock misbehaving as real models do (``MockLLM.realistic``: short and repeated
    lists, wrapped JSON, refusals, cut replies, 429s and 503s). A module whose behaviour must
    hold through all of it overrides ``mock_llm`` with this one."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    mock = realistic().start()
    yield mock
    mock.stop()


def realistic(**overrides: Any) -> MockLLM:
    """``MockLLM.realistic`` asking for 0.1 s on its 429s (not 0.5): each one pauses every
    request of the role, and the tests make thousands of calls."""
    return MockLLM.realistic(**{"retry_after": 0.1, **overrides})


def write_seeds(path: Path, instructions: list[str]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "instruction": text}) + "\n"
            for i, text in enumerate(instructions)
        )
    )
    return path


def mock_args(mock: MockLLM, out: Path, **options: Any) -> list[str]:
    """Command-line arguments pointing both roles at the mock, plus ``options`` as flags."""
    args = [
        "--out",
        str(out),
        "--strong-model",
        STRONG_MODEL,
        "--strong-base-url",
        mock.base_url,
        "--target-model",
        TARGET_MODEL,
        "--target-base-url",
        mock.base_url,
        "--quiet",
    ]
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        args += [flag] if value is True else [flag, str(value)]
    return args


def run_cli(seeds: Path | None, mock: MockLLM, out: Path, **options: Any) -> int:
    head = ["run"] + ([str(seeds)] if seeds is not None else [])
    return main(head + mock_args(mock, out, **options))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def seeds_file(tmp_path: Path) -> Path:
    return write_seeds(
        tmp_path / "seeds.jsonl",
        [
            "How do I reverse a list in Python?",
            "Write a limerick about a cat who loves rain.",
            "What should I consider when renting my first flat?",
            "Explain compound interest to a teenager.",
        ],
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (Debian's binaries, a temporary folder)."""
    server = PostgresServer().start()
    yield server
    server.stop()


#: Prices the cost and batch tests (and the cost benchmark) set, USD per million tokens.
STRONG_PRICE = {"input": 2.5, "output": 10.0}
TARGET_PRICE = {"input": 0.5, "output": 1.5, "cached_input": 0.25}


def mock_roles(mock: MockLLM, **prices: dict[str, float]) -> dict[str, Any]:
    """Both roles on the mock, as ``codeclm.run`` keyword arguments, each with its price."""
    roles: dict[str, Any] = {
        "strong": {"model": STRONG_MODEL, "base_url": mock.base_url},
        "target": {"model": TARGET_MODEL, "base_url": mock.base_url},
    }
    for role, price in prices.items():
        roles[role]["price"] = price
    return roles


def priced_roles(mock: MockLLM) -> dict[str, Any]:
    """``mock_roles`` with both test prices."""
    return mock_roles(mock, strong=STRONG_PRICE, target=TARGET_PRICE)
