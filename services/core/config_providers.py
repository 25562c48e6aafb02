"""Settings of where requests go and what they cost: the pricing table, the upstreams (OpenAI, Azure,
Anthropic, pools of keys, Bedrock), rate limits and the reconciliation against the providers' bills.
Sections of :class:`spendgate.core.config.Settings` (which alone reads the environment and files)."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from spendgate.domain.errors import ConfigError
from spendgate.domain.money import usd_to_micros
from spendgate.domain.pricing import BATCH_PERCENT, ModelPrice, PriceTable


class PriceUSD(BaseModel):
    """A model's price in USD per 1M tokens, as strings or integers (never floats)."""

    input: str
    cached_input: str
    output: str
    cache_write_5m: str | None = None
    """Writing a 5-minute prompt-cache entry (Anthropic models); unset: 1.25 × input, Anthropic's rule."""
    cache_write_1h: str | None = None
    """Writing a 1-hour prompt-cache entry; unset: 2 × input."""

    @field_validator("input", "cached_input", "output", "cache_write_5m", "cache_write_1h", mode="before")
    @classmethod
    def _no_float(cls, v: Any) -> str | None:
        if isinstance(v, float):
            raise ValueError("write prices as strings (\"1.25\"), floats cannot hold cents exactly")
        return None if v is None else str(v)

    def to_price(self) -> ModelPrice:
        price = ModelPrice.from_usd(self.input, self.cached_input, self.output)
        return replace(price, cache_write_5m_micros=_micros_or_none(self.cache_write_5m),
                       cache_write_1h_micros=_micros_or_none(self.cache_write_1h))


def _micros_or_none(usd: str | None) -> int | None:
    return None if usd is None else usd_to_micros(usd)


class PricingSettings(BaseModel):
    models: dict[str, PriceUSD] = Field(default_factory=dict)
    """Overrides of and additions to the shipped table."""
    fallback: PriceUSD | None = None
    """Price for models missing from the table; unset means such requests are refused."""
    images: dict[str, str] = Field(default_factory=dict)
    """USD per generated image by model (``"dall-e-3": "0.080"``): overrides of and additions to the shipped
    per-image prices (``/v1/images/*``)."""
    audio_seconds: dict[str, str] = Field(default_factory=dict)
    """USD per second of audio by model (``"whisper-1": "0.0001"``), for ``/v1/audio/*``."""
    batch_percent: int = Field(default=BATCH_PERCENT, ge=1, le=100)
    """Share of the token prices a ``/v1/batches`` batch is metered at (OpenAI: 50 %)."""

    @field_validator("images", "audio_seconds", mode="before")
    @classmethod
    def _no_float_units(cls, v: Any) -> Any:
        if isinstance(v, dict) and any(isinstance(p, float) for p in v.values()):
            raise ValueError("write prices as strings (\"0.04\"), floats cannot hold cents exactly")
        return {k: str(p) for k, p in v.items()} if isinstance(v, dict) else v

    def table(self) -> PriceTable:
        return PriceTable.with_overrides(
            {name: p.to_price() for name, p in self.models.items()},
            self.fallback.to_price() if self.fallback else None,
            images={name: usd_to_micros(p) for name, p in self.images.items()},
            audio_seconds={name: usd_to_micros(p) for name, p in self.audio_seconds.items()},
        )


