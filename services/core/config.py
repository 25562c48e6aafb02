"""The one settings object. Only this module reads the environment.

Sources, highest first: ``SPENDGATE_*`` environment variables (nested with ``__``, e.g.
``SPENDGATE_PRICING__FALLBACK__INPUT=1.00``; names are case-insensitive; a list or mapping setting
takes JSON, e.g. ``SPENDGATE_ENFORCEMENT__THRESHOLDS_PCT='[80, 95, 110]'``), the YAML config file
(``SPENDGATE_CONFIG``, else ``<data_dir>/spendgate.yaml`` when it exists), then the defaults below.
:func:`load_settings` merges them and pydantic validates the result.

The merge is the forty lines below rather than ``pydantic-settings``: importing that library cost a
short command such as ``spendgate keys list`` about 0.13 s, a quarter of its run
(``benchmarks/cli_startup.py``), for the two sources spendgate reads.
"""

from __future__ import annotations

import json
import os
import re
import socket
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError, UnknownModelError
from spendgate.domain.money import usd_to_micros
from spendgate.domain.pricing import BATCH_PERCENT, ModelPrice, PriceTable


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("spendgate", appauthor=False))


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


class SmtpSettings(BaseModel):
    """Outgoing mail for alerts and the nightly forecast report (shared by alerter and forecaster)."""

    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "spendgate@localhost"
    timeout_s: float = 30.0
    validate_certs: bool = True
    ca_file: Path | None = None
    """Extra CA bundle to trust (a private mail relay's certificate)."""


class ForecastSettings(BaseModel):
    """The forecaster: schedule, simulation size and the nightly report."""

    interval_s: float = Field(default=3600.0, gt=0)
    """Forecast every scope with a monthly budget this often (and at each local midnight)."""
    paths: int = Field(default=1000, ge=100)
    lookback_days: int = Field(default=182, ge=28)
    max_heavy_fits: int = Field(default=300, ge=0)
    """Per pass, at most this many scopes get the statsmodels fit on top of the cheap model."""
    report_recipients: list[str] = Field(default_factory=list)
    """Who gets the nightly report; empty means the worker sends none (``forecast report --send`` still can)."""
    report_hour_utc: int = Field(default=6, ge=0, le=23)
    report_top: int = 5


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


class AlertSettings(BaseModel):
    """The alerter: routes file, secrets for its channels, and delivery retry timings."""

    routes_file: Path | None = None
    """YAML file with ``targets:``, ``routes:`` and ``developer_email:``; unset means no routes."""
    secrets_file: Path | None = None
    """YAML mapping of secret name to value, or a directory with one file per secret."""
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """Channel secrets by name (``SPENDGATE_ALERTS__SECRETS__<NAME>``), referenced as ``{secret: name}``."""
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    retry_after_max_s: float = 900.0
    request_timeout_s: float = 10.0
    workers_per_channel: int = Field(default=2, ge=1)
    schedule_every_s: float = 15.0
    """How often digests and PagerDuty resolves are checked."""
    top_sessions: int = 5


class ConsoleLinkSettings(BaseModel):
    """Links into the console from alert messages (``SPENDGATE_CONSOLE_LINKS__PUBLIC_URL``)."""

    model_config = ConfigDict(extra="forbid")

    public_url: str | None = None
    """The console's address as people open it, e.g. ``https://spend.example.com``; unset: no links."""

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        url = v.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
            raise ValueError(f"console_links.public_url must be an http(s) address such as "
                             f"https://spend.example.com, not {v[:80]!r}")
        if parts.query or parts.fragment:
            raise ValueError("console_links.public_url takes no ?query or #fragment: pages add their own")
        return url


