"""``codeclm view``: server-rendered pages over one run (aiohttp + Jinja2, no build step).

Read-only over the checkpoints; the only writes are a person's reviews, each through
``codeclm.review`` (checked there; a malformed one is answered 400 with the message, and
nothing is stored). A POST from another site's page is refused (its Origin differs), so a
page open in the same browser cannot review on the user's behalf.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from codeclm.config import ConfigError
from codeclm.review import ReviewError, RunSession, entry_edit
from codeclm.view.data import FRESH_SECONDS, Snapshot, ThreadRow, chain, take_snapshot

PAGE_SIZE = 100
STATIC = Path(__file__).parent / "static"
FILTERS = ("status", "use_case", "skill", "iteration", "source", "review", "q")


class View:
    """The handlers, over one opened run."""

    def __init__(self, session: RunSession, title: str) -> None:
        self.session = session
        self.title = title
        self.templates = Environment(
            loader=PackageLoader("codeclm.view", "templates"),
            autoescape=select_autoescape(["html"]),
        )
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self, fresh: bool = False) -> Snapshot:
        """The run as the store holds it, read again when older than ``FRESH_SECONDS`` or
        four times what the last read took (a big run's store is not read back to back)."""
        async with self._lock:
            old = self._snapshot
            stale = old is None or time.monotonic() - old.taken_at > max(
                FRESH_SECONDS, 4 * old.load_seconds
            )
            if fresh or stale:
                self._snapshot = await take_snapshot(self.session)
            assert self._snapshot is not None
            return self._snapshot

    def render(self, name: str, status: int = 200, **values: Any) -> web.Response:
        page = self.templates.get_template(name).render(title=self.title, **values)
        return web.Response(text=page, status=status, content_type="text/html")

    # ---- pages ------------------------------------------------------------------------

    async def overview(self, request: web.Request, error: str | None = None) -> web.Response:
        snap = await self.snapshot(fresh=error is not None)
        return self.render(
            "overview.html",
            status=400 if error else 200,
            snap=snap,
            progress=snap.progress(),
            error=error or request.query.get("error"),
            where=self.session.reviews.where,
        )

    async def instructions(self, request: web.Request) -> web.Response:
        snap = await self.snapshot()
        chosen = {name: request.query.get(name, "").strip() for name in FILTERS}
        rows = [row for row in snap.threads if _matches(row, chosen)]
        pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        asked = request.query.get("page", "1")
        page = min(max(1, int(asked) if asked.isdigit() else 1), pages)
        options = {
            "status": sorted({r.status for r in snap.threads}),
            "use_case": sorted({r.use_case for r in snap.threads if r.use_case}),
            "skill": sorted({s for r in snap.threads for s in r.skills}),
            "iteration": sorted({str(r.iteration) for r in snap.threads if r.iteration}),
            "source": sorted({r.source for r in snap.threads if r.source}),
            "review": ["accepted", "rejected", "not reviewed"],
        }
        query = {k: v for k, v in chosen.items() if v}
        return self.render(
            "instructions.html",
            snap=snap,
            rows=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            matched=len(rows),
            chosen=chosen,
            options=options,
            page=page,
            pages=pages,
            page_link=lambda n: "?" + urlencode({**query, "page": n}),
        )

    async def instruction(self, request: web.Request, error: str | None = None) -> web.Response:
        ident = request.match_info["id"]
        state = await self.session.instruction_state(ident)
        if state is None:
            raise web.HTTPNotFound(text=f"no instruction {ident!r} in this run")
        reviews = await self.session.reviews.pairs()
        response = state.strong_answer if state.response_source == "strong" else None
        response = response if response is not None else state.target_answer
        return self.render(
            "instruction.html",
            status=400 if error else 200,
            state=state,
            iterations=await chain(self.session, ident),
            response=response or "",
            review=reviews.get(ident),
            error=error,
        )

    async def progress(self, request: web.Request) -> web.Response:
        return web.json_response((await self.snapshot()).progress())

    # ---- reviews (the only writes) ----------------------------------------------------

    async def pool_change(self, request: web.Request) -> web.Response:
        form = await request.post()
        action = request.match_info["action"]
        ident = str(form.get("id", ""))
        note = str(form["note"]) if "note" in form else None
        try:
            if action == "drop":
                await self.session.edit_pool(drop=[ident], note=note)
            elif action == "keep":
                await self.session.edit_pool(keep=[ident], note=note)
            elif action in ("edit", "add"):
                fields = {"use_case": str(form.get("use_case", "")), "skills": form.get("skills")}
                change = entry_edit(fields)
                if action == "edit":
                    await self.session.edit_pool(edit={ident: change}, note=note)
                else:
                    await self.session.edit_pool(add=[change], note=note)
            elif action == "approve":
                if note is not None:
                    await self.session.edit_pool(note=note)
                await self.session.approve_pool(
                    as_built=form.get("as_built") == "1",
                    discard_draft=form.get("discard_draft") == "1",
                )
            else:
                raise web.HTTPNotFound()
        except ReviewError as exc:
            return await self.overview(request, error=str(exc))
        await self.snapshot(fresh=True)
        raise web.HTTPSeeOther("/#pool")

    async def pair_review(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        form = await request.post()
        verdict = str(form.get("verdict", ""))
        edits = {  # a text area sent back unchanged is no edit
            name: _text(form[name])
            for name in ("instruction", "response")
            if name in form and _text(form[name]) != _text(form.get(f"was_{name}", ""))
        }
        try:
            if verdict not in ("accepted", "rejected", ""):
                raise ReviewError(f"unknown verdict {verdict!r}")
            await self.session.review_pair(
                ident,
                verdict or None,  # type: ignore[arg-type]
                note=str(form.get("note", "")),
                **edits,
            )
        except ReviewError as exc:
            return await self.instruction(request, error=str(exc))
        await self.snapshot(fresh=True)
        raise web.HTTPSeeOther(f"/instructions/{ident}")


def _text(value: Any) -> str:
    """A form's text as typed (browsers send line breaks as CRLF)."""
    return str(value).replace("\r\n", "\n")


def _matches(row: ThreadRow, chosen: dict[str, str]) -> bool:
    if chosen["status"] and row.status != chosen["status"]:
        return False
    if chosen["use_case"] and row.use_case != chosen["use_case"]:
        return False
    if chosen["skill"] and chosen["skill"] not in row.skills:
        return False
    if chosen["iteration"] and str(row.iteration) != chosen["iteration"]:
        return False
    if chosen["source"] and row.source != chosen["source"]:
        return False
    review = chosen["review"]
    if review and (row.review or "not reviewed") != review:
        return False
    terms = chosen["q"].lower().split()
    return all(term in row.search_text for term in terms)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@web.middleware
async def same_origin(request: web.Request, handler: Any) -> web.StreamResponse:
    """A write must come from this page: a browser names the page's origin on a POST."""
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="reviews are taken only from this page")
    return await handler(request)


@web.middleware
async def loopback_host(request: web.Request, handler: Any) -> web.StreamResponse:
    """Served on loopback, the page answers only to a loopback name: another site whose
    name was made to resolve to 127.0.0.1 (DNS rebinding) gets nothing from it."""
    if urlsplit(f"//{request.host}").hostname not in LOOPBACK:
        raise web.HTTPForbidden(text="this page answers to 127.0.0.1 or localhost only")
    return await handler(request)


def build_app(session: RunSession, title: str, loopback: bool = True) -> web.Application:
    """The page's routes; ``loopback``: served on this machine only (Host names checked)."""
    view = View(session, title)
    middlewares = [loopback_host, same_origin] if loopback else [same_origin]
    app = web.Application(middlewares=middlewares, client_max_size=4 * 1024**2)
    app.add_routes(
        [
            web.get("/", view.overview),
            web.get("/instructions", view.instructions),
            web.get("/instructions/{id}", view.instruction),
            web.get("/api/progress", view.progress),
            web.post("/pool/{action}", view.pool_change),
            web.post("/instructions/{id}/review", view.pair_review),
            web.static("/static", STATIC),
        ]
    )
    return app


async def run_server(session: RunSession, title: str, host: str, port: int) -> None:
    """Serve until cancelled; prints the address (the actual port when ``port`` is 0)."""
    runner = web.AppRunner(build_app(session, title, host in LOOPBACK), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    print(f"codeclm view: http://{shown}:{bound}/  (Ctrl-C to stop)", flush=True)
    if host not in LOOPBACK:
        print(
            f"codeclm view: serving on {host}: anyone who can reach it can read this run "
            "and review it",
            flush=True,
        )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