class ReconcileProvider(BaseModel):
    """One provider account whose own usage and cost reports spendgate compares with the ledger."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    """How reports, alerts and the reconciliation table name it, e.g. ``openai`` or ``anthropic-eu``."""
    kind: Literal["openai", "anthropic"]
    """``openai``: the organization Usage and Costs API; ``anthropic``: the Usage & Cost Admin API."""
    admin_key: SecretStr
    """An admin key (OpenAI ``sk-admin-…``, Anthropic ``sk-ant-admin…``); a project or API key cannot read them."""
    base_url: str | None = None
    """Default ``https://api.openai.com/v1`` or ``https://api.anthropic.com/v1``."""
    api_key_ids: dict[str, str] = Field(default_factory=dict)
    """The provider's API key id (``key_…``, ``apikey_…``) → the spendgate upstream that uses it; the
    comparison goes per upstream once usage events name their upstream."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, not {v!r}")
        return v.rstrip("/") if v else v

    @property
    def url(self) -> str:
        default = "https://api.openai.com/v1" if self.kind == "openai" else "https://api.anthropic.com/v1"
        return self.base_url or default


class ReconcileSettings(BaseModel):
    """Reconciliation with the provider's bill (docs/reconciliation.md)."""

    providers: list[ReconcileProvider] = Field(default_factory=list)
    """Empty: the nightly job does nothing and ``spendgate reconcile`` says what to configure."""
    hour_utc: int = Field(default=7, ge=0, le=23)
    """The nightly run starts after this hour (UTC), once the providers' reports of yesterday have settled."""
    lookback_days: int = Field(default=3, ge=1, le=31)
    """Each nightly run re-compares the last this many complete days (late usage lands in earlier days)."""
    gap_pct: int = Field(default=2, ge=0, le=100)
    gap_min_usd: str = "1.00"
    """A day raises a ``reconciliation_gap`` alert when the provider billed at least ``gap_pct`` percent and at
    least ``gap_min_usd`` dollars more than the ledger counted."""
    page_days: int = Field(default=31, ge=1, le=31)
    """Day buckets asked per report page (both providers allow at most 31 per page of daily buckets)."""
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_pages: int = Field(default=100, ge=1, le=10_000)
    """A report that keeps answering ``has_more`` past this many pages is refused (a loop, not a bill)."""

    @field_validator("gap_min_usd", mode="before")
    @classmethod
    def _dollars(cls, v: object) -> str:
        from spendgate.domain.money import usd_to_micros

        if isinstance(v, float):
            v = str(v)
        if not isinstance(v, str | int):
            raise ValueError("must be a dollar amount such as 1.00")
        try:
            if usd_to_micros(v) < 0:
                raise ValueError("cannot be negative")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be a dollar amount such as 1.00 ({exc})") from None
        return str(v)

    @field_validator("providers")
    @classmethod
    def _unique(cls, v: list[ReconcileProvider]) -> list[ReconcileProvider]:
        names = [p.name for p in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"provider names must be unique: {', '.join(dupes)} appears more than once")
        for kind in sorted({p.kind for p in v}):
            same = [p for p in v if p.kind == kind]
            if len(same) > 1 and not all(p.api_key_ids for p in same):
                raise ValueError(f"several {kind} providers: each needs api_key_ids (its key ids -> upstream names), "
                                 "so the ledger can be split between them by the upstream that served each request")
            names = [u for p in same for u in set(p.api_key_ids.values())]
            if len(names) != len(set(names)):
                raise ValueError(f"several {kind} providers map keys to the same upstream name: an upstream's usage "
                                 "belongs to one provider account")
        return v

    @property
    def gap_min_micros(self) -> int:
        from spendgate.domain.money import usd_to_micros

        return usd_to_micros(self.gap_min_usd)


_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")


_BEDROCK_MODEL_ID = re.compile(r"[A-Za-z0-9._:/+@-]{1,2048}")


class BedrockSettings(BaseModel):
    """AWS Bedrock behind the OpenAI routes (docs/bedrock.md): requests for the models named here go to
    Bedrock's Converse API, signed with the credentials of botocore's standard chain."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key (``modles``) is an error, not a silent no-op

    region: str | None = None
    """The AWS region (``us-east-1``); required once ``models`` names any."""
    endpoint_url: str | None = None
    """Another endpoint than ``https://bedrock-runtime.<region>.amazonaws.com`` (a VPC endpoint, a test fake)."""
    profile: str | None = None
    """An AWS profile from ``~/.aws/config``; unset: botocore's default chain (``AWS_PROFILE``, the
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` variables, roles)."""
    models: dict[str, str] = Field(default_factory=dict)
    """Model name clients send → Bedrock model id or inference profile
    (``{"claude-sonnet-4-5": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}``); each name needs a price."""
    default_max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    """``inferenceConfig.maxTokens`` for requests that name no limit (Codex names none); unset: Bedrock's
    default for the model."""

    @model_validator(mode="after")
    def _check(self) -> BedrockSettings:
        if self.region is not None and _AWS_REGION.fullmatch(self.region) is None:
            raise ValueError(f"bedrock.region: {self.region[:60]!r} is not an AWS region such as 'us-east-1'")
        if self.models and self.region is None:
            raise ValueError("bedrock.region is required when bedrock.models names a model")
        if self.endpoint_url is not None:
            parts = urllib.parse.urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"bedrock.endpoint_url: {self.endpoint_url[:100]!r} is not an http(s) URL")
        for name, model_id in self.models.items():
            if not name or len(name) > 100 or not name.isprintable() or name != name.strip():
                raise ValueError(f"bedrock.models: {name[:100]!r} is not a model name (1-100 printable characters)")
            if not isinstance(model_id, str) or _BEDROCK_MODEL_ID.fullmatch(model_id) is None:
                raise ValueError(f"bedrock.models.{name}: {str(model_id)[:100]!r} is not a Bedrock model id "
                                 "(such as 'anthropic.claude-sonnet-4-5-20250929-v1:0' or an inference profile ARN)")
        return self


UPSTREAM_KINDS = ("openai", "azure", "anthropic")
"""Kinds of upstream the pool can send a request to; each has its adapter in
``spendgate.proxy.upstream_kinds`` (Bedrock is configured apart, under ``bedrock``). ``anthropic``
serves the Anthropic Messages routes only, the others the OpenAI-API routes only."""


