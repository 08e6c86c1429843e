"""A person's review, from scripts (``codeclm review``): the metadata pool gates decoding
(``run --review metadata``, a LangGraph interrupt that survives kill -9), and kept pairs are
accepted, rejected or edited, kept with the run, and honoured by export and report.
The page (``codeclm view``) is tested in a real browser in test_view.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import codeclm
from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.bench.postgres_server import PASSWORD, PostgresServer
from codeclm.cli import main
from tests.conftest import mock_args, read_jsonl, run_cli

SETTINGS: dict[str, Any] = {"instructions": 12, "metadata": 6, "seed": 1, "backoff": 0}


@pytest.fixture
def mock_llm(realistic_llm: MockLLM) -> MockLLM:
    """This module's runs meet the misbehaving mock (conftest's ``realistic_llm``)."""
    return realistic_llm


LABELLED = ("SelfRubrics", "DecodedInstructions")


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_run_left_waiting() -> Iterator[None]:
    """A run waiting for review waits for ever: one a failed test left behind is stopped."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_LOGS: dict[int, Path] = {}
"""Each started process's stderr, by pid (read while it runs, and after)."""


def start_run(mock: MockLLM, seeds: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """``codeclm run … --review metadata`` in its own process (it is killed in a test)."""
    args = [sys.executable, "-m", "codeclm", "run", str(seeds), *mock_args(mock, out, **SETTINGS)]
    return _spawn([*args, "--review", "metadata", *extra], out.parent / f"{out.name}.run.log")


def resume_run(out: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "codeclm", "resume", str(out), "--quiet"]
    return _spawn(args, out.parent / f"{out.name}.resume.log")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True, env=os.environ.copy()
    )
    _LOGS[proc.pid] = log
    _STARTED.append(proc)
    return proc


def stderr_of(proc: subprocess.Popen[str]) -> str:
    return _LOGS[proc.pid].read_text()


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """The process's exit code and stderr, once it ends."""
    code = proc.wait(timeout=300)
    return code, stderr_of(proc)


def waits_for_review(proc: subprocess.Popen[str]) -> bool:
    """The run stopped at the pool's interrupt and polls for the approval: its graph stream
    ended there, so nothing after ``review_pool`` (rubrics, decoding) can run until then."""
    return "waiting for review of the metadata pool" in stderr_of(proc)


def interrupted(out: Path) -> bool:
    """The 'prepare' thread stands at review_pool's interrupt (a run reached the wait)."""

    async def look() -> bool:
        if not (out / "run.json").is_file():  # written as a run starts, naming its store
            return False
        async with codeclm.review_session(out) as session:
            snapshot = await session.view.prepare_snapshot()
            return bool(snapshot.interrupts)

    return asyncio.run(look())


def wait_for(check: Any, proc: subprocess.Popen[str], seconds: float = 300) -> None:
    """Until ``check()`` holds (an event: a line printed, a state stored), with a safety net
    far beyond what any machine takes."""
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, stderr_of(proc)
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def labels_asked(mock: MockLLM) -> set[tuple[str, str]]:
    """(use case, skills) of every Self-Rubrics and decode request the mock received."""
    return {
        (r.values["use_case"], r.values["skills"]) for r in mock.requests if r.schema in LABELLED
    }


def review(*args: str) -> int:
    return main(["review", *args])


