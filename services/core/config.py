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
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.money import usd_to_micros
from spendgate.domain.pricing import BATCH_PERCENT, ModelPrice, PriceTable


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("spendgate", appauthor=False))


class PriceUSD(BaseModel):
    """A model's price in USD per 1M tokens, as strings or integers (never floats)."""

    input: str
    cached_input: str
    output: str

    @field_validator("input", "cached_input", "output", mode="before")
    @classmethod
    def _no_float(cls, v: Any) -> str:
        if isinstance(v, float):
            raise ValueError("write prices as strings (\"1.25\"), floats cannot hold cents exactly")
        return str(v)

    def to_price(self) -> ModelPrice:
        return ModelPrice.from_usd(self.input, self.cached_input, self.output)


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
    upstream_connect_timeout_s: float = 10.0
    upstream_read_timeout_s: float = 600.0
    max_body_bytes: int = 32 * 1024 * 1024
    proxy_allowed_paths: list[str] = Field(default_factory=list)
    """Extra paths the proxy forwards beyond its route table: regular expressions matched against the
    whole path under ``/v1`` (``/vector_stores(/[A-Za-z0-9_-]+)?``). They are forwarded as free
    pass-through (still one usage event each, still refused on traversal); everything else not in the
    table is a 404."""
    header_timeout_s: float = Field(default=30.0, gt=0)
    """A connection that has not finished sending a request's headers within this many seconds (or sits
    idle this long between requests) is closed."""
    max_header_bytes: int = Field(default=8190, ge=1024)
    """Longest request line or header the proxy reads; longer ones get a 400 that echoes nothing."""
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
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)

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
    import yaml

    try:
        loaded = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
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
