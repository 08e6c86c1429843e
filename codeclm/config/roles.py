"""One model role's settings: its model and endpoint, sampling, limits and price."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

CEILING_DEFAULT = 8192


class Price(BaseModel):
    """USD per million tokens; set in a role's ``[strong.price]`` table to override the
    database (or to price a model it does not know, or a local server you pay for)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    input: float = Field(ge=0, description="USD per million input tokens")
    output: float = Field(ge=0, description="USD per million output tokens")
    cached_input: float | None = Field(
        None,
        ge=0,
        description="USD per million input tokens read from the provider's prompt cache "
        "(default: input)",
    )
    batch_discount: float = Field(
        0.5, gt=0, le=1, description="the share of the price a Batch API request pays"
    )


class RoleConfig(BaseModel):
    """One model role. ``model`` unset means the embedded local model."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(
        2048, gt=0, description="output tokens per request (the paper's main setting: 2048)"
    )
    max_tokens_ceiling: int = Field(
        CEILING_DEFAULT,
        gt=0,
        description="a reply cut at max_tokens is asked again with twice the budget, up to "
        "this (and the model's context); still cut, an answer is never data",
    )
    timeout: float = Field(120.0, gt=0, description="seconds per HTTP request")
    strict_schema: bool = Field(
        False,
        description="send JSON schemas with strict=true (OpenAI's strict structured outputs)",
    )
    # Limits of this role's provider; the two roles are often different providers.
    max_concurrency: int | None = Field(None, gt=0, description="this role's requests in flight")
    requests_per_minute: float | None = Field(None, gt=0, description="this role's request rate")
    tokens_per_minute: float | None = Field(
        None, gt=0, description="prompt estimate + max_tokens per request, as OpenAI counts"
    )
    context_tokens: int | None = Field(
        None, gt=0, description="the model's context; unset: asked from the server at start-up"
    )
    price: Price | None = Field(
        None,
        description="USD per million tokens (input, output, cached_input), over the price "
        "database's; a local server is free unless this is set",
    )
    max_cost: float | None = Field(
        None, gt=0, description="USD this role may spend in the run (a cap, like --max-cost)"
    )

    @property
    def embedded(self) -> bool:
        return self.model is None and self.base_url is None

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_the_url(cls, value: str | None) -> str | None:
        """A key rides in ``api_key_env``, never in the URL: an address with user:password@
        would be written wherever the server is named, and the client refuses it besides."""
        if value is not None and (urlsplit(value).username or urlsplit(value).password):
            raise ValueError(
                "a base URL with user:password@ is not taken: put the key in an environment "
                "variable and name it with api_key_env (--ROLE-api-key-env)"
            )
        return value


#: A role's settings that pace or price its requests: never in a run's fingerprint.
ROLE_PACING = (
    "timeout",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "price",
    "max_cost",
)
