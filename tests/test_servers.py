"""Servers that set the pace (issue #24): a gate per server that adapts to what it takes
(AIMD on 429s, on 503s and on queueing latency), and a breaker per endpoint that stops the
run when every request fails, and only then."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import codeclm
from codeclm.bench.mock_llm import STRONG_MODEL, MockLLM
from codeclm.cli import main
from codeclm.cli.flags import EXIT_BROKEN
from codeclm.config import RoleConfig
from codeclm.llm.admission import PROBE_AFTER, START, AdaptiveLimit, Ticket
from codeclm.llm.breaker import TRIP_AFTER, Breaker
from codeclm.llm.latency import TOKEN_WEIGHT, LatencyWatch, Pace
from codeclm.llm.limits import Endpoint, RoleLimits, ServerBusy, rate_window_spent
from tests.conftest import mock_args, mock_roles, read_jsonl, run_cli, write_seeds

SEEDS = [f"Explain topic {i} to a new support agent, with one example." for i in range(8)]


def _seeds(tmp_path: Path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEEDS)


# ---- the gate, alone ---------------------------------------------------------------------
def test_the_gate_holds_requests_to_its_limit_first_come_first_served() -> None:
    gate = AdaptiveLimit("server", ceiling=64)
    order: list[int] = []
    release = asyncio.Event()

    async def request(i: int) -> None:
        async with gate.slot():
            order.append(i)
            await release.wait()

    async def scenario() -> None:
        tasks = [asyncio.create_task(request(i)) for i in range(20)]
        while len(order) < START:
            await asyncio.sleep(0)
        for _ in range(10):  # nothing more gets in while the first START are in flight
            await asyncio.sleep(0)
        assert order == list(range(START)) and gate.in_flight == START
        release.set()
        await asyncio.gather(*tasks)
        assert order == list(range(20)) and gate.in_flight == 0

    asyncio.run(scenario())


def test_a_429_cuts_once_a_burst_to_one_below_the_level_it_was_refused_at() -> None:
    gate = AdaptiveLimit("server", ceiling=64)
    gate.limit, gate.ramping = 16.0, False
    gate.calm_level = 64  # latency known calm up to the ceiling: no dip to learn it
    burst = [Ticket(gate.epoch, in_flight=n) for n in (12, 9, 15)]
    gate.refused(burst[0], 429)
    assert gate.current == 11 and gate.refused_at == 12
    gate.refused(burst[1], 429)  # the same burst, refused lower: it refines, not cuts
    gate.refused(burst[2], 429)
    assert gate.current == 8 and gate.stats.cuts == {"429": 1} and gate.stats.refused == 3
    # growing back to the level refused at takes PROBE_AFTER replies, not a round's worth
    for _ in range(PROBE_AFTER - 1):
        gate.answered(Ticket(gate.epoch, in_flight=8), "m/text", 10)
    assert gate.current == 8
    gate.answered(Ticket(gate.epoch, in_flight=8), "m/text", 10)
    assert gate.current == 9


def test_a_few_503s_are_noise_and_many_are_overload() -> None:
    gate = AdaptiveLimit("server", ceiling=64)
    gate.limit, gate.ramping = 32.0, False
    gate.calm_level = 64  # latency known calm up to the ceiling: no dip to learn it
    for i in range(400):  # one in twenty (more than the 3% random ones of a busy provider)
        if i % 20 == 0:
            gate.refused(Ticket(gate.epoch, 32), 503)
        else:
            gate.answered(Ticket(gate.epoch, 32), "m/text", 10)
    assert gate.current >= 32 and not gate.stats.cuts
    burst = [Ticket(gate.epoch, 32) for _ in range(10)]
    for ticket in burst:  # then ten in a row: overloaded (one cut: one burst)
        gate.refused(ticket, 503)
    assert gate.current == 24 and gate.stats.cuts == {"503": 1}


def test_a_429_at_a_level_the_server_took_is_a_rate_limit_not_a_cut() -> None:
    gate = AdaptiveLimit("server", ceiling=64)
    gate.limit, gate.ramping = 32.0, False
    gate.calm_level = 64
    for _ in range(40):
        gate.answered(Ticket(gate.epoch, in_flight=32), "m/text", 10)
    gate.refused(Ticket(gate.epoch, in_flight=30), 429)  # it took 32 at once a moment ago
    gate.refused(Ticket(gate.epoch, in_flight=32), 429)
    assert gate.current >= 32 and not gate.stats.cuts
    assert gate.stats.refused == 2 and gate.stats.rate_limited == 2
    # the headers say a window is spent: a rate limit even above any level it took
    gate.refused(Ticket(gate.epoch, in_flight=33), 429, rate_window=True)
    assert not gate.stats.cuts and gate.stats.rate_limited == 3
    # above what it took, and no word of a window: too many at once
    gate.refused(Ticket(gate.epoch, in_flight=33), 429)
    assert gate.stats.cuts == {"429": 1} and gate.current == 32


def test_past_a_concurrency_limit_most_are_refused_and_the_gate_cuts() -> None:
    """A reply that got through above the limit (another's was on its way back) does not
    make the 429s at that level a rate limit: most requests there are refused."""
    gate = AdaptiveLimit("server", ceiling=64)
    gate.limit, gate.ramping = 16.0, False
    gate.calm_level = 64
    for _ in range(40):  # the server takes 12 at once
        gate.answered(Ticket(gate.epoch, in_flight=12), "m/text", 10)
    gate.answered(Ticket(gate.epoch, in_flight=14), "m/text", 10)  # a lucky one
    gate.refused(Ticket(gate.epoch, in_flight=14), 429)
    assert gate.stats.cuts == {"429": 1} and gate.current == 13 and not gate.stats.rate_limited


def test_a_429s_headers_tell_a_spent_rate_window() -> None:
    import httpx

    assert rate_window_spent(httpx.Headers({"x-ratelimit-remaining-requests": "0"}))
    assert rate_window_spent(httpx.Headers({"x-ratelimit-remaining-tokens": " 0"}))
    assert not rate_window_spent(httpx.Headers({"x-ratelimit-remaining-requests": "12"}))
    assert not rate_window_spent(httpx.Headers({"retry-after": "1"}))


def test_the_limit_grows_only_while_it_holds_requests_back() -> None:
    gate = AdaptiveLimit("server", ceiling=64)
    for _ in range(50):  # replies to requests sent with the gate half empty
        gate.answered(Ticket(gate.epoch, in_flight=3), "m/text", 10)
    assert gate.current == START


def test_a_cut_on_a_429_is_undone_when_429s_come_below_its_level() -> None:
    """A random rate limit's first 429 may come at a new level, with too few requests seen
    there to tell; once 429s come where the server took many, it was one too."""
    gate = AdaptiveLimit("server", ceiling=64)
    gate.limit, gate.ramping = 32.0, False
    gate.calm_level = 64
    gate.refused(Ticket(gate.epoch, in_flight=32), 429)  # nothing seen at 32 yet: a cut
    assert gate.stats.cuts == {"429": 1} and gate.current == 31 and gate.refused_at == 32
    for _ in range(40):
        gate.answered(Ticket(gate.epoch, in_flight=30), "m/text", 10)
    gate.refused(Ticket(gate.epoch, in_flight=30), 429)  # where 40 of 41 got through
    assert gate.stats.rate_limited == 1 and gate.stats.undone == 1
    assert gate.current == 32 and gate.refused_at is None


def test_a_queue_cuts_to_what_the_server_serves_calm_and_a_stall_is_undone() -> None:
    """Two rounds 4x slower at 64 in flight: the server serves about 16 at its calm
    latency (Little's law), so the limit goes to 16 x 1.25 = 20 in one cut, not by quarters.
    Rounds back at the calm there say the slowness was not the server's: the ramp takes
    the limit back up to below the level it was cut at."""

    async def scenario() -> None:
        gate = AdaptiveLimit("server", ceiling=64)
        gate.limit, gate.ramping, gate.calm_level = 64.0, False, 64

        def round_at(level: int, seconds: float) -> None:
            for _ in range(max(gate.current, 8)):
                gate.answered(Ticket(gate.epoch, in_flight=level), "m/text", 10, seconds)

        round_at(1, 0.1)  # the calm, learned alone
        while not gate.stats.cuts:  # (two whole rounds)
            gate.answered(Ticket(gate.epoch, in_flight=64), "m/text", 10, 0.4)
        assert gate.current == 20 and gate.stats.cuts == {"queueing": 1}, gate.stats
        for _ in range(3):  # rounds of a kind never seen, slow: nothing measured, no way back
            for _ in range(gate.current):
                gate.answered(Ticket(gate.epoch, in_flight=20), "m/json", 10, 5.0)
        assert not gate.ramping and gate.current < 24
        gate._waiters.append(asyncio.get_running_loop().create_future())  # demand waits
        for _ in range(40):  # (the ramp spreads its steps over a round trip)
            if gate.current >= 63:
                break
            round_at(gate.current, 0.1)
            await _ramp_steps_taken(gate)
        assert gate.current == 63, gate.current  # back up, to below the level cut at
        gate._waiters.clear()

    asyncio.run(scenario())


async def _ramp_steps_taken(gate: AdaptiveLimit) -> None:
    """Until the ramp has taken every step its replies earned (it spreads them over a
    round trip on a timer, which ends when they are spent or it is at its allowance)."""
    while gate._timer is not None:
        await asyncio.sleep(0.001)


def test_the_ramp_waits_for_a_first_round_then_may_fill_the_ceiling() -> None:
    """Before a round came back, the first replies take the limit to twice ``START`` at
    most (a server that takes fewer is not flooded while its calm is learned); once one
    came back calm, the ramp may reach the ceiling in the next round."""

    async def scenario() -> None:
        gate = AdaptiveLimit("server", ceiling=64)
        loop = asyncio.get_running_loop()
        gate._waiters.extend(loop.create_future() for _ in range(100))  # demand waits
        for _ in range(START - 1):
            gate.answered(Ticket(gate.epoch, in_flight=START), "m/text", 10, 0.01)
        await _ramp_steps_taken(gate)
        assert gate.current == 2 * START, gate.current
        gate.answered(Ticket(gate.epoch, in_flight=START), "m/text", 10, 0.01)  # the round
        await _ramp_steps_taken(gate)
        assert gate.current == 64, gate.current
        gate._waiters.clear()

    asyncio.run(scenario())


def test_a_kind_first_seen_beside_known_kinds_is_judged_by_them() -> None:
    """A queue slows every kind alike: a kind first seen beside known kinds that read near
    their calm has its latency over their slowdown as its calm, at their calm's level, so
    its own later replies are judged (not taken for the calm); its calm is derived again
    each round both are measured (a stall within the first round skews it)."""
    watch = LatencyWatch()
    for _ in range(8):
        watch.add("answer", 0.1, 10, in_flight=4, limit=32)  # learned alone, at 4
    for _ in range(8):
        watch.add("answer", 0.11, 10, in_flight=32, limit=32)  # a little slower at 32
    for _ in range(8):
        watch.add("judge", 0.33, 10, in_flight=32, limit=32)  # a new kind, beside it
    calm, level = watch.calm["judge"]
    assert calm == pytest.approx(Pace.of(0.3, 10)) and level == 4 and "judge" in watch.derived
    watch.add("judge", 0.6, 10, in_flight=32, limit=32)
    assert watch.derived_ratios["judge"][-1] == pytest.approx((2.0, 2.0)), "judged"


def test_a_kind_first_seen_in_a_stall_waits_for_a_calm_round_to_be_derived() -> None:
    """Known kinds that read three times slower may be a stall of this process that
    spared the new kind's replies: its calm is derived only once they read calm again."""
    watch = LatencyWatch()
    for _ in range(8):
        watch.add("answer", 0.1, 10, in_flight=4, limit=32)
    for _ in range(8):
        watch.add("answer", 0.3, 10, in_flight=32, limit=32)  # a stall: three times slower
    for _ in range(8):
        watch.add("judge", 0.2, 10, in_flight=32, limit=32)  # the judge came back calm
    assert "judge" not in watch.calm
    for _ in range(16):  # the round ends; the next reads calm
        watch.add("answer", 0.1, 10, in_flight=32, limit=32)
    for _ in range(8):
        watch.add("judge", 0.2, 10, in_flight=32, limit=32)
    assert watch.calm["judge"][0] == pytest.approx(Pace.of(0.2, 10))


def test_a_derived_calm_is_derived_again_when_the_kinds_seen_calm_disagree() -> None:
    watch = LatencyWatch()
    for _ in range(8):
        watch.add("answer", 0.1, 10, in_flight=4, limit=32)
    for _ in range(8):
        watch.add("answer", 0.115, 10, in_flight=32, limit=32)  # read near their calm
    for _ in range(8):
        watch.add("judge", 0.1, 10, in_flight=32, limit=32)  # derived as 0.1 / 1.15
    verdicts = [
        watch.add(kind, seconds, 10, 32, 32)
        for _ in range(32)
        for kind, seconds in (("answer", 0.1), ("judge", 0.1))
    ]
    assert [v for v in verdicts if v is not None][-1] == pytest.approx(1.0), "by those seen"
    assert watch.calm["judge"][0] == pytest.approx(Pace.of(0.1, 10)), "derived again"


def test_a_request_asked_again_goes_first_at_the_gate_in_the_order_they_came() -> None:
    """A request asked again already waited its turn, then a server's pause: it goes
    before those waiting, and such requests among themselves first come, first served."""
    gate = AdaptiveLimit("server", ceiling=1, adaptive=False)
    order: list[str] = []

    async def ask(name: str, first: bool = False) -> None:
        async with gate.slot(first=first):
            order.append(name)

    async def hold() -> None:  # the slot, until all four wait in line
        async with gate.slot():
            order.append("holder")
            for _ in range(5000):
                if len(gate._waiters) + len(gate._first) == 4:
                    break
                await asyncio.sleep(0.001)

    async def scenario() -> None:
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(ask(f"new {i}")) for i in range(2)]
        waiting += [asyncio.create_task(ask(f"again {i}", first=True)) for i in range(2)]
        await asyncio.gather(holder, *waiting)

    asyncio.run(scenario())
    assert order == ["holder", "again 0", "again 1", "new 0", "new 1"], order


def test_this_processs_own_lateness_is_not_the_servers() -> None:
    """A reply read while this process's event loop was busy (parsing, writing, another
    process on the cores) waited on this process: the gate takes that wait off. A stall
    that ended before the reply came held nothing up: taking off a stall before the send
    read a burst as twice as fast as it was (and the next rounds as a queue), and taking
    off every stall while a reply was out read a 2,000-instruction run's replies at half
    the server's time."""

    async def scenario() -> None:
        gate = AdaptiveLimit("server", ceiling=64)
        lag = gate.loop_lag
        async with gate.slot():  # the lag timer runs while a request is out
            time.sleep(0.06)  # a stall before the send
            sent = time.monotonic()
            await asyncio.sleep(0.1)
            time.sleep(0.08)  # a stall while it is out, over before the reply comes
            await asyncio.sleep(0.1)
            assert lag.server_time(sent) >= 0.25, "nothing held the reply up"
            sent = time.monotonic()
            await asyncio.sleep(0.2)
            time.sleep(0.08)  # the reply came during this stall: it is read late
            took = lag.server_time(sent)
            assert 0.18 <= took <= 0.25, took  # 0.28 with nothing taken off
        for _ in range(400):  # its next tick (within 10 ms) sees nothing out and stops
            if lag._timer is None:
                break
            await asyncio.sleep(0.005)
        assert lag._timer is None, "no timer while nothing is out"

    asyncio.run(scenario())


@pytest.mark.parametrize("server", ["by the call", "by the token"])
def test_replies_longer_or_shorter_than_the_calm_are_not_a_queue(server: str) -> None:
    """A round whose replies run longer (or shorter) than those the calm was learned from
    is not slower: a server whose time goes by the call reads steady per call, one that
    decodes token by token reads steady per token, and the round is read by the measure
    its replies agree on. A queue slows both."""

    def seconds(tokens: int, queue: float = 1.0) -> float:
        return queue * (0.5 if server == "by the call" else 0.002 * (tokens + TOKEN_WEIGHT))

    short, long = [20 + 3 * i for i in range(8)], [300 + 40 * i for i in range(8)]
    for calm, later in ((short, long), (long, short)):
        watch = LatencyWatch()
        for tokens in calm:
            watch.add("answer", seconds(tokens), tokens, in_flight=8, limit=64)
        verdicts = [watch.add("answer", seconds(t), t, 64, 64) for t in later * 8]
        assert verdicts[-1] == pytest.approx(1.0), (server, calm[0], verdicts[-1])
        queued = [watch.add("answer", seconds(t, 2.0), t, 64, 64) for t in later * 8]
        assert queued[-1] == pytest.approx(2.0), "a queue slows both measures"


def test_a_kind_learned_with_no_known_kind_beside_it_is_measured_again_lighter() -> None:
    """A round of kinds never seen, above any level known calm: its calm may be a queue's,
    so one round at the highest level known calm measures it again (a dip: half the
    limit may be past the server's knee too), then the limit is back."""
    gate = AdaptiveLimit("server", ceiling=64)
    gate.limit, gate.ramping, gate.calm_level = 32.0, False, 12
    gate.latency.new_round(32)
    for _ in range(32):
        gate.answered(Ticket(gate.epoch, in_flight=32), "m/json", 10, 0.3)
    assert gate.dipped_from == 32 and gate.current == 12, gate


def test_off_the_limit_is_the_ceiling_and_never_moves() -> None:
    gate = AdaptiveLimit("server", ceiling=12, adaptive=False)
    gate.refused(Ticket(gate.epoch, 12), 429)
    for _ in range(5):
        gate.refused(Ticket(gate.epoch, 12), 503)
    assert gate.current == 12 and not gate.stats.cuts and gate.stats.refused == 1


def test_a_busy_server_is_asked_again_after_a_short_pause_then_the_graph_retries() -> None:
    """A 502, 503 or 504 at random is the transport's to retry (0.25 s, then 0.5 s, each
    with up to as much again at random), not the graph's (a second or more, a node rerun)."""
    import httpx
    import openai

    ticket = Ticket(0, 1)
    for status in (502, 503, 504):
        endpoint = Endpoint.at(AdaptiveLimit("s", 8), "m")
        endpoint.breaker.answered()  # a server that answers others (else: an outage)
        limits = RoleLimits.for_role(RoleConfig(), None, endpoint)
        response = httpx.Response(status, request=httpx.Request("POST", "http://s/v1"))
        busy = openai.InternalServerError("busy", response=response, body=None)
        first = limits.after_failure(ticket, busy, 0, 0, asked=0, asker=status)
        second = limits.after_failure(ticket, busy, 0, 1, asked=1, asker=status)
        assert isinstance(first, ServerBusy) and 0.25 <= first <= 0.5
        assert isinstance(second, ServerBusy) and 0.5 <= second <= 1.0
        with pytest.raises(openai.InternalServerError):  # then the graph's retry policy
            limits.after_failure(ticket, busy, 0, 2, asked=2, asker=status)


def test_the_breaker_counts_a_run_of_failures_not_a_lifetime_ratio() -> None:
    import httpx
    import openai

    request = httpx.Request("POST", "http://x/v1/chat/completions")
    refused = openai.AuthenticationError(
        "Incorrect API key", response=httpx.Response(401, request=request), body=None
    )
    breaker = Breaker("m @ http://x/v1")
    for _ in range(TRIP_AFTER * 10):  # failures, each run of them broken by a reply
        for asker in range(TRIP_AFTER - 1):
            assert not breaker.failed(refused, asker)
        breaker.answered()
    for _ in range(TRIP_AFTER * 3):  # one request failing alone: its own failure
        assert not breaker.failed(refused, asker=1)
    assert breaker.why is None
    for asker in range(TRIP_AFTER):
        tripped = breaker.failed(refused, asker)
    assert tripped and breaker.broken.is_set() and "AuthenticationError" in (breaker.why or "")


# ---- against servers -----------------------------------------------------------------------
def test_a_hidden_limit_is_learned_with_few_429s(mock_llm: MockLLM, tmp_path: Path) -> None:
    mock_llm.latency, mock_llm.hidden_limit, mock_llm.hidden_retry_after = 0.02, 6, 0.2
    options = {"instructions": 40, "metadata": 4, "concurrency": 64}
    result = codeclm.run(_seeds(tmp_path), out=tmp_path / "on", **options, **mock_roles(mock_llm))
    asked = sum(mock_llm.statuses.values())
    assert result.record.counts.failed == 0
    assert mock_llm.statuses[429] / asked < 0.05, mock_llm.statuses
    (stats,) = result.record.endpoints.values()
    assert stats.refused == mock_llm.statuses[429] and stats.lowest <= stats.limit <= 8
    recorded = json.loads((tmp_path / "on/run.json").read_text())["endpoints"]
    assert list(recorded) == [mock_llm.base_url] and recorded[mock_llm.base_url]["limit"]


def test_a_server_that_queues_brings_the_limit_down_toward_its_knee(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.latency, mock_llm.load_knee = 0.03, 4
    options = {"instructions": 120, "metadata": 4, "concurrency": 64}
    result = codeclm.run(_seeds(tmp_path), out=tmp_path / "r", **options, **mock_roles(mock_llm))
    (stats,) = result.record.endpoints.values()
    # its first round, at 8, already queued (it was learned as the calm); the ramp may take
    # it to the ceiling, and the queue brings it back near the knee (to what it serves at
    # that calm, by Little's law: how many cuts depends on this machine's load)
    assert stats.cuts.get("queueing") and stats.limit <= 16 and not stats.refused, stats


def test_no_adaptive_keeps_the_concurrency(mock_llm: MockLLM, tmp_path: Path) -> None:
    out = tmp_path / "off"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=8, metadata=2) == 0
    assert main(["resume", str(out), "--no-adaptive"]) == 0
    (stats,) = json.loads((out / "run.json").read_text())["endpoints"].values()
    assert stats["adaptive"] is False and stats["limit"] == stats["ceiling"]


# ---- the breaker, against servers ----------------------------------------------------------
def _stopped_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_wrong_model_stops_the_run_in_one_line(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.strict_models = True  # a model name the server does not serve: 404
    out = tmp_path / "out"
    args = ["run", str(_seeds(tmp_path)), *mock_args(mock_llm, out, instructions=4, metadata=2)]
    args[args.index(STRONG_MODEL)] = "gpt-4o-typo"
    assert main(args) == EXIT_BROKEN
    line = _stopped_line(capsys)
    assert f"gpt-4o-typo @ {mock_llm.base_url}" in line and "NotFoundError" in line
    assert "run the same command again" in line
    assert len(mock_llm.calls("EncodedMetadata")) < 3 * TRIP_AFTER, "it stops burning requests"


@pytest.mark.parametrize("failure", ["revoke_key_at", "quota_gone_at"])
def test_a_key_revoked_or_a_quota_used_up_mid_run_stops_it_and_it_goes_on_when_fixed(
    failure: str, mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = _seeds(tmp_path)
    options = {"instructions": 16, "metadata": 4}
    assert run_cli(seeds, mock_llm, tmp_path / "whole", **options) == 0
    capsys.readouterr()
    setattr(mock_llm, failure, mock_llm.chat_calls + 40)  # from the 40th call of the next run
    out = tmp_path / "cut"
    assert run_cli(seeds, mock_llm, out, **options) == EXIT_BROKEN
    line = _stopped_line(capsys)
    why = "AuthenticationError" if failure == "revoke_key_at" else "insufficient_quota"
    assert why in line and "nothing finished is lost" in line and "sk-" not in line
    assert not (out / "failed.jsonl").exists() or not read_jsonl(out / "failed.jsonl")
    setattr(mock_llm, failure, None)  # a new key, a topped-up quota
    assert main(["resume", str(out)]) == 0
    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "whole/dataset.jsonl").read_bytes()


def test_a_server_down_is_waited_for_then_stops_the_run_and_it_goes_on_when_back(
    mock_llm: MockLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codeclm.llm import breaker

    monkeypatch.setattr(breaker, "DOWN_SECONDS", 0.5)  # (a minute, outside tests)
    monkeypatch.setattr(breaker, "TRIP_AFTER_DOWN", 6)
    seeds, options = _seeds(tmp_path), {"instructions": 16, "metadata": 4}
    assert run_cli(seeds, mock_llm, tmp_path / "whole", **options) == 0
    mock_llm.down_at = mock_llm.chat_calls + 30
    out = tmp_path / "cut"
    assert run_cli(seeds, mock_llm, out, **options) == EXIT_BROKEN
    assert not (out / "failed.jsonl").exists() or not read_jsonl(out / "failed.jsonl")
    mock_llm.down_at = None  # back up
    assert main(["resume", str(out)]) == 0
    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "whole/dataset.jsonl").read_bytes()


def test_a_request_refused_for_itself_fails_alone_for_good_and_the_run_goes_on(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.forbid_when = SEEDS[3]  # a 403 for this seed's requests only
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=8, metadata=4) == 0
    record = json.loads((out / "run.json").read_text())
    (failure,) = record["prepare_failures"]
    assert failure["subject"] == "s3" and "PermissionDeniedError" in failure["reason"]
    assert failure["permanent"] is True, "refused for itself where others are answered: final"
    assert record["counts"]["kept"] + record["counts"]["dropped"] == 8
    assert len(mock_llm.calls("EncodedMetadata")) < len(SEEDS) + 3 * TRIP_AFTER


def test_keys_and_gateway_credentials_are_scrubbed() -> None:
    from codeclm.redact import remember_secret, scrub, server_name

    remember_secret("plain-old-secret-value")
    said = "Incorrect API key provided: sk-live-****abcd; key plain-old-secret-value; gsk_AbC123"
    assert (
        "sk-live" not in scrub(said)
        and "plain-old" not in scrub(said)
        and "gsk_" not in scrub(said)
    )
    assert "Incorrect API key provided" in scrub(said)
    assert server_name("https://user:pw@gw.example/v1?api-key=XYZ") == "https://gw.example/v1"


def test_five_percent_of_requests_failing_never_trips_the_breaker(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.error_rate = 0.05  # 503s at random, as a healthy but busy server gives
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=40, metadata=4) == 0
    record = json.loads((out / "run.json").read_text())
    assert mock_llm.statuses[503] > 0 and record["counts"]["failed"] == 0
