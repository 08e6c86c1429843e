"""Who is using the page: the name a person reviews and judges under, which the page
remembers in a cookie (set only by their own form, same-site)."""

from __future__ import annotations

from aiohttp import web

REVIEWER_COOKIE = "codeclm_reviewer"


def remembering(response: web.HTTPException, reviewer: str) -> web.HTTPException:
    """The page remembers the person's name for their next review or score."""
    if reviewer:
        response.set_cookie(REVIEWER_COOKIE, reviewer, samesite="Strict", httponly=True)
    return response
