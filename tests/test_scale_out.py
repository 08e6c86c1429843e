"""One run in PostgreSQL (``--store``): the same data as SQLite, shared by many workers.

Against a real PostgreSQL server (Debian's, started by the ``postgres`` fixture) and the
loopback mock; workers are real ``codeclm worker`` processes.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from codeclm.bench.mock_llm import MockLLM, Request
from codeclm.bench.postgres_server import PASSWORD, PostgresServer
from codeclm.cli import main
from tests.conftest import SECRET, mock_args, read_jsonl, run_cli, write_seeds

SEEDS = [
    "Write a Python function that merges two sorted lists.",
    "Explain how to reset a forgotten email password.",
    "Draft a polite reply to a customer asking for a refund.",
    "Summarise the causes of the French Revolution in three bullet points.",
]


def _seeds(tmp_path: Path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEEDS)


def _schema_rows(postgres: PostgresServer, run: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(postgres.url()) as conn:
        conn.execute(f'SET search_path TO "codeclm_{run}"')
        return list(conn.execute(sql).fetchall())


def _misbehave(mock: MockLLM, at_random: bool) -> None:
    """The misbehaviours of real models and servers (``MockLLM.realistic``): only those a
    model repeats for the same request (short or repeated lists, cut replies), or also what
    a busy server does at random (wrapped JSON, refusals, 429s, 503s)."""
    realistic = MockLLM.realistic(retry_after=0.1)
    names = ["short_list_rate", "repeat_rate", "cut_rate"]
    if at_random:
        names += ["wrap_rate", "refusal_rate", "rate_limit_rate", "retry_after", "error_rate"]
    for name in names:
        setattr(mock, name, getattr(realistic, name))


def _answered(calls: list[Request]) -> int:
    """Calls that got a usable answer (a retried 429, 503 or refusal is not one)."""
    return sum(r.fault in (None, "wrap") for r in calls)


def _forks(postgres: PostgresServer, run: str) -> list[tuple[object, ...]]:
    """Checkpoints of one thread that share a parent: a forked history (none, ever)."""
    return _schema_rows(
        postgres,
        run,
        "SELECT thread_id, parent_checkpoint_id FROM checkpoints GROUP BY 1, 2 HAVING count(*) > 1",
    )


def test_a_run_in_postgresql_writes_what_a_sqlite_run_writes(
    tmp_path: Path, mock_llm: MockLLM, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _misbehave(mock_llm, at_random=True)  # short lists, wrapped JSON, refusals, 429s, 503s
    seeds = _seeds(tmp_path)
    options = {"instructions": 8, "concurrency": 4, "backoff": 0}
    assert run_cli(seeds, mock_llm, tmp_path / "local", **options) == 0
    answered_local = _answered(mock_llm.calls())

    out = tmp_path / "shared"
    assert run_cli(seeds, mock_llm, out, store=postgres.url(), run="same", **options) == 0
    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "local/dataset.jsonl").read_bytes()
    assert len(read_jsonl(out / "dataset.jsonl")) > 0
    # the same requests answered again: none came from the other run's cache
    assert _answered(mock_llm.calls()) == 2 * answered_local
    assert {r.fault for r in mock_llm.calls()} > {None}  # the faults did happen
    assert not (out / "checkpoints.sqlite").exists()  # the state is in PostgreSQL

    record = json.loads((out / "run.json").read_text())
    assert record["run_name"] == "same"
    assert record["store"] == f"postgresql://codeclm@127.0.0.1:{postgres.port}/codeclm"
    # the password appears nowhere: not in the folder, the output or the stored record
    seen = capsys.readouterr()
    for text in [seen.out, seen.err, *(p.read_text(errors="replace") for p in out.rglob("*"))]:
        assert PASSWORD not in text and SECRET not in text
    stored = _schema_rows(postgres, "same", "SELECT value FROM codeclm_run")
    assert all(PASSWORD not in str(value) for (value,) in stored)

    # every thread has one line of checkpoints: no two share a parent
    assert _forks(postgres, "same") == []

    # a second run of the same command finds everything done: no call is made again
    before = len(mock_llm.requests)
    assert run_cli(seeds, mock_llm, out, store=postgres.url(), run="same", **options) == 0
    assert len(mock_llm.requests) == before
    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "local/dataset.jsonl").read_bytes()
    # the store refuses other settings for the same run, as a folder does
    changed = {**options, "threshold": 5}
    assert run_cli(seeds, mock_llm, out, store=postgres.url(), run="same", **changed) == 2
    # any machine writes the same outputs from the store: a worker with --out
    other = tmp_path / "elsewhere"
    capsys.readouterr()
    assert main(["worker", "--store", postgres.url(), "--run", "same", "--out", str(other)]) == 0
    assert len(mock_llm.requests) == before
    said = capsys.readouterr().out
    assert "run same has no work left; this worker finished 0 instructions" in said
    for name in ("dataset.jsonl", "dropped.jsonl", "failed.jsonl", "metadata.jsonl"):
        assert (other / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def _codeclm(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "codeclm", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_three_workers_one_killed_give_the_single_process_dataset(
    tmp_path: Path, mock_llm: MockLLM, postgres: PostgresServer
) -> None:
    """Three workers on one run, one ``kill -9``ed mid-run: its threads are taken up after
    its leases expire; the data is byte-identical to one SQLite process's, no thread's
    history forks, and the only calls paid twice are the ones it had in flight.

    Against a stingy model (lists of 1 to 3 items): the budget must still come out whole in
    one pass, or the shared run's extra pass would differ from the single process's. The
    kill is an event, not a guess of time: the mock kills the victim when its third request
    arrives (that request is in flight, never answered)."""
    seeds = _seeds(tmp_path)
    mock_llm.latency = 0.05  # calls overlap, so the kill lands in the middle of nodes
    _misbehave(mock_llm, at_random=False)  # the same for the same request: counts compare
    mock_llm.list_cap = 3
    options = {"instructions": 24, "concurrency": 4}
    assert run_cli(seeds, mock_llm, tmp_path / "local", **options) == 0
    single = len(mock_llm.requests)
    mock_llm.requests.clear()

    url, out = postgres.url(), tmp_path / "shared"
    common = ["--lease-seconds", "2"]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [
        _codeclm(
            *("worker", "--store", url, "--run", "kill3", "--concurrency", "4", *common),
            log=log,
        )
        for log in logs
    ]  # started first: a worker waits for its run to appear
    victim = workers[0]
    victim_id = f"{socket.gethostname()}:{victim.pid}"
    mock_llm.stop_worker, mock_llm.stop_worker_at = victim_id, 3
    for log in logs:  # both are up and polling the store before the run begins
        _wait_for(lambda log=log: "waiting for the run" in log.read_text(), 300, "workers up")
    runner = _codeclm(
        "run",
        str(seeds),
        *mock_args(mock_llm, out, store=url, run="kill3", **options),
        *common,
        log=tmp_path / "run.log",
    )
    assert victim.wait(timeout=300) == -signal.SIGKILL, logs[0].read_text()
    assert runner.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()
    assert workers[1].wait(timeout=300) == 0, logs[1].read_text()

    local = (tmp_path / "local/dataset.jsonl").read_bytes()
    assert (out / "dataset.jsonl").read_bytes() == local
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["kept"] + counts["dropped"] + counts["failed"] == 24
    assert _forks(postgres, "kill3") == []
    for log in tmp_path.glob("*.log"):  # the password reaches no process's output
        assert PASSWORD not in log.read_text(errors="replace")
    calls = mock_llm.calls()
    # Paid twice: only what the victim had in flight or answered but not yet cached when it
    # died. A request holds its slot until its reply is cached, so that is at most its
    # --concurrency (4), one of them the third request, never answered (not logged).
    assert len(calls) - single <= 4 - 1, (len(calls), single)
    # every worker did some of the work
    assert len({r.worker for r in calls}) == 3


def test_a_store_that_cannot_be_opened_is_one_line_without_the_password(
    tmp_path: Path,
    mock_llm: MockLLM,
    postgres: PostgresServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeds = _seeds(tmp_path)
    wrong = postgres.url(password="not-the-password-55")
    assert run_cli(seeds, mock_llm, tmp_path / "a", store=wrong) == 2
    err = capsys.readouterr().err
    assert err.startswith("codeclm: error: cannot open the store postgresql://codeclm@127.0.0.1:")
    assert "password authentication failed" in err and "not-the-password-55" not in err
    assert err.count("\n") == 1

    closed = f"postgresql://codeclm:{PASSWORD}@127.0.0.1:1/codeclm"
    assert main(["worker", "--store", closed, "--run", "x", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Connection refused" in err and PASSWORD not in err and err.count("\n") == 1

    # a worker for a run that never started waits --wait seconds, then says how to start it
    assert main(["worker", "--store", postgres.url(), "--run", "nope", "--wait", "0"]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err and "codeclm run" in err and PASSWORD not in err

    # a folder's run.json names the store without its password: without PGPASSWORD, a hint
    folder = tmp_path / "recorded"
    folder.mkdir()
    store = f"postgresql://codeclm@127.0.0.1:{postgres.port}/codeclm"
    (folder / "run.json").write_text(json.dumps({"store": store, "run_name": "x"}))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    assert main(["inspect", str(folder)]) == 2
    assert "set PGPASSWORD or use ~/.pgpass" in capsys.readouterr().err

    # a run name the store cannot key, and a store that is not PostgreSQL
    assert run_cli(seeds, mock_llm, tmp_path / "b", store=postgres.url(), run="a b/c") == 2
    assert run_cli(seeds, mock_llm, tmp_path / "c", store="sqlite:///x.db") == 2
    assert "expected a postgresql://" in capsys.readouterr().err


def test_a_worker_whose_lease_ran_out_cannot_write_behind_its_successor(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker paused past its lease (GC, a frozen VM) wakes up after another took its
    thread: its next checkpoint write is refused, so the thread's history never forks."""
    import asyncio

    from langgraph.graph import END, START, StateGraph
    from pydantic import BaseModel
    from typing_extensions import TypedDict

    import codeclm.store.postgres as pg
    from codeclm.graph import thread_config
    from codeclm.store import LeaseLost, StoreSpec, open_store

    class Counter(TypedDict):
        n: int

    class Start(BaseModel):
        n: int = 0

    builder = StateGraph(Counter)
    builder.add_node("one", lambda s: {"n": s["n"] + 1})
    builder.add_node("two", lambda s: {"n": s["n"] + 10})
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", END)
    spec = StoreSpec(url=postgres.url(), run="fence", lease_seconds=30)
    thread = thread_config("t1")

    async def scenario() -> None:
        monkeypatch.setattr(pg, "worker_id", lambda: "worker-a")
        async with open_store(spec, None) as a:
            monkeypatch.setattr(pg, "worker_id", lambda: "worker-b")
            async with open_store(spec, None) as b:
                await a.board.reopen()
                await a.board.publish([("t1", Start)])
                assert (await a.board.claim()) is not None  # A holds t1
                graph_a = builder.compile(checkpointer=a.saver)
                graph_b = builder.compile(checkpointer=b.saver)
                await graph_a.ainvoke({"n": 0}, thread, interrupt_after=["one"])
                with pytest.raises(LeaseLost):  # B never claimed it: B cannot write
                    await graph_b.ainvoke(None, thread)
                async with a.pool.connection() as conn:  # A freezes past its lease
                    await conn.execute(
                        "UPDATE codeclm_leases SET expires_at = now() - interval '1 second'"
                    )
                claimed = await b.board.claim()
                assert claimed is not None and claimed[0] == "t1"  # B takes the thread up
                with pytest.raises(LeaseLost):  # A wakes up: its write is refused
                    await graph_a.ainvoke(None, thread)
                assert (await graph_b.ainvoke(None, thread))["n"] == 11  # B goes on
                await b.board.finish("t1", "kept")

    asyncio.run(scenario())
    assert _forks(postgres, "fence") == []
    assert _schema_rows(
        postgres, "fence", "SELECT outcome FROM codeclm_leases WHERE thread_id = 't1'"
    ) == [("kept",)]


