"""``codeclm view`` in headless Chromium (Debian's, through Playwright), over real runs
against the misbehaving loopback mock: the pages, filters and search, one instruction's
chain, the pool's review gating a waiting run, pair reviews honoured by export, live
progress, and the page's safety (loopback, same-origin writes, malformed edits refused).

``CODECLM_SCREENSHOTS=DIR`` keeps the main views' screenshots (``make screenshots``
writes docs/images/).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.bench.postgres_server import PASSWORD, PostgresServer
from codeclm.cli import main
from codeclm.handle import RunHandle
from codeclm.review import pair_reviews
from codeclm.view.guard import token_cookie
from tests.conftest import read_jsonl, run_cli
from tests.test_report_export import CHROMIUM
from tests.test_review import (  # the fixture stops a run a failed test left waiting
    SETTINGS,
    _no_run_left_waiting,  # noqa: F401
    interrupted,
    labels_asked,
    start_run,
    wait_for,
)
from tests.test_review import finished as finished_run


def off_loop(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` in a thread of its own: Playwright's sync API keeps an event loop
    running in this one, and codeclm's commands start their own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def cli(*args: str) -> int:
    return int(off_loop(main, list(args)))


@pytest.fixture
def mock_llm(realistic_llm: MockLLM) -> MockLLM:
    """The misbehaving mock (conftest's ``realistic_llm``), judging by ``mixed_rule``."""
    realistic_llm.judge_rule = mixed_rule
    return realistic_llm


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    yield page
    page.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("CODECLM_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


class Viewer:
    """``codeclm view DIR --port 0`` in its own process; its address from its first line."""

    def __init__(self, out: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codeclm", "view", str(out), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+/)\?token=(\S+)", line)
        assert found, (line, self.proc.communicate(timeout=10))
        self.url, self.token = found.group(1), found.group(2)
        self.entry = found.group(0)
        """The address printed at start: the first visit trades its token for a cookie."""
        self.cookie = f"{token_cookie(self.token)}={self.token}"
        self.first_line = line

    def at(self, path: str = "") -> str:
        """The address of ``path`` with the token (the page trades it for its cookie)."""
        return f"{self.url}{path}{'&' if '?' in path else '?'}token={self.token}"

    def stop(self) -> str:
        """Stop it; what it printed after its first line (stdout and stderr)."""
        if self.proc.returncode is not None:
            return ""
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=10)
        return (out or "") + (err or "")


@pytest.fixture
def viewer() -> Iterator[Any]:
    started: list[Viewer] = []

    def start(out: Path, *extra: str) -> Viewer:
        started.append(Viewer(out, *extra))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture
def finished(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert off_loop(run_cli, seeds_file, mock_llm, out, **SETTINGS) == 0
    assert len(read_jsonl(out / "dataset.jsonl")) >= 3 and read_jsonl(out / "dropped.jsonl")
    return out


def column(page: Any, index: int) -> list[str]:
    return [
        c.strip()
        for c in page.locator(f"table.threads tbody td:nth-child({index})").all_inner_texts()
    ]


def test_page_over_a_finished_run_filters_searches_and_shows_the_chain(
    finished: Path, viewer: Any, page: Any, tmp_path: Path
) -> None:
    kept = read_jsonl(finished / "dataset.jsonl")
    others = read_jsonl(finished / "dropped.jsonl") + read_jsonl(finished / "failed.jsonl")
    view = viewer(finished)
    assert view.url.startswith("http://127.0.0.1:"), "loopback unless --host is given"

    page.goto(view.at())
    assert page.inner_text('[data-progress="counts.kept"]') == str(len(kept))
    assert page.inner_text('[data-progress="instructions"]') == str(len(kept) + len(others))
    pool = read_jsonl(finished / "metadata.jsonl")
    assert page.locator("table.pool tbody tr").count() == len(pool)
    first = page.locator(f"#entry-{pool[0]['id']}")
    assert pool[0]["use_case"] in first.inner_text()
    first.locator("summary").click()  # its rubrics and actions
    assert pool[0]["actions"][0] in first.inner_text()
    screenshot(page, "view-overview", tmp_path)

    page.goto(view.at("instructions"))
    assert page.locator("table.threads tbody tr").count() == len(kept) + len(others)
    screenshot(page, "view-instructions", tmp_path)
    page.select_option('select[name="status"]', "kept")
    page.click("#filters button")
    assert column(page, 2) == ["kept"] * len(kept)
    assert set(column(page, 1)) == {row["id"] for row in kept}

    later = [row for row in kept if row["iteration"] == 3]
    assert later, "mixed_rule keeps some pairs after two rewrites"
    page.select_option('select[name="iteration"]', "3")
    page.click("#filters button")
    assert set(column(page, 1)) == {row["id"] for row in later}

    word = kept[0]["instruction"].split()[2]
    page.goto(view.at("instructions?q=" + word))
    shown = set(column(page, 1))
    having = {r["id"] for r in kept + others if word.lower() in (r["instruction"] or "").lower()}
    assert having <= shown and len(shown) < len(kept) + len(others)

    target = later[0]
    page.goto(view.at("instructions?status=kept&iteration=3"))
    page.click(f"a[href='/instructions/{target['id']}']")
    steps = page.locator("#chain > li")
    assert steps.count() == 3
    assert target["basic_instruction"] in steps.nth(0).inner_text()
    for number, action in enumerate(target["actions"], start=1):
        assert action in steps.nth(number).inner_text()
    assert target["instruction"] in steps.nth(2).inner_text()
    assert steps.nth(2).locator("table.scores tr").count() == 4  # header + both orders + mean
    assert page.locator(".gap").last.inner_text() == f"{target['scores']['gap']:+g}"
    screenshot(page, "view-instruction", tmp_path)


def _post(
    url: str, data: dict[str, str], origin: str | None, host: str | None = None, cookie: str = ""
) -> int:
    body = "&".join(f"{k}={v}" for k, v in data.items()).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    if cookie:
        request.add_header("Cookie", cookie)
    if origin:
        request.add_header("Origin", origin)
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_pair_reviews_in_the_page_are_checked_kept_and_exported(
    finished: Path, viewer: Any, page: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = read_jsonl(finished / "dataset.jsonl")
    dropped = read_jsonl(finished / "dropped.jsonl")[0]
    view = viewer(finished)

    page.goto(view.at(f"instructions/{kept[0]['id']}"))
    page.check('input[value="rejected"]')
    page.fill('input[name="note"]', "off topic")
    page.click("#pair-review button")
    assert "Reviewed: rejected" in page.inner_text(".reviewed")

    page.goto(view.at(f"instructions/{kept[1]['id']}"))
    assert not page.is_checked('input[value="accepted"]'), "nothing chosen for a person"
    page.check('input[value="accepted"]')
    page.fill('input[name="reviewer"]', "Ada")
    page.fill('textarea[name="response"]', "A reviewed answer,\non two lines.")
    page.click("#pair-review button")
    assert "accepted (edited)" in page.inner_text(".reviewed")
    screenshot(page, "view-pair-review", tmp_path)

    page.goto(view.at(f"instructions/{kept[2]['id']}"))
    assert page.input_value('input[name="reviewer"]') == "Ada", "the page remembers the name"
    page.check('input[value="accepted"]')
    page.fill('textarea[name="instruction"]', "   ")
    page.click("#pair-review button")
    assert "cannot be empty" in page.inner_text(".error")
    page.goto(view.at(f"instructions/{dropped['id']}"))
    assert page.locator("#pair-review").count() == 0, "only kept pairs are reviewed"

    # writes only from this page: another site's form is refused; the review is unchanged
    url = view.url + f"instructions/{kept[2]['id']}/review"
    assert _post(url, {"verdict": "rejected"}, "http://evil.example", cookie=view.cookie) == 403
    # nor one whose name was rebound to 127.0.0.1 (its Origin and Host agree)
    port = view.url.rsplit(":", 1)[1].strip("/")
    rebound = f"evil.example:{port}"
    rebound_post = _post(url, {"verdict": "rejected"}, f"http://{rebound}", rebound, view.cookie)
    assert rebound_post == 403
    for path in ("static/../../../pyproject.toml", "static/%2e%2e/%2e%2e/review.py"):
        try:
            request = urllib.request.Request(view.url + path, headers={"Cookie": view.cookie})
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert b"codeclm" not in reply.read(), "nothing outside the page's assets"
        except urllib.error.HTTPError as error:
            assert error.code in (403, 404)
    capsys.readouterr()
    assert cli("review", str(finished), "--json") == 0
    pairs = json.loads(capsys.readouterr().out)["pairs"]
    assert set(pairs) == {kept[0]["id"], kept[1]["id"]}
    assert pairs[kept[1]["id"]]["response"] == "A reviewed answer,\non two lines."
    assert pairs[kept[1]["id"]]["reviewer"] == "Ada"
    # the list says which pairs a person edited, and its search finds the edited text
    page.goto(view.at("instructions?review=accepted"))
    assert "accepted (edited)" in page.inner_text("table")
    page.goto(view.at("instructions?q=reviewed+answer"))
    assert page.locator("table tbody tr").count() == 1

    target = tmp_path / "chat.jsonl"
    assert cli("export", str(finished), "--format", "chat", "--out", str(target)) == 0
    chat = read_jsonl(target)
    assert len(chat) == len(kept) - 1
    assert chat[0]["messages"][1]["content"] == "A reviewed answer,\non two lines."


def test_pool_review_in_the_page_gates_the_run_and_progress_is_live(
    mock_llm: MockLLM,
    seeds_file: Path,
    viewer: Any,
    page: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mock_llm.latency = 0.02  # the run takes a few seconds once approved: progress to watch
    out = tmp_path / "out"
    proc = start_run(mock_llm, seeds_file, out)
    wait_for(lambda: off_loop(interrupted, out), proc)
    view = viewer(out)
    page.goto(view.at())
    assert page.locator("#review-banner").is_visible()
    assert page.inner_text('[data-progress="prepare"]') == "waiting for review"
    rows = page.locator("table.pool tbody tr")
    ids = [r.get_attribute("id").removeprefix("entry-") for r in rows.all()]
    drop, edit, broken = ids[0], ids[1], ids[2]

    page.click(f"#entry-{drop} button[data-action='drop']")
    assert "dropped" in (page.get_attribute(f"#entry-{drop}", "class") or "")
    page.click(f"#entry-{edit} summary")
    page.fill(f"#entry-{edit} input[name='use_case']", "Tax Filing")
    page.fill(f"#entry-{edit} input[name='skills']", "receipts, forms")
    page.click(f"#entry-{edit} form.edit button")
    assert page.inner_text(f"#entry-{edit} td.use-case") == "tax filing"
    page.click(f"#entry-{broken} summary")
    page.fill(f"#entry-{broken} input[name='use_case']", "")
    page.click(f"#entry-{broken} form.edit button")
    assert "cannot be empty" in page.inner_text(".error")
    page.fill("#add-entry input[name='use_case']", "poetry")
    page.fill("#add-entry input[name='skills']", "meter, rhyme")
    page.click("#add-entry button")
    screenshot(page, "view-pool-review", tmp_path)
    capsys.readouterr()
    assert cli("review", str(out), "--json") == 0
    draft = json.loads(capsys.readouterr().out)["pool"]["draft"]
    assert draft["dropped"] == [drop] and list(draft["edited"]) == [edit]  # broken: refused
    assert proc.poll() is None and not labels_asked(mock_llm), "nothing decoded yet"
    # approving every entry as built would set the draft aside: refused unless said so
    origin = view.url.rstrip("/")
    assert _post(view.url + "pool/approve", {"as_built": "1"}, origin, cookie=view.cookie) == 400
    assert page.locator("#discard-draft").count() == 1, "the page asks first"

    page.click("#approve")
    # the page follows the run on its own: the banner goes, the counts climb to the end
    page.wait_for_selector("#review-banner", state="detached", timeout=30_000)
    code, err = finished_run(proc)
    assert code == 0, err
    finished = len(read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl"))
    page.wait_for_function(
        f"document.querySelector('[data-progress=\"instructions\"]').textContent == '{finished}'",
        timeout=15_000,
    )
    approved = read_jsonl(out / "metadata.jsonl")
    assert drop not in {e["id"] for e in approved}
    assert labels_asked(mock_llm) <= {(e["use_case"], ", ".join(e["skills"])) for e in approved}
    assert ("tax filing", "receipts, forms") in labels_asked(mock_llm)
    assert ("poetry", "meter, rhyme") in labels_asked(mock_llm)


def test_served_to_a_team_the_page_needs_its_token_and_each_review_a_name(
    finished: Path, viewer: Any
) -> None:
    """``--host 0.0.0.0``: the address printed at start carries a token (as Jupyter's does);
    without it the page answers nothing; a review must say who made it."""
    view = viewer(finished, "--host", "0.0.0.0")
    printed = view.first_line
    assert "0.0.0.0" not in printed, "the host's name, which a reviewer can open"
    token = printed.split("?token=", 1)[1].split()[0]
    port = view.url.rsplit(":", 1)[1].strip("/")
    base = f"http://127.0.0.1:{port}/"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)

    def get(path: str, cookie: str = "") -> tuple[int, Any]:
        request = urllib.request.Request(base + path, headers={"Cookie": cookie} if cookie else {})
        try:
            with opener.open(request, timeout=10) as reply:
                return reply.status, reply.headers
        except urllib.error.HTTPError as error:
            return error.code, error.headers

    assert get("")[0] == 403 and get("instructions")[0] == 403 and get("static/view.css")[0] == 403
    assert get("?token=wrong")[0] == 403
    status, headers = get(f"?token={token}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert get("", cookie)[0] == 200
    ident = read_jsonl(finished / "dataset.jsonl")[0]["id"]

    def review(fields: dict[str, str]) -> int:
        body = urllib.parse.urlencode({"verdict": "rejected", **fields}).encode()
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        request = urllib.request.Request(
            base + f"instructions/{ident}/review", data=body, headers=headers, method="POST"
        )
        try:
            with opener.open(request, timeout=10) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return error.code

    assert review({}) == 400, "a review with no name is refused"
    assert review({"reviewer": "Grace"}) == 303
    stored = off_loop(lambda: asyncio.run(pair_reviews(RunHandle.finished(finished))))[ident]
    assert (stored.verdict, stored.reviewer) == ("rejected", "Grace")
    assert token not in (view.stop() or "")


def test_view_and_review_over_a_postgresql_store(
    mock_llm: MockLLM,
    seeds_file: Path,
    postgres: PostgresServer,
    viewer: Any,
    page: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "pg"
    url = postgres.url()
    assert off_loop(run_cli, seeds_file, mock_llm, out, store=url, run="view_test", **SETTINGS) == 0
    (out / "checkpoints.sqlite").unlink(missing_ok=True)  # everything is in the database
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    kept = read_jsonl(out / "dataset.jsonl")
    view = viewer(out)  # finds the store through run.json (no password in it)
    page.goto(view.at(f"instructions/{kept[0]['id']}"))
    page.check('input[value="rejected"]')
    page.click("#pair-review button")
    assert "Reviewed: rejected" in page.inner_text(".reviewed")
    page.goto(view.at())
    assert page.inner_text('[data-progress="counts.kept"]') == str(len(kept))
    assert not (out / "reviews.sqlite").exists(), "kept in the run's PostgreSQL schema"
    target = tmp_path / "a.json"
    assert cli("export", str(out), "--format", "alpaca", "--out", str(target)) == 0
    assert len(json.loads(target.read_text())) == len(kept) - 1


def test_a_conversation_shows_both_models_turn_by_turn_side_by_side(
    mock_llm: MockLLM, seeds_file: Path, viewer: Any, page: Any, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert off_loop(run_cli, seeds_file, mock_llm, out, **SETTINGS, turns=2) == 0
    rows = read_jsonl(out / "dataset.jsonl")
    row = next((r for r in rows if 2 in r.get("improved_turns", [])), rows[0])
    view = viewer(out)
    page.goto(view.at(f"instructions/{row['id']}"))
    turns = page.locator("section.turn")
    assert turns.count() == 2
    source = 0 if row["response_source"] == "strong" else 1
    for number, (user, answer) in enumerate(
        zip(row["messages"][::2], row["messages"][1::2], strict=True)
    ):
        section = turns.nth(number)
        assert section.locator("pre.user").inner_text() == user["content"]
        shown = section.locator(".answers pre").all_inner_texts()
        assert len(shown) == 2 and shown[source] == answer["content"]
        gap = row["turn_scores"][number]["gap"]
        assert section.locator(".gap").inner_text() == f"{gap:+g}"
    for turn in row.get("improved_turns", []):
        assert f"on turn {turn}" in page.locator("#chain").inner_text()
    screenshot(page, "view-conversation", tmp_path)


def _get(url: str, cookie: str = "") -> tuple[int, Any]:
    """GET without following redirects: the status and the headers."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as reply:
            return reply.status, reply.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_on_loopback_too_the_page_needs_its_token_and_is_never_framed(
    finished: Path, viewer: Any
) -> None:
    """Any process of any user reaches loopback: the token is needed there too. Every
    response, errors and assets included, forbids framing and referrers."""
    view = viewer(finished)
    assert view.first_line.startswith(f"codeclm view: {view.url}?token=")
    assert _get(view.url)[0] == 403 and _get(view.url + "instructions")[0] == 403
    review = view.url + f"instructions/{read_jsonl(finished / 'dataset.jsonl')[0]['id']}/review"
    assert _post(review, {"verdict": "rejected"}, view.url.rstrip("/")) == 403, "no token"
    status, headers = _get(view.at())
    assert status == 303 and headers["Set-Cookie"].startswith(token_cookie(view.token) + "=")
    for path in ("", "instructions", "static/view.css", "no/such/page"):
        status, headers = _get(view.url + path, view.cookie)
        assert status in (200, 404), (path, status)
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Content-Security-Policy"] == "frame-ancestors 'none'", path
        assert headers["Referrer-Policy"] == "same-origin", path
    assert _get(view.url)[1]["X-Frame-Options"] == "DENY", "a refusal too"
    assert _get(view.url + "instructions?page=%C2%B2", view.cookie)[0] == 200, "page '²'"


def test_another_port_cannot_frame_the_page_and_two_pages_keep_their_cookies(
    finished: Path, viewer: Any, page: Any, tmp_path: Path
) -> None:
    """In Chromium: a page served on another port that frames the review page (at opacity
    0.2, to steer clicks) gets an empty frame; two ``codeclm view`` servers on one host
    each keep their own token cookie (a browser sends a host's cookies to all its ports)."""
    import http.server
    import threading

    first, second = viewer(finished), viewer(finished)
    page.goto(first.at())  # the cookie of the first, then the framing page
    framer = tmp_path / "framer"
    framer.mkdir()
    (framer / "index.html").write_text(
        f'<iframe id="victim" src="{first.url}" style="opacity:0.2" width=800 height=600></iframe>'
    )
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(framer))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        page.wait_for_load_state("load")  # (the frames' load included)
        (victim,) = [frame for frame in page.frames if frame != page.main_frame]
        assert victim.locator('[data-progress="counts.kept"]').count() == 0, "never framed"
    finally:
        server.shutdown()
    # the second server's cookie does not overwrite the first's
    page.goto(second.at())
    assert page.locator('[data-progress="counts.kept"]').count() == 1
    reply = page.goto(first.url)
    assert reply is not None and reply.status == 200, "the first page still opens"
    names = {cookie["name"] for cookie in page.context.cookies()}
    assert {token_cookie(first.token), token_cookie(second.token)} <= names
