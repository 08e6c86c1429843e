"""``codeclm view``: server-rendered pages over one run (aiohttp + Jinja2, no build step).

Read-only over the checkpoints; the only writes are a person's reviews, each through
``codeclm.review`` (checked there; a malformed one is answered 400 with the message, and
nothing is stored), and a person's blind scores (``view/judging.py``). A POST from another
site's page is refused (its Origin differs), so a page open in the same browser cannot
review on the user's behalf.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from codeclm.config import ConfigError
from codeclm.review import ReviewError, RunSession, entry_edit
from codeclm.view.data import FRESH_SECONDS, Snapshot, ThreadRow, chain, take_snapshot
from codeclm.view.guard import LOOPBACK, loopback_host, protect, same_origin, token_gate
from codeclm.view.judging import judging_routes
from codeclm.view.people import REVIEWER_COOKIE, remembering

PAGE_SIZE = 100
STATIC = Path(__file__).parent / "static"
FILTERS = ("status", "use_case", "skill", "iteration", "source", "review", "q")


class View:
    """The handlers, over one opened run."""

    def __init__(self, session: RunSession, title: str, shared: bool = False) -> None:
        self.session = session
        self.title = title
        self.shared = shared
        """Served beyond loopback: a review must name its reviewer."""
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

    def render(
        self, request: web.Request, name: str, status: int = 200, **values: Any
    ) -> web.Response:
        page = self.templates.get_template(name).render(
            title=self.title, reviewer=request.cookies.get(REVIEWER_COOKIE, ""), **values
        )
        return web.Response(text=page, status=status, content_type="text/html")

    def reviewer(self, request: web.Request, form: Any) -> str:
        """Who makes this review: the name in the form, else the one the page remembers;
        required when the page is served to a team (beyond loopback)."""
        name = str(form.get("reviewer", "")).strip() or request.cookies.get(REVIEWER_COOKIE, "")
        if self.shared and not name:
            raise ReviewError("give your name (reviewer), so the review records who made it")
        return name[:80]

    # ---- pages ------------------------------------------------------------------------

    async def overview(self, request: web.Request, error: str | None = None) -> web.Response:
        snap = await self.snapshot(fresh=error is not None)
        return self.render(
            request,
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
        page = min(max(1, int(asked) if asked.isascii() and asked.isdigit() else 1), pages)
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
            request,
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
            request,
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
            who = self.reviewer(request, form)
            if action == "drop":
                await self.session.edit_pool(drop=[ident], note=note, reviewer=who)
            elif action == "keep":
                await self.session.edit_pool(keep=[ident], note=note, reviewer=who)
            elif action in ("edit", "add"):
                fields = {"use_case": str(form.get("use_case", "")), "skills": form.get("skills")}
                change = entry_edit(fields)
                if action == "edit":
                    await self.session.edit_pool(edit={ident: change}, note=note, reviewer=who)
                else:
                    await self.session.edit_pool(add=[change], note=note, reviewer=who)
            elif action == "approve":
                if note is not None:
                    await self.session.edit_pool(note=note, reviewer=who)
                await self.session.approve_pool(
                    as_built=form.get("as_built") == "1",
                    discard_draft=form.get("discard_draft") == "1",
                    reviewer=who,
                )
            else:
                raise web.HTTPNotFound()
        except (ReviewError, ConfigError) as exc:  # (a read-only folder keeps no review)
            return await self.overview(request, error=str(exc))
        await self.snapshot(fresh=True)
        raise remembering(web.HTTPSeeOther("/#pool"), who)

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
            who = self.reviewer(request, form)
            await self.session.review_pair(
                ident,
                verdict or None,  # type: ignore[arg-type]
                note=str(form.get("note", "")),
                reviewer=who,
                **edits,
            )
        except (ReviewError, ConfigError) as exc:  # (a read-only folder keeps no review)
            return await self.instruction(request, error=str(exc))
        await self.snapshot(fresh=True)
        raise remembering(web.HTTPSeeOther(f"/instructions/{ident}"), who)


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
    if review and (row.review.split(" ")[0] or "not reviewed") != review:
        return False
    terms = chosen["q"].lower().split()
    return all(term in row.search_text for term in terms)


def build_app(
    session: RunSession, title: str, loopback: bool = True, token: str | None = None
) -> web.Application:
    """The page's routes; ``loopback``: served on this machine only (Host names checked);
    ``token``: what opens it (``codeclm view`` always gives one)."""
    view = View(session, title, shared=not loopback)
    middlewares = [loopback_host, same_origin] if loopback else [same_origin]
    if token is not None:
        middlewares.insert(0, token_gate(token))
    app = web.Application(middlewares=middlewares, client_max_size=4 * 1024**2)
    app.on_response_prepare.append(protect)
    app.add_routes(
        [
            web.get("/", view.overview),
            web.get("/instructions", view.instructions),
            web.get("/instructions/{id}", view.instruction),
            web.get("/api/progress", view.progress),
            web.post("/pool/{action}", view.pool_change),
            web.post("/instructions/{id}/review", view.pair_review),
            *judging_routes(view),
            web.static("/static", STATIC),
        ]
    )
    return app


def addresses(host: str) -> list[str]:
    """The names a reviewer can open the page by: ``host`` itself, or for every interface
    (0.0.0.0, ::) this machine's name and its addresses (an address of 0.0.0.0 opens
    nothing on another machine)."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    name = socket.gethostname()
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        found = set()
    return [name, *sorted(address for address in found if not address.startswith("127."))]


async def run_server(session: RunSession, title: str, host: str, port: int) -> None:
    """Serve until cancelled; prints the address (the actual port when ``port`` is 0)."""
    loopback = host in LOOPBACK
    token = secrets.token_urlsafe(24)
    app = build_app(session, title, loopback, token)
    runner = web.AppRunner(app, access_log=None)  # no log: the token is in an address
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    names = addresses(host)
    for number, name in enumerate(names):
        shown = f"[{name}]" if ":" in name else name
        ending = "  (Ctrl-C to stop)" if number == 0 else ""
        also = "codeclm view: " if number == 0 else "codeclm view: or "
        print(f"{also}http://{shown}:{bound}/?token={token}{ending}", flush=True)
    if not loopback:
        print(
            f"codeclm view: serving on {host}: the page opens only with this address's token; "
            "share it only with your reviewers, who give their name with each review",
            flush=True,
        )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
