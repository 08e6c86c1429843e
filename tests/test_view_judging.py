"""Blind judging in the page (issue #35, item 2), in headless Chromium like the page's other
views: a sample drawn from the page, scored pair by pair under a person's name, nothing on
the page telling the models apart, the scores counted as ``codeclm judge --import`` counts
them, and the page's rules (token, same origin, checked scores) kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests import test_view
from tests.conftest import read_jsonl
from tests.test_view import _post

# test_view's fixtures, shared: Chromium, a page, the viewer, a finished run (its mock)
browser, page, viewer = test_view.browser, test_view.page, test_view.viewer
finished, mock_llm = test_view.finished, test_view.mock_llm


ONLY_THE_PAGES_OWN_WORDS = """() => {
    const main = document.querySelector("main").cloneNode(true);
    main.querySelectorAll("pre").forEach((text) => text.remove());
    return main.innerText;
}"""


def test_people_judge_blind_in_the_page_and_their_scores_count(
    finished: Path, viewer: Any, page: Any, tmp_path: Path
) -> None:
    view = viewer(finished)
    page.goto(view.at("judge"))
    page.fill('input[name="n"]', "3")
    page.click("#judge-sample button")
    assert "You have scored 0 of the 3 pairs" in page.inner_text("#judge-progress")
    ids = [
        r["id"] for name in ("dataset", "dropped") for r in read_jsonl(finished / f"{name}.jsonl")
    ]
    for scored in range(3):
        shown = page.inner_text("main")
        assert page.inner_text("#answer-a") and page.inner_text("#answer-b")
        assert not any(thread in shown for thread in ids), "no thread id"
        around = page.evaluate(ONLY_THE_PAGES_OWN_WORDS).lower()  # the texts judged apart
        for word in ("strong", "target", "model", "gap", "iteration", "use case"):
            assert word not in around.replace("which model wrote", ""), word
        page.fill('input[name="score_a"]', "8")
        page.fill('input[name="score_b"]', "3")
        if scored == 0:
            page.fill('input[name="reviewer"]', "Ada")
        else:
            assert page.input_value('input[name="reviewer"]') == "Ada", "the page remembers"
        page.click("#judge-pair button")
    assert "You have scored all 3 pairs" in page.inner_text("#judge-done")
    assert "people: 1 judged 3 pairs (3 ratings)" in page.inner_text("#judge-agreement")
    test_view.screenshot(page, "view-judge", tmp_path)
    human = json.loads((finished / "run.json").read_text())["judge"]["human"]
    assert (human["items"], human["people"], human["ratings"]) == (3, 1, 3)

    # the page's rules: a score out of range is refused and nothing is kept; another
    # site's form is refused; no token, no page
    key = next(iter(json.loads((finished / "judge_sample.json").read_text())["keys"]))
    form = {"key": key, "score_a": "11", "score_b": "3", "reviewer": "Bob"}
    origin = view.url.rstrip("/")
    assert _post(view.url + "judge", form, origin, cookie=view.cookie) == 400
    assert _post(view.url + "judge", {**form, "score_a": "7"}, "http://evil.example",
                 cookie=view.cookie) == 403  # fmt: skip
    assert _post(view.url + "judge", {**form, "score_a": "7"}, origin) == 403, "no token"
    assert len(read_jsonl(finished / "judge_people.jsonl")) == 3
    assert _post(view.url + "judge", {**form, "score_a": "7"}, origin, cookie=view.cookie) == 200
    assert len(read_jsonl(finished / "judge_people.jsonl")) == 4, "Bob's score kept"