def test_inspect_step_resume_report_and_export_on_a_postgresql_run(
    tmp_path: Path,
    mock_llm: MockLLM,
    postgres: PostgresServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mock_llm.judge_rule = lambda instruction: (5, 5)  # every instruction is dropped
    out = tmp_path / "run"
    options = {"instructions": 2, "metadata": 2, "max_iterations": 2}
    assert run_cli(_seeds(tmp_path), mock_llm, out, store=postgres.url(), run="dbg", **options) == 0
    # run.json names the store without its password: libpq takes it from PGPASSWORD
    monkeypatch.setenv("PGPASSWORD", PASSWORD)

    def json_of(*argv: str) -> Any:
        capsys.readouterr()
        assert main(list(argv)) == 0
        return json.loads(capsys.readouterr().out)

    listing = json_of("inspect", str(out), "--json")
    assert listing["prepare"] == "done" and listing["counts"] == {"dropped": 2}
    thread = listing["threads"][0]["id"]
    # from a machine without the folder: the store and the run's name are enough
    elsewhere = ["--store", postgres.url(), "--run", "dbg"]
    assert json_of("inspect", str(tmp_path / "none"), "--json", *elsewhere) == listing
    detail = json_of("inspect", str(out), thread, "--json")
    assert [s["nodes"] for s in detail["history"]][:2] == [["answer"], ["judge"]]

    # step: fork after the first judgement with another action, run it to the end
    mock_llm.judge_rule = lambda instruction: (9, 2) if "twist" in instruction else (5, 5)
    capsys.readouterr()
    argv = ["step", str(out), thread, "--from", detail["history"][1]["checkpoint"]]
    argv += ["--set", 'candidate_actions=["add a twist ending"]']
    assert main([*argv, "--until", "end", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["status"] == "kept"
    counts = json_of("inspect", str(out), "--json")["counts"]
    assert counts == {"kept": 1, "dropped": 1}

    # a thread a live worker holds cannot be stepped (two writers would fork it)
    with psycopg.connect(postgres.url()) as conn:
        conn.execute('SET search_path TO "codeclm_dbg"')
        conn.execute(
            "UPDATE codeclm_leases SET owner = 'elsewhere:1', "
            "expires_at = now() + interval '1 minute' WHERE thread_id = %s",
            (thread,),
        )
    capsys.readouterr()
    assert main(["step", str(out), thread, "--json"]) == 2
    assert "being run by a worker" in capsys.readouterr().err
    with psycopg.connect(postgres.url()) as conn:
        conn.execute('SET search_path TO "codeclm_dbg"')
        conn.execute("UPDATE codeclm_leases SET owner = NULL, expires_at = NULL")

    # resume rewrites the outputs from the store (the stepped pair now kept), no call paid
    calls = len(mock_llm.requests)
    assert main(["resume", str(out), "--quiet"]) == 0
    assert len(mock_llm.requests) == calls
    assert [row["id"] for row in read_jsonl(out / "dataset.jsonl")] == [thread]
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.json").is_file()
    assert main(["export", str(out), "--format", "alpaca", "--out", str(tmp_path / "a.json")]) == 0
    assert len(json.loads((tmp_path / "a.json").read_text())) == 1


def test_eval_keeps_its_threads_in_postgresql_and_matches_sqlite(
    tmp_path: Path, mock_llm: MockLLM, postgres: PostgresServer
) -> None:
    from tests.test_eval import ITEMS, eval_args, scripted

    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        "".join(
            json.dumps({"id": i, "instruction": f"{kind}: question {i}", "category": c}) + "\n"
            for i, c, kind in ITEMS
        )
    )
    mock_llm.judge_rule = scripted
    assert main(eval_args(mock_llm, bench, tmp_path / "local")) == 0
    calls = len(mock_llm.requests)
    shared = eval_args(mock_llm, bench, tmp_path / "shared", "--store", postgres.url())
    assert main([*shared, "--run", "ev"]) == 0
    local = json.loads((tmp_path / "local/eval.json").read_text())
    record = json.loads((tmp_path / "shared/eval.json").read_text())
    assert record["result"] == local["result"] and record["run_name"] == "ev"
    assert not (tmp_path / "shared/checkpoints.sqlite").exists()
    judged = _schema_rows(
        postgres, "ev", "SELECT count(*) FROM codeclm_leases WHERE outcome = 'judged'"
    )
    assert judged == [(len(ITEMS),)]
    # again: every item is judged already, no call is made
    assert main([*shared, "--run", "ev"]) == 0
    assert len(mock_llm.requests) == 2 * calls
    # the name holds an evaluation: a run there is refused
    seeds = _seeds(tmp_path)
    assert run_cli(seeds, mock_llm, tmp_path / "r", store=postgres.url(), run="ev") == 2


def test_ctrl_c_on_a_worker_hands_its_threads_back_at_once(
    tmp_path: Path, mock_llm: MockLLM, postgres: PostgresServer
) -> None:
    """A worker stopped with Ctrl-C releases its leases as it exits (the others need not
    wait for them to expire), and the run still completes."""
    mock_llm.latency = 0.1  # calls overlap: the worker has some in flight
    _misbehave(mock_llm, at_random=True)
    url, out = postgres.url(), tmp_path / "shared"
    worker = _codeclm(
        "worker",
        "--store",
        url,
        "--run",
        "ctrlc",
        "--concurrency",
        "4",
        "--quiet",
        log=tmp_path / "worker.log",
    )
    worker_id = f"{socket.gethostname()}:{worker.pid}"
    runner = _codeclm(
        "run",
        str(_seeds(tmp_path)),
        *mock_args(mock_llm, out, store=url, run="ctrlc", instructions=16, concurrency=4),
        log=tmp_path / "run.log",
    )
    _wait_for(
        lambda: sum(r.worker == worker_id and r.answered_at is None for r in mock_llm.calls()) > 0,
        120,
        "the worker to have calls in flight",
    )
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=60) == 130, (tmp_path / "worker.log").read_text()
    assert "interrupted" in (tmp_path / "worker.log").read_text()
    held = _schema_rows(
        postgres, "ctrlc", f"SELECT count(*) FROM codeclm_leases WHERE owner = '{worker_id}'"
    )
    assert held == [(0,)]
    assert runner.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()
    assert len(read_jsonl(out / "dataset.jsonl")) == 16


def test_a_worker_frozen_past_its_lease_wakes_up_without_forking_a_thread(
    tmp_path: Path, mock_llm: MockLLM, postgres: PostgresServer
) -> None:
    """SIGSTOP a worker mid-run (a frozen VM, a long GC pause) until its leases expire and
    the other worker has taken its threads, then SIGCONT it: its late writes are refused,
    it goes on with other threads, and the data equals one process's."""
    seeds = _seeds(tmp_path)
    mock_llm.latency = 0.1
    _misbehave(mock_llm, at_random=True)
    options = {"instructions": 16, "concurrency": 4, "backoff": 0}
    assert run_cli(seeds, mock_llm, tmp_path / "local", **options) == 0
    mock_llm.requests.clear()

    url, out = postgres.url(), tmp_path / "shared"
    common = ["--lease-seconds", "2", "--quiet"]
    sleeper = _codeclm(
        "worker",
        "--store",
        url,
        "--run",
        "frozen",
        "--concurrency",
        "4",
        *common,
        log=tmp_path / "sleeper.log",
    )
    sleeper_id = f"{socket.gethostname()}:{sleeper.pid}"
    runner = _codeclm(
        "run",
        str(seeds),
        *mock_args(mock_llm, out, store=url, run="frozen", **options),
        *common,
        log=tmp_path / "run.log",
    )
    _wait_for(
        lambda: sum(r.worker == sleeper_id for r in mock_llm.calls()) >= 4,
        120,
        "the sleeper to be working",
    )
    sleeper.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    _wait_for(  # its leases expired and the run took its threads over
        lambda: (
            time.monotonic() - frozen_at > 4
            and not _schema_rows(
                postgres,
                "frozen",
                f"SELECT 1 FROM codeclm_leases WHERE owner = '{sleeper_id}' AND outcome IS NULL",
            )
        ),
        60,
        "the sleeper's threads to be taken over",
    )
    sleeper.send_signal(signal.SIGCONT)
    assert runner.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()
    assert sleeper.wait(timeout=60) == 0, (tmp_path / "sleeper.log").read_text()
    # it woke up inside threads that were no longer its own: the database refused the writes
    assert "write refused" in (tmp_path / "sleeper.log").read_text()

    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "local/dataset.jsonl").read_bytes()
    assert _forks(postgres, "frozen") == []


