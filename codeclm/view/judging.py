"""Blind judging in the page (``/judge``): people score the sample's pairs one by one, in
the judge's protocol, and their scores go where ``codeclm judge --import`` puts them
(``codeclm.human``). Behind the page's token and its same-origin rule like every view;
nothing on it tells the models apart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from codeclm.config import ConfigError
from codeclm.handle import Folder
from codeclm.human import draw_sample, next_pair, rate
from codeclm.seeds import InputError
from codeclm.view.people import REVIEWER_COOKIE, remembering

if TYPE_CHECKING:
    from codeclm.view.server import View


class JudgePages:
    """The blind-judging handlers, over the page's ``View``."""

    def __init__(self, view: View) -> None:
        self.view = view

    async def judge(self, request: web.Request, error: str | None = None) -> web.Response:
        """The next pair of the blind sample this person has not scored, or a form to draw
        a sample when none was given out."""
        folder = self.view.session.view.handle.out_dir
        person = request.cookies.get(REVIEWER_COOKIE, "")
        pair, scored, total, agreement = None, 0, 0, ""
        try:
            if folder is not None:
                pair, scored, total = next_pair(folder, person)
                agreement = _agreement(folder)
        except ConfigError as exc:  # a damaged scores file or record: said, not a 500
            error = error or str(exc)
        return self.view.render(
            request, "judge.html", status=400 if error else 200, error=error,
            folder=folder, pair=pair, scored=scored, total=total, agreement=agreement,
        )  # fmt: skip

    async def judge_score(self, request: web.Request) -> web.Response:
        folder = self.view.session.view.handle.out_dir
        form = await request.post()
        who = str(form.get("reviewer", "")).strip() or request.cookies.get(REVIEWER_COOKIE, "")
        try:
            if folder is None:
                raise ConfigError("blind judging needs the run's folder")
            key = str(form.get("key", ""))
            rate(folder, key, who, form.get("score_a"), form.get("score_b"))
        except (InputError, ConfigError) as exc:  # (a read-only folder keeps no score)
            return await self.judge(request, error=str(exc))
        raise remembering(web.HTTPSeeOther("/judge"), who[:80])

    async def judge_sample(self, request: web.Request) -> web.Response:
        folder = self.view.session.view.handle.out_dir
        form = await request.post()
        asked = str(form.get("n", "20"))
        try:
            if folder is None:
                raise ConfigError("blind judging needs the run's folder")
            if not asked.isdigit() or not 1 <= int(asked) <= 1000:
                raise InputError(f"pairs to judge: {asked!r} is not a number from 1 to 1000")
            await draw_sample(folder, int(asked))
        except (InputError, ConfigError) as exc:
            return await self.judge(request, error=str(exc))
        raise web.HTTPSeeOther("/judge")


def _agreement(folder: Path | None) -> str:
    """People's agreement with the judge so far, in words ('' before any score)."""
    if folder is None:
        return ""
    record = Folder(folder).read_run() or Folder(folder).read_eval()
    human = record.judge.human if record is not None and record.judge else None
    return human.line() if human is not None and human.ratings else ""


def judging_routes(view: View) -> list[web.RouteDef]:
    pages = JudgePages(view)
    return [
        web.get("/judge", pages.judge),
        web.post("/judge", pages.judge_score),
        web.post("/judge/sample", pages.judge_sample),
    ]
