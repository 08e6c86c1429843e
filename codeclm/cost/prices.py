"""What a role's tokens cost: its price, from the config's override, pydantic's maintained
price database (``genai-prices``, read from its bundled, versioned snapshot: no network), or
nothing for a local endpoint (the embedded model, a server on this machine).

A model the database does not know is priced as unknown, never as zero: its cost shows as
unknown with one line saying how to set a price.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from urllib.parse import urlsplit

from codeclm.config import ModelSettings, Price
from codeclm.records import RolePrice


def price_table() -> str:
    """The price database and its version, recorded with every cost."""
    from genai_prices import __version__

    return f"genai-prices {__version__}"


def price_sources(prices: dict[str, RolePrice | None]) -> str:
    """Where a run's prices came from, named as they were: "the config", the database and
    its version, both, and the roles free on this machine or unpriced."""
    parts = []
    if any(p is not None and p.source == "config" for p in prices.values()):
        parts.append("the config")
    if any(p is not None and p.source == "table" for p in prices.values()):
        parts.append(price_table())
    local = sorted(role for role, p in prices.items() if p is not None and p.source == "local")
    unknown = sorted(role for role, p in prices.items() if p is None)
    if local:
        parts.append(f"{', '.join(local)} free on this machine")
    if unknown:
        parts.append(f"{', '.join(unknown)} unpriced")
    return "; ".join(parts) or price_table()


def is_local(base_url: str | None) -> bool:
    """The embedded model (no URL), or a server on this machine (loopback). A server on a
    private network may be a gateway to a paid provider: it is priced like any other."""
    if not base_url:
        return True
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def role_price(model: str, base_url: str | None, override: Price | None) -> RolePrice | None:
    """The role's price: its override, else free for a local endpoint, else the database's
    (matched by the endpoint's provider, then by the model's name alone); None: unknown."""
    if override is not None:
        cached = override.input if override.cached_input is None else override.cached_input
        return RolePrice(
            model=model,
            source="config",
            input=override.input,
            output=override.output,
            cached_input=cached,
            batch_discount=override.batch_discount,
        )
    if is_local(base_url):
        return RolePrice(model=model, source="local", input=0, output=0, cached_input=0)
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    for url in (base_url, None):
        try:
            _, info = snapshot.find_provider_model(model, None, None, url)
        except LookupError:
            continue
        prices = info.get_prices(datetime.now(UTC))
        if prices.input_mtok is None or prices.output_mtok is None:
            return None  # listed without a token price: unknown, never zero
        return RolePrice(
            model=model,
            source="table",
            input=_number(prices.input_mtok),
            output=_number(prices.output_mtok),
            cached_input=_number(prices.cache_read_mtok or prices.input_mtok),
        )
    return None


def _number(value: object) -> float:
    """A price of the database (a Decimal, or tiers: their base rate) as a float."""
    base = getattr(value, "base", value)
    return float(base)  # type: ignore[arg-type]


def unknown_price_hint(role: str, model: str) -> str:
    """The one line that says how to price a model the database does not know."""
    return (
        f"the price of {role} model {model!r} is unknown ({price_table()} does not list it): "
        f"its cost shows as unknown; set one in the config: [{role}.price] input = …, "
        "output = … (USD per million tokens)"
    )


def config_prices(config: ModelSettings) -> dict[str, RolePrice | None]:
    """Each role's price from its settings alone (no server asked: for an estimate)."""
    roles = {role: config.role(role) for role in config.ROLES}
    return {
        role: role_price(settings.model or "embedded", settings.base_url, settings.price)
        for role, settings in roles.items()
    }