class OtelSettings(BaseModel):
    """OpenTelemetry traces, exported over OTLP/HTTP (protobuf); off unless an endpoint is set."""

    endpoint: str | None = None
    """Where spans are POSTed (``http://collector:4318/v1/traces``). Unset: the standard
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is), else ``OTEL_EXPORTER_OTLP_ENDPOINT`` plus
    ``/v1/traces``; none of them set means no tracing, and opentelemetry is not even imported."""
    service_name: str = "spendgate"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra request headers for the collector (an API key)."""
    timeout_s: float = Field(default=10.0, gt=0)
    export_interval_s: float = Field(default=2.0, gt=0)
    """How often the batch of finished spans is sent."""


class SupervisorSettings(BaseModel):
    """Restarting a background loop that failed: capped exponential backoff with jitter."""

    backoff_base_s: float = Field(default=0.5, gt=0)
    """The first restart waits between half and all of this."""
    backoff_cap_s: float = Field(default=10.0, gt=0)
    """No restart waits longer than this, however many failures in a row."""


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


class PolicySigningSettings(BaseModel):
    """The Ed25519 key that signs every stored policy version (docs/policy.md, "Versions, signatures and
    routing rules")."""

    signing_key: SecretStr | None = None
    """The private key: a path to a PEM (PKCS#8) file, the PEM text itself, or 32 raw bytes in base64.
    Unset: ``<data_dir>/policy-signing-key.pem``, created (mode 0600) at the first ``policy apply``."""
    verify_key: str | None = None
    """The public key to verify with (path, PEM text or 32 raw bytes in base64) where the private key is not
    kept; unset: the signing key's own."""


class GuardSettings(BaseModel):
    """The guard and rationing (docs/policy.md, "The guard" and "Rationing")."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Watch the active policy version and roll it back when the turns one of its changes touched (a routing
    rule, the downgrade size limit, a budget, stage thresholds, a retry cap, exploration) got worse."""
    tolerance_pct: float = Field(default=2.0, gt=0, le=50)
    """A change's turns may score this much worse (relative, percent) before the guard acts; it acts only when
    the regression's 95 % lower bound is past it."""
    interval_s: float = Field(default=300.0, ge=1, le=86_400)
    """How often the guard checks (and, with ``auto_ration``, rations)."""
    min_turns: int = Field(default=30, ge=30, le=100_000)
    """Turns each side (before and since the version) needs before the guard judges a change (at least 30,
    the bootstrap's minimum)."""
    baseline_days: int = Field(default=7, ge=1, le=60)
    """The baseline is the turns of the last this many days before the version went live (7: every
    weekday and hour once)."""
    watch_days: int = Field(default=14, ge=1, le=90)
    """A version older than this is no longer watched."""
    auto_ration: bool = False
    """When a scope's month-end P50 crosses its monthly budget, apply the least disruptive proposal of
    ``spendgate policy ration`` as a new signed version (approver ``spendgate-ration``)."""
    ration_days: int = Field(default=14, ge=1, le=60)
    """Rationing estimates each proposal from a dry-run of this many recent days, scaled to the days left."""


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _existing_files(section: str, paths: Mapping[str, Path | None]) -> None:
    for name, path in paths.items():
        if path is not None and not path.is_file():
            raise ValueError(f"{section}.{name}: {path} does not exist or is not a file")


class KafkaSettings(BaseModel):
    """How the Kafka bus authenticates to its brokers and encrypts the connection (a managed cluster:
    ``SASL_SSL`` with ``SCRAM-SHA-512`` or ``PLAIN``; mutual TLS: ``SSL`` with a client certificate)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt security setting must not be silently dropped

    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    """CA bundle the brokers' certificates are checked against; unset means the system's trusted CAs."""
    ssl_certfile: Path | None = None
    """Client certificate (PEM) for mutual TLS, with its key in ``ssl_keyfile``."""
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    """Password of an encrypted ``ssl_keyfile``."""

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        sasl, tls = self.security_protocol.startswith("SASL_"), self.security_protocol.endswith("SSL")
        if sasl:
            if self.sasl_mechanism is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs a sasl_mechanism "
                                 "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password is not None:
            raise ValueError(f"SASL settings are given but security_protocol is {self.security_protocol}: "
                             "use SASL_SSL (or SASL_PLAINTEXT), or remove them")
        tls_files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile,
                     "ssl_keyfile": self.ssl_keyfile}
        if not tls and (any(tls_files.values()) or self.ssl_key_password is not None):
            raise ValueError(f"TLS files are given but security_protocol is {self.security_protocol}: "
                             "use SSL or SASL_SSL, or remove them")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a client certificate needs both ssl_certfile and ssl_keyfile")
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise ValueError("ssl_key_password is set without an ssl_keyfile")
        _existing_files("kafka", tls_files)
        return self


PostgresSslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class DatabaseSettings(BaseModel):
    """TLS to the PostgreSQL server of ``database_url``, named as libpq names them. Each one set here is
    added to the URL's query (where asyncpg reads it), so every connection spendgate opens uses it."""

    model_config = ConfigDict(extra="forbid")

    sslmode: PostgresSslMode | None = None
    """Unset means what the URL says, else asyncpg's default (``prefer``). ``verify-full`` checks the
    server's certificate against ``sslrootcert`` and its name against the URL's host."""
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    """Client certificate (PEM), with its key in ``sslkey``."""
    sslkey: Path | None = None
    sslpassword: SecretStr | None = None
    """Password of an encrypted ``sslkey``."""

    @model_validator(mode="after")
    def _consistent(self) -> DatabaseSettings:
        files = {"sslrootcert": self.sslrootcert, "sslcert": self.sslcert, "sslkey": self.sslkey}
        if self.sslmode in ("verify-ca", "verify-full") and self.sslrootcert is None:
            raise ValueError(f"sslmode {self.sslmode} needs sslrootcert (the CA that signed the server's "
                             "certificate)")
        if (self.sslcert is None) != (self.sslkey is None):
            raise ValueError("a client certificate needs both sslcert and sslkey")
        if self.sslpassword is not None and self.sslkey is None:
            raise ValueError("sslpassword is set without an sslkey")
        _existing_files("database", files)
        return self

    def query(self) -> dict[str, str]:
        """The settings given, as URL query parameters."""
        values = {"sslmode": self.sslmode, "sslrootcert": self.sslrootcert, "sslcert": self.sslcert,
                  "sslkey": self.sslkey,
                  "sslpassword": self.sslpassword.get_secret_value() if self.sslpassword else None}
        return {k: str(v) for k, v in values.items() if v is not None}


ConsoleRole = Literal["admin", "finops", "manager", "developer"]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_url(what: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute https:// URL, not {url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError(f"{what} must use https (plain http is accepted for localhost only): {url!r}")
    return url


class OidcSettings(BaseModel):
    """Sign-in to the console through the organisation's OpenID Connect provider (docs/console.md)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str
    """The IdP's issuer URL; its ``/.well-known/openid-configuration`` is read at the first sign-in."""
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    """Unset for a public client (PKCE only)."""
    redirect_url: str
    """This console's callback as the IdP knows it: ``https://spend.example.com/auth/callback``."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    role_claim: str = "groups"
    """The ID token claim (a string or a list of strings) whose values ``role_map`` maps to roles."""
    role_map: dict[str, ConsoleRole] = Field(default_factory=dict)
    """Claim value → role; a person matching several gets the strongest; matching none is refused."""
    teams_claim: str | None = None
    """Claim listing a manager's teams (names as on virtual keys)."""
    developer_claim: str | None = None
    """Claim holding the developer id used on the person's virtual keys (``preferred_username``, ``email``)."""
    name_claim: str = "name"

    @field_validator("issuer", "redirect_url")
    @classmethod
    def _urls(cls, v: str, info: Any) -> str:
        return _check_url(f"console.oidc.{info.field_name}", v.rstrip("/") if info.field_name == "issuer" else v)

    @model_validator(mode="after")
    def _check(self) -> OidcSettings:
        if "openid" not in self.scopes:
            raise ValueError("console.oidc.scopes must include openid")
        if not urllib.parse.urlsplit(self.redirect_url).path.endswith("/auth/callback"):
            raise ValueError("console.oidc.redirect_url must be this console's /auth/callback "
                             f"(https://<console host>/auth/callback), not {self.redirect_url!r}")
        if not self.role_map:
            raise ValueError("console.oidc.role_map is empty: map at least one value of the "
                             f"{self.role_claim!r} claim to a role (admin, finops, manager, developer), "
                             "or nobody can sign in")
        return self


class ConsoleSettings(BaseModel):
    """The console's sign-in and sessions (the admin service serves the console and the admin API)."""

    model_config = ConfigDict(extra="forbid")

    oidc: OidcSettings | None = None
    """Unset: no browser sign-in (named API tokens and the break-glass admin token still work)."""
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    """How long a sign-in lasts; the cookie and the server-side session expire together."""
    secure_cookies: bool = True
    """The session cookie is ``Secure`` (sent over https only). Turn off only for a console on plain-http
    localhost; refused with a sign-in at a non-loopback http redirect URL."""
    manager_raise_limit_usd: str = "0"
    """The largest raise a manager may give one of their teams' budgets, in US dollars (``"0"``: none)."""
    api_token_max_days: int = Field(default=365, ge=1, le=3650)
    """The longest a named API token may live."""

    @field_validator("manager_raise_limit_usd", mode="before")
    @classmethod
    def _usd(cls, v: Any) -> str:
        if isinstance(v, float):
            raise ValueError("write the amount as a string (\"500\"), floats cannot hold cents exactly")
        if usd_to_micros(str(v)) < 0:
            raise ValueError("console.manager_raise_limit_usd must not be negative")
        return str(v)

    @model_validator(mode="after")
    def _check(self) -> ConsoleSettings:
        if self.oidc is not None and not self.secure_cookies:
            host = urllib.parse.urlsplit(self.oidc.redirect_url).hostname
            if host not in _LOOPBACK:
                raise ValueError("console.secure_cookies is off but console.oidc.redirect_url is not on localhost: "
                                 "session cookies would travel in clear text")
        return self

    @property
    def manager_raise_limit_micros(self) -> int:
        return usd_to_micros(self.manager_raise_limit_usd)


class Settings(BaseModel):
    """Everything spendgate can be configured with (built from its sources by :func:`load_settings`)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    """PostgreSQL URL; unset means the embedded server under ``data_dir``."""
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    """TLS to the server of ``database_url`` (``SPENDGATE_DATABASE__SSLMODE=verify-full``)."""
    bus: str = "postgres"
    """``postgres`` (the embedded log table), ``kafka://host:port[,host:port]`` or ``memory``."""
    kafka_idempotence: bool = True
    """Idempotent producer (no duplicates from producer retries). Turn off only for a broker or managed service
    without InitProducerId, or a principal without the IdempotentWrite ACL (Kafka before 2.8): the ledger
    dedupes on ``event_id`` either way, so it costs duplicates on the wire, never double counting."""
    kafka_namespace: str = ""
    """Prefixed to every topic and consumer-group name, so several deployments can share one cluster."""
    kafka_replication_factor: int = 1
    """Replication factor of the topics spendgate creates: 3 on a production cluster (with the brokers'
    ``min.insync.replicas=2``; the producer always waits for ``acks=all``)."""
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_rebalance_timeout_ms: int | None = None
    """Consumer-group timings; brokers enforce a minimum session timeout (6 s on Apache Kafka)."""
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    """SASL and TLS for the Kafka bus (``SPENDGATE_KAFKA__SECURITY_PROTOCOL=SASL_SSL``)."""
    bus_partitions: int = 4
    """Partitions per topic of the embedded Postgres bus."""

    host: str = "127.0.0.1"
    proxy_port: int = 8080
    admin_port: int = 8081
    instance: str = Field(default_factory=socket.gethostname)

    upstream_url: str = "https://api.openai.com/v1"
    upstream_key: SecretStr | None = None
    """``SPENDGATE_UPSTREAM_KEY``, else ``OPENAI_API_KEY``."""
    anthropic_upstream_url: str = "https://api.anthropic.com/v1"
    """Where the Anthropic Messages routes (``/v1/messages``, ``/v1/messages/count_tokens``) go."""
    anthropic_upstream_key: SecretStr | None = None
    """``SPENDGATE_ANTHROPIC_UPSTREAM_KEY``, sent as ``x-api-key``. Deliberately not read from
    ``ANTHROPIC_API_KEY``: a developer's shell sets that to their spendgate virtual key for Claude Code."""
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    """The upstream pools (docs/upstreams.md): kinds ``openai`` and ``azure`` for the OpenAI-API routes
    (none: one upstream, ``default``, at ``upstream_url`` with ``upstream_key``), kind ``anthropic`` for
    the Anthropic Messages routes (none: one upstream, ``anthropic``, at ``anthropic_upstream_url`` with
    ``anthropic_upstream_key``)."""
    upstream_pool: UpstreamPoolSettings = Field(default_factory=UpstreamPoolSettings)
    upstream_connect_timeout_s: float = 10.0
    upstream_read_timeout_s: float = 600.0
    max_body_bytes: int = 32 * 1024 * 1024
    proxy_allowed_paths: list[str] = Field(default_factory=list)
    """Extra paths the proxy forwards beyond its route table: regular expressions matched against the
    whole path under ``/v1`` (``/vector_stores(/[A-Za-z0-9_-]+)?``). They are forwarded as free
    pass-through (still one usage event each, still refused on traversal); everything else not in the
    table is a 404."""
    header_timeout_s: float = Field(default=30.0, gt=0)
    """A connection (to the proxy or the admin API) that has not finished sending a request's headers within
    this many seconds (or sits idle this long between requests) is closed."""
    max_header_bytes: int = Field(default=8190, ge=1024)
    """Longest request line or header the proxy and the admin API read; longer ones get a 400 that echoes
    nothing."""
    metrics_token: SecretStr | None = None
    """Bearer token ``/metrics`` requires (spend figures); unset means ``/metrics`` answers 404."""
    ops_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of this process's own ``/healthz`` and ``/metrics`` (for ``spendgate ledger``, ``alerter``,
    ``forecaster`` run alone; the proxy also serves both on its own port). Unset: no such server."""
    drain_timeout_s: float = 30.0
    publish_timeout_s: float = 10.0
    """How long the proxy's spool writer waits for the bus to acknowledge a batch before retrying."""
    publish_interval_s: float = Field(default=0.25, ge=0, le=10)
    """Least time between two publications of the proxy's spool writer, unless a batch fills first: events
    are on disk when a request ends; publishing one batch (seal, fsync, bus write, and the ledger's fold
    it sets off) per request at low rates costs more than the requests do. Ledger, reports and alerts see
    an event at most this much later; budget enforcement does not wait on it."""

    admin_token: SecretStr | None = None
    """The break-glass admin token (an ``admin`` identity on the admin API and the console)."""
    api_token: SecretStr | None = None
    """The credential ``--api`` presents: a named API token (``spendgate tokens create``); unset: the
    admin token."""
    cache_flag_below_pct: int = Field(default=30, ge=0, le=100)
    """Cache report: sessions under this prompt-cache hit rate are flagged for prompt-shape review."""
    cache_flag_min_requests: int = Field(default=5, ge=1)
    """Cache report: only sessions with at least this many requests are judged."""
    default_timezone: str = "UTC"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    """``auto``: human-readable lines when stderr is a terminal, JSON lines otherwise (a file, a pipe, a
    log collector); ``json`` or ``console`` to choose."""

    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    enforcement: EnforcementSettings = Field(default_factory=EnforcementSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    otel: OtelSettings = Field(default_factory=OtelSettings)
    bedrock: BedrockSettings = Field(default_factory=BedrockSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    policy: PolicySigningSettings = Field(default_factory=PolicySigningSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    console_links: ConsoleLinkSettings = Field(default_factory=ConsoleLinkSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("proxy_allowed_paths")
    @classmethod
    def _patterns_compile(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"proxy_allowed_paths: {pattern!r} is not a regular expression ({exc})") from None
            if not pattern.startswith("/"):
                raise ValueError(f"proxy_allowed_paths: {pattern!r} must start with '/' (a path under /v1)")
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [u.name for u in self.upstreams]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"upstreams: the name {duplicate!r} is used twice (names must be unique)")
        self._check_anthropic_upstreams()
        if not (self.bus in ("postgres", "memory") or self.bus.startswith("kafka://")):
            raise ValueError(f"bus must be postgres, memory or kafka://host:port, not {self.bus!r}")
        if self.database.query() and not self.database_url:
            raise ValueError("database: TLS settings apply to the server of database_url, which is unset "
                             "(the embedded PostgreSQL is reached over a local socket)")
        if self.database_url:
            in_url = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.database_url).query))
            for name, value in self.database.query().items():
                if name in in_url and in_url[name] != value:
                    raise ValueError(f"database.{name} contradicts the {name} in database_url: set it in one place")
        return self

    def _check_anthropic_upstreams(self) -> None:
        """Kind ``anthropic`` upstreams replace ``anthropic_upstream_url`` / ``_key``: both at once would
        leave one of them silently unused."""
        if not any(u.kind == "anthropic" for u in self.upstreams):
            if any(u.name == "anthropic" for u in self.upstreams):
                raise ValueError("upstreams: the name 'anthropic' is the Anthropic routes' own upstream "
                                 "(anthropic_upstream_url) while no kind anthropic upstream is configured; "
                                 "choose another name")
            return
        if all(u.kind == "anthropic" for u in self.upstreams) and any(u.name == "default" for u in self.upstreams):
            raise ValueError("upstreams: the name 'default' is the OpenAI-API routes' own upstream (upstream_url) "
                             "while no kind openai or azure upstream is configured; choose another name")
        for old in ("anthropic_upstream_url", "anthropic_upstream_key"):
            if old in self.model_fields_set:
                raise ValueError(f"{old} is set, but upstreams has kind anthropic entries, which replace it: "
                                 f"remove {old} (file or SPENDGATE_{old.upper()}) and give its URL and key as "
                                 "a kind anthropic upstream")

    @model_validator(mode="after")
    def _bedrock_models_priced(self) -> Settings:
        if not self.bedrock.models:
            return self
        table = self.pricing.table()
        for name in self.bedrock.models:
            try:
                table.lookup(name)
            except UnknownModelError:
                raise ValueError(f"bedrock.models.{name}: no price for {name!r}: add it to pricing.models "
                                 "(or set pricing.fallback)") from None
        return self

    @property
    def database_dsn(self) -> str | None:
        """``database_url`` with the ``database`` TLS settings in its query: what every connection uses."""
        extra = self.database.query()
        if not self.database_url or not extra:
            return self.database_url
        parts = urllib.parse.urlsplit(self.database_url)
        query = {**dict(urllib.parse.parse_qsl(parts.query)), **extra}
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "postgres"


def config_file_path(data_dir: str | Path | None = None) -> Path | None:
    """``SPENDGATE_CONFIG``, else ``spendgate.yaml`` in the data dir (``data_dir``, else
    ``SPENDGATE_DATA_DIR``, else the default) when that file exists."""
    explicit = os.environ.get("SPENDGATE_CONFIG")
    if explicit:
        return Path(explicit)
    if data_dir is None:
        data_dir = os.environ.get("SPENDGATE_DATA_DIR")
    candidate = (Path(data_dir) if data_dir else default_data_dir()) / "spendgate.yaml"
    return candidate if candidate.exists() else None


ENV_PREFIX = "SPENDGATE_"
NESTED = "__"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from keyword overrides, the environment, the YAML file and the defaults.

    Validation errors become a :class:`ConfigError` that names the field.
    """
    from pydantic import ValidationError

    values = merged(file_values(config_file_path(overrides.get("data_dir"))), environment_values(os.environ))
    otel = values.get("otel")
    standard = standard_otlp_endpoint(os.environ)
    if standard and not (isinstance(otel, Mapping) and otel.get("endpoint")):
        values["otel"] = {**(otel if isinstance(otel, Mapping) else {}), "endpoint": standard}
    try:
        return Settings.model_validate(merged(values, overrides))
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".removeprefix(": ") for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc


def file_values(path: Path | None) -> dict[str, Any]:
    """The YAML config file's settings (none when there is no file)."""
    if path is None:
        return {}
    from spendgate.core.yamltext import parse_yaml

    try:
        loaded = parse_yaml(path.read_text(), source=f"the config file {path}", aliases=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"the config file {path} must hold a mapping of settings, not {type(loaded).__name__}")
    return loaded


def environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SPENDGATE_A__B=v`` as ``{"a": {"b": "v"}}``; JSON for list and mapping settings."""
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].lower().split(NESTED)
        if not all(path):
            continue
        node = values
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = _decoded(name, raw) if _takes_json(Settings, path) else raw
    if "upstream_key" not in values and environ.get("OPENAI_API_KEY"):
        values["upstream_key"] = environ["OPENAI_API_KEY"]
    return values


def standard_otlp_endpoint(environ: Mapping[str, str]) -> str | None:
    """The traces endpoint the OpenTelemetry specification's variables name, if any (below
    ``otel.endpoint`` from spendgate's own variable or file)."""
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else None


def merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mappings merged key by key (``smtp.host`` from the environment keeps
    ``smtp.port`` from the file)."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out


def _decoded(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected JSON (a list or mapping), got {raw[:80]!r}") from None


def _takes_json(model: type[BaseModel], path: list[str]) -> bool:
    """Whether the setting at ``path`` is a list, mapping or section (so its variable holds JSON)."""
    for depth, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return False
        kinds = _kinds(field.annotation)
        if depth == len(path) - 1:
            return any(k in (list, dict, set, tuple) or _is_model(k) for k in kinds)
        sections = [k for k in kinds if _is_model(k)]
        if not sections:
            return False  # a key inside a mapping setting (alerts.secrets.NAME): a plain value
        model = sections[0]
    return False


def _kinds(annotation: Any) -> list[Any]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [k for arg in typing.get_args(annotation) for k in _kinds(arg)]
    return [typing.get_origin(annotation) or annotation]


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)