def test_a_database_that_goes_away_mid_run_is_one_line_and_the_run_goes_on_later(
    tmp_path: Path, mock_llm: MockLLM
) -> None:
    server = PostgresServer().start()
    try:
        mock_llm.latency = 0.2
        out = tmp_path / "run"
        runner = _codeclm(
            "run",
            str(_seeds(tmp_path)),
            *mock_args(mock_llm, out, store=server.url(), run="gone", instructions=16),
            log=tmp_path / "run.log",
        )
        _wait_for(lambda: len(mock_llm.requests) > 20, 120, "the run to be under way")
        subprocess.run(
            [
                *server.as_user,
                str(server.bin / "pg_ctl"),
                "-D",
                str(server.data),
                "-m",
                "immediate",
                "stop",
            ],
            check=True,
            capture_output=True,
        )
        code = runner.wait(timeout=120)
        log = (tmp_path / "run.log").read_text()
        assert code == 1, log
        assert "Traceback" not in log and PASSWORD not in log
        assert log.strip().splitlines()[-1].endswith("run the same command again to continue")
    finally:
        server.stop()


def test_workers_that_start_together_set_the_schema_up_once_without_deadlock(
    postgres: PostgresServer,
) -> None:
    """Eight processes opening a new run's store at once: one sets it up, the others wait
    their turn (LangGraph's set-up builds indexes CONCURRENTLY, which waits for every open
    transaction: a worker blocked on a lock held one and the two deadlocked)."""
    import asyncio

    from codeclm.store import StoreSpec, open_store

    spec = StoreSpec(url=postgres.url(), run="together")

    async def open_one() -> bool:
        async with open_store(spec, None) as store:
            return await store.read_record() is None

    async def all_at_once() -> list[bool]:
        return await asyncio.gather(*(open_one() for _ in range(8)))

    assert asyncio.run(all_at_once()) == [True] * 8
    migrations = _schema_rows(postgres, "together", "SELECT count(*) FROM checkpoint_migrations")
    assert migrations[0][0] > 0