def test_run_waits_for_the_pool_review_across_a_kill_and_decodes_only_the_approved_pool(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    proc = start_run(mock_llm, seeds_file, out)
    wait_for(lambda: waits_for_review(proc), proc)
    assert interrupted(out), "the 'prepare' thread stands at the review's interrupt"
    assert not labels_asked(mock_llm), "nothing decoded (nor rubrics written) before approval"

    # killed while waiting: a restart waits again, and still decodes nothing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = resume_run(out)
    wait_for(lambda: waits_for_review(proc), proc)
    assert interrupted(out) and not labels_asked(mock_llm)

    capsys.readouterr()
    assert review(str(out), "--json") == 0
    pool = json.loads(capsys.readouterr().out)["pool"]
    assert pool["phase"] == "waiting"
    entries = pool["entries"]
    assert len(entries) >= 3
    dropped, edited, also_dropped = entries[0], entries[1], entries[2]

    # a malformed change is refused with a message; the stored draft is unchanged
    assert review(str(out), "--edit", edited["id"], "use_case=") == 2
    assert review(str(out), "--edit", "m9999", "use_case=x") == 2
    assert review(str(out), "--drop", "m9999") == 2
    assert review(str(out), "--edit", edited["id"], "colour=red") == 2
    errors = capsys.readouterr().err
    assert "cannot be empty" in errors and "no metadata entry 'm9999'" in errors
    assert review(str(out), "--json") == 0
    assert json.loads(capsys.readouterr().out)["pool"]["draft"] == {
        "dropped": [],
        "edited": {},
        "added": [],
        "note": "",
        "reviewer": "",
    }

    assert review(str(out), "--drop", dropped["id"], also_dropped["id"]) == 0
    assert (
        review(str(out), "--edit", edited["id"], "use_case=Tax Filing", "skills=receipts, forms")
        == 0
    )
    assert review(str(out), "--add", "use_case=poetry", "skills=meter,rhyme") == 0
    assert proc.poll() is None, "changing the draft does not start decoding"
    assert not labels_asked(mock_llm)
    assert review(str(out), "--approve", "--note", "checked by hand") == 0
    code, err = finished(proc)
    assert code == 0, err

    approved = read_jsonl(out / "metadata.jsonl")
    approved_ids = {e["id"] for e in approved}
    assert not {dropped["id"], also_dropped["id"]} & approved_ids and "r0000" in approved_ids
    assert len(approved) == len(entries) - 1  # two dropped, one added: smaller than asked
    changed = next(e for e in approved if e["id"] == edited["id"])
    assert (changed["use_case"], changed["skills"]) == ("tax filing", ["receipts", "forms"])
    asked = labels_asked(mock_llm)
    assert asked <= {(e["use_case"], ", ".join(e["skills"])) for e in approved}
    assert ("tax filing", "receipts, forms") in asked and ("poetry", "meter, rhyme") in asked
    rows = read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl")
    assert rows and {row["metadata"]["id"] for row in rows} <= approved_ids
    record = json.loads((out / "run.json").read_text())
    assert record["pool_review"]["dropped"] == [dropped["id"], also_dropped["id"]]
    assert record["pool_review"]["note"] == "checked by hand"

    # the approved pool stands: a re-run that grows the budget (a new pass) neither regrows
    # the pool to --metadata nor waits for a review again
    grown = {**SETTINGS, "instructions": SETTINGS["instructions"] + 4}
    assert run_cli(seeds_file, mock_llm, out, review="metadata", **grown) == 0
    assert [e["id"] for e in read_jsonl(out / "metadata.jsonl")] == [e["id"] for e in approved]
    assert labels_asked(mock_llm) <= {(e["use_case"], ", ".join(e["skills"])) for e in approved}
    assert review(str(out), "--drop", edited["id"]) == 2
    assert "approved already" in capsys.readouterr().err


def test_approve_all_keeps_the_pool_as_built_and_review_is_refused_where_it_cannot_apply(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    proc = start_run(mock_llm, seeds_file, out)
    wait_for(lambda: waits_for_review(proc), proc)
    capsys.readouterr()
    assert review(str(out), "--json") == 0
    built = json.loads(capsys.readouterr().out)["pool"]["entries"]
    assert review(str(out), "--drop", built[0]["id"]) == 0
    # a person's draft is never set aside silently: --approve-all over it is refused …
    assert review(str(out), "--approve-all") == 2
    err = capsys.readouterr().err
    assert f"the draft drops {built[0]['id']}" in err and "--discard-draft" in err
    assert len(err.strip().splitlines()) == 1
    assert review(str(out), "--discard-draft") == 2, "only with --approve-all"
    # … unless it is said on purpose
    assert review(str(out), "--approve-all", "--discard-draft") == 0
    code, err = finished(proc)
    assert code == 0, err
    assert [e["id"] for e in read_jsonl(out / "metadata.jsonl")] == [e["id"] for e in built]

    # a run not started with --review metadata: nothing to approve; other methods refused
    plain = tmp_path / "plain"
    assert run_cli(seeds_file, mock_llm, plain, **SETTINGS) == 0
    assert review(str(plain), "--approve") == 2
    assert "--review metadata" in capsys.readouterr().err
    assert (
        run_cli(
            seeds_file,
            mock_llm,
            tmp_path / "si",
            method="self-instruct",
            review="metadata",
            **SETTINGS,
        )
        == 2
    )
    assert "makes no metadata pool" in capsys.readouterr().err


@pytest.fixture
def kept_run(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> Path:
    mock_llm.judge_rule = mixed_rule
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, **SETTINGS) == 0
    assert len(read_jsonl(out / "dataset.jsonl")) >= 3 and read_jsonl(out / "dropped.jsonl")
    return out


def test_pair_reviews_are_kept_with_the_run_and_export_and_report_honour_them(
    kept_run: Path,
    mock_llm: MockLLM,
    seeds_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = kept_run
    kept = read_jsonl(out / "dataset.jsonl")
    a, b, c = kept[0]["id"], kept[1]["id"], kept[2]["id"]
    not_kept = read_jsonl(out / "dropped.jsonl")[0]["id"]
    assert review(str(out), "--accept", a, "--note", "good one") == 0
    assert review(str(out), "--reject", b, "--note", "factually wrong") == 0
    edit = ["--edit", c, "response=A better answer.", "instruction=Fixed?"]
    assert review(str(out), *edit, "--reviewer", "tester") == 0

    # refused, with nothing stored: a pair not kept, empty text, unknown id, both verdicts
    capsys.readouterr()
    assert review(str(out), "--accept", not_kept) == 2
    assert review(str(out), "--edit", a, "response=") == 2
    assert review(str(out), "--reject", "nope-00") == 2
    assert review(str(out), "--accept", a, "--reject", a) == 2
    assert review(str(out), "--accept", c, not_kept) == 2  # the whole command is refused
    assert "not kept" in capsys.readouterr().err
    assert review(str(out), "--json") == 0
    pairs = json.loads(capsys.readouterr().out)["pairs"]
    assert set(pairs) == {a, b, c}
    assert pairs[a]["verdict"] == "accepted" and pairs[a]["note"] == "good one"
    assert pairs[b]["verdict"] == "rejected"
    assert pairs[c] | {"reviewed_at": ""} == {
        "id": c,
        "verdict": "accepted",
        "instruction": "Fixed?",
        "response": "A better answer.",
        "note": "",
        "reviewer": "tester",
        "reviewed_at": "",
    }

    # a re-run of the same command rewrites the outputs, never the reviews
    assert run_cli(seeds_file, mock_llm, out, **SETTINGS) == 0
    assert main(["export", str(out), "--format", "chat", "--out", str(tmp_path / "c.jsonl")]) == 0
    chat = read_jsonl(tmp_path / "c.jsonl")
    assert len(chat) == len(kept) - 1  # b left out
    assert chat[1]["messages"] == [  # c follows a once b is gone
        {"role": "user", "content": "Fixed?"},
        {"role": "assistant", "content": "A better answer."},
    ]
    target = tmp_path / "s.json"
    assert main(["export", str(out), "--format", "sharegpt", "--out", str(target)]) == 0
    ids = [r["id"] for r in json.loads(target.read_text())]
    assert ids == [row["id"] for row in kept if row["id"] != b]
    assert (
        main(
            [
                "export",
                str(out),
                "--format",
                "alpaca",
                "--reviewed-only",
                "--out",
                str(tmp_path / "a.json"),
            ]
        )
        == 0
    )
    alpaca = json.loads((tmp_path / "a.json").read_text())
    assert [r["output"] for r in alpaca] == [kept[0]["response"], "A better answer."]

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    figures = json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]
    assert figures["reviews"]["pairs"] == {
        "accepted": 2,
        "rejected": 1,
        "edited": 1,
        "not_reviewed": len(kept) - 3,
    }
    page = (tmp_path / "report" / "report.md").read_text()
    assert "factually wrong" in page and "kept pairs rejected" in page


def test_a_run_kept_in_postgresql_waits_for_its_review_and_takes_the_approval(
    mock_llm: MockLLM,
    seeds_file: Path,
    tmp_path: Path,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "pg"
    proc = start_run(mock_llm, seeds_file, out, "--store", postgres.url(), "--run", "review_pg")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # run.json names the store without it
    wait_for(lambda: waits_for_review(proc), proc)
    assert not labels_asked(mock_llm) and not (out / "reviews.sqlite").exists()
    assert review(str(out), "--drop", "m0000") == 0
    assert review(str(out), "--approve") == 0
    code, err = finished(proc)
    assert code == 0, err
    approved = read_jsonl(out / "metadata.jsonl")
    assert "m0000" not in {e["id"] for e in approved}
    assert labels_asked(mock_llm) <= {(e["use_case"], ", ".join(e["skills"])) for e in approved}
    assert not (out / "reviews.sqlite").exists(), "the review is kept in the database"
