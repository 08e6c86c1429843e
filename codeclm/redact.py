"""What may be written anywhere (records, logs, messages, traces): a URL without its
password, a server's name without its credentials, a provider's words without a key."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

_SECRETS: set[str] = set()
"""The API keys this process uses (``remember_secret``), never to be written out."""

#: What looks like a key in a provider's message: a provider's prefix (OpenAI's 401 quotes
#: a masked ``sk-...``). Model names, request and batch ids stay: users need them.
_KEY_LIKE = re.compile(r"\b(?:sk|gsk|xai|hf)[-_][A-Za-z0-9_*.\-]{4,}|\bAIza[A-Za-z0-9_\-]{10,}")


def remember_secret(value: str | None) -> None:
    """A key this process holds: ``scrub`` removes it from anything written."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    """``text`` without the keys this process holds nor anything shaped like a key."""
    for secret in _SECRETS:
        text = text.replace(secret, "[key]")
    return _KEY_LIKE.sub("[key]", text)


def _host_and_port(url: str) -> str:
    """The URL's host (IPv6 in brackets) and port: no user, no password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def server_name(base_url: str | None, default: str = "https://api.openai.com/v1") -> str:
    """A server as records, messages and traces name it: scheme, host, port and path,
    without user, password or query (a gateway's key may ride in any of them)."""
    if not base_url:
        return default
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, _host_and_port(base_url), parts.path, "", ""))


#: Query parameters that carry a secret (libpq's ``password`` and ``sslpassword``, a
#: gateway's ``api_key``, ``key``, ``token``): dropped wherever a URL is written. Exact
#: names: ``sslkey`` or ``passfile`` name files, and the URL is used again to connect.
SECRET_PARAMETERS = frozenset(
    {
        "password",
        "sslpassword",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "token",
        "access_token",
        "auth_token",
        "secret",
        "client_secret",
    }
)


def redact_url(url: str | None) -> str | None:
    """A URL as it may be written anywhere: without the password in its user info nor any
    query parameter that carries a secret (the user name stays: with it, libpq finds the
    password in PGPASSWORD or ~/.pgpass; ``sslmode`` and the like stay too)."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = _host_and_port(url)
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    kept = [  # the raw text of each other parameter, as given (libpq reads it so again)
        piece
        for piece in parts.query.split("&")
        if piece and unquote_plus(piece.split("=", 1)[0]).lower() not in SECRET_PARAMETERS
    ]
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(kept)))