def _lease_expiry(postgres: PostgresServer) -> object:
    ((expires,),) = _schema_rows(
        postgres, "held", "SELECT expires_at FROM codeclm_leases WHERE thread_id = 't1'"
    )
    return expires


def test_a_held_thread_stays_held_while_its_holder_lives(postgres: PostgresServer) -> None:
    """``step`` holds a thread (finished ones too) for as long as a person takes: the
    heartbeat renews every lease its process holds, so a slow session is not refused."""
    import asyncio

    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    from codeclm.graph import thread_config
    from codeclm.store import StoreSpec, open_store

    class Counter(TypedDict):
        n: int

    builder = StateGraph(Counter)
    builder.add_node("one", lambda s: {"n": s["n"] + 1})
    builder.add_edge(START, "one")
    builder.add_edge("one", END)
    spec = StoreSpec(url=postgres.url(), run="held", lease_seconds=0.6)

    async def scenario() -> int:
        async with open_store(spec, None) as store:
            await store.board.reopen()
            await store.board.publish([("t1", lambda: {"n": 0})])
            assert await store.board.claim() is not None
            await store.board.finish("t1", "kept")  # a finished thread ...
            assert await store.board.hold("t1")  # ... that a person steps
            # the person takes three leases long: wait for the heartbeat's third renewal
            expiries = {_lease_expiry(postgres)}
            while len(expiries) < 4:
                await asyncio.sleep(0.05)
                expiries.add(_lease_expiry(postgres))
            graph = builder.compile(checkpointer=store.saver)
            result = await graph.ainvoke({"n": 0}, thread_config("t1"))
            await store.board.release("t1")
            return int(result["n"])

    assert asyncio.run(scenario()) == 1