_UPSTREAM_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class UpstreamSettings(BaseModel):
    """One upstream of the pool (``upstreams:``): an OpenAI-compatible API or an Azure OpenAI resource."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key (``deployment:``) must not be dropped silently

    name: str
    """Recorded in each usage event (``upstream``) and in the metrics' labels: lower-case letters, digits,
    ``.``, ``_``, ``-``."""
    kind: str = "openai"
    url: str
    """Base URL: ``https://api.openai.com/v1`` (kind ``openai``, any OpenAI-compatible server), the
    resource's endpoint ``https://NAME.openai.azure.com`` (kind ``azure``), or
    ``https://api.anthropic.com/v1`` (kind ``anthropic``, its key sent as ``x-api-key``)."""
    key: SecretStr | None = None
    key_env: str | None = None
    """Name of an environment variable holding the key (instead of ``key``; read once at start)."""
    weight: int = Field(default=1, ge=1, le=1000)
    models: list[str] | Literal["*"] = "*"
    """Models this upstream serves; ``"*"`` means any (kind ``azure``: the ``deployments``' models)."""
    api_version: str = "v1"
    """Azure only: ``v1`` sends ``/openai/v1/...`` (no ``api-version``); a dated version (``2024-10-21``)
    sends ``/openai/deployments/{deployment}/...?api-version=...``."""
    deployments: dict[str, str] = Field(default_factory=dict)
    """Azure only: model name -> deployment name."""

    @model_validator(mode="after")
    def _consistent(self) -> UpstreamSettings:
        where = f"upstream {self.name!r}"
        if not _UPSTREAM_NAME.fullmatch(self.name):
            raise ValueError(f"{where}: a name is 1-63 lower-case letters, digits, '.', '_' or '-'")
        if self.kind not in UPSTREAM_KINDS:
            raise ValueError(f"{where}: unknown kind {self.kind!r} (one of: {', '.join(UPSTREAM_KINDS)})")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{where}: url must be an http(s) URL, not {self.url!r}")
        if self.key is not None and self.key_env is not None:
            raise ValueError(f"{where}: give key or key_env, not both")
        if self.kind == "azure":
            if not self.deployments:
                raise ValueError(f"{where}: kind azure needs deployments (model: deployment name)")
            if self.models != "*":
                missing = [m for m in self.models if m not in self.deployments]
                if missing:
                    raise ValueError(f"{where}: no deployment for model {missing[0]!r} (add it to deployments)")
            if self.key is None and self.key_env is None:
                raise ValueError(f"{where}: kind azure needs key or key_env (sent as the api-key header)")
        elif self.deployments or self.api_version != "v1":
            raise ValueError(f"{where}: deployments and api_version are for kind azure only")
        if self.models != "*" and not self.models:
            raise ValueError(f"{where}: models is empty; list its models or use \"*\"")
        return self

    def secret(self) -> str | None:
        """The key: ``key``, else the variable ``key_env`` names (an error if that is unset)."""
        if self.key is not None:
            return self.key.get_secret_value()
        if self.key_env is None:
            return None
        value = os.environ.get(self.key_env)
        if not value:
            raise ConfigError(f"upstream {self.name!r}: key_env names {self.key_env}, which is unset or empty")
        return value


class UpstreamPoolSettings(BaseModel):
    """Failover between the ``upstreams`` that serve a model, and each one's circuit breaker."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failures (429, 5xx, connection failure, timeout) that open an upstream's circuit."""
    cooldown_s: float = Field(default=30.0, gt=0)
    """How long an open circuit skips its upstream before one probe request may try it (half-open)."""
    max_retry_after_s: float = Field(default=300.0, ge=0)
    """Longest ``Retry-After`` honoured: an upstream that asks for longer is skipped for this long."""
    max_attempts: int = Field(default=3, ge=1)
    """Upstreams one request may try, the first included."""
    headers_timeout_s: float | None = Field(default=None, gt=0)
    """When another upstream could still serve, give up on one that has not sent its response headers
    within this many seconds (unset: ``upstream_read_timeout_s``). A non-streamed answer's headers come
    only once it is complete, so keep this above the longest such answer."""
    seed: int | None = None
    """Seed of the weighted choice (tests); unset: a random one."""


class RateLimitSettings(BaseModel):
    """How the proxies share their rate-limit counts (the limits themselves live in the database:
    ``spendgate ratelimits set``; see docs/rate-limits.md)."""

    sync_interval_s: float = Field(default=0.1, gt=0, le=5)
    """How often a proxy publishes its counts and reads its peers' while a limit is in force; the bound
    on what proxies admit together past a limit is stated in terms of it."""
    reload_s: float = Field(default=2.0, gt=0, le=300)
    """How often the limits are re-read: a change applies within this, without a restart."""
    max_wait_s: float = Field(default=1.0, ge=0, le=30)
    """How long a request that used up this proxy's share may wait for the next sync before the
    window alone decides (see docs/rate-limits.md)."""
