"""What keeps ``codeclm view``'s page to the person it was opened for: the token (given once
in the address, then kept in this server's own cookie), writes only from the page itself
(its Origin), a loopback page answering to loopback names only (no DNS rebinding), and the
headers that keep it out of other sites' frames."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web


def token_cookie(token: str) -> str:
    """The token's cookie, named for this server (as Jupyter names its own): a browser
    sends a host's cookies to every port on it, so two pages served on one host must not
    overwrite each other's. The name tells nothing of the token."""
    return "codeclm_token_" + hashlib.sha256(token.encode()).hexdigest()[:12]


#: On every response: no page of another origin may frame this one (clickjacking), no
#: address leaves for another site in a Referer, no content is sniffed into another type.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


async def protect(request: web.Request, response: web.StreamResponse) -> None:
    """Set the security headers on every response, errors and static files included
    (``app.on_response_prepare``)."""
    response.headers.update(SECURITY_HEADERS)


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


def token_gate(token: str) -> Any:
    """The page opens only with the token ``codeclm view`` printed at start, on loopback
    too (as Jupyter does: any process of any user on the machine reaches loopback): given
    once in the address, then kept in this server's own cookie. Compared in constant time;
    never logged (the server keeps no access log)."""
    expected = token.encode()
    cookie = token_cookie(token)

    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), expected):
                raise web.HTTPForbidden(text="wrong token")
            query = {k: v for k, v in request.query.items() if k != "token"}
            found = web.HTTPSeeOther(str(request.rel_url.with_query(query)))
            # Lax: the printed address opened from another page (a chat, a notebook) must
            # work; writes need this page's Origin and no other site may frame it.
            found.set_cookie(cookie, token, samesite="Lax", httponly=True)
            raise found
        if not hmac.compare_digest(request.cookies.get(cookie, "").encode(), expected):
            raise web.HTTPForbidden(
                text="this page needs its token: open the address codeclm view printed at start"
            )
        return await handler(request)

    return gate
