"""The one settings object. Only this module reads the environment (and, of its sections, an upstream's ``key_env``).

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

from spendgate.core import config_checks
from spendgate.core.config_providers import (
    BedrockSettings,
    PricingSettings,
    RateLimitSettings,
    ReconcileSettings,
    UpstreamPoolSettings,
    UpstreamSettings,
)
from spendgate.core.config_services import (
    AlertSettings,
    ConsoleLinkSettings,
    ConsoleSettings,
    DatabaseSettings,
    ForecastSettings,
    GuardSettings,
    KafkaSettings,
    OtelSettings,
    PolicySigningSettings,
    SmtpSettings,
    SupervisorSettings,
)
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError, UnknownModelError


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("spendgate", appauthor=False))


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
    kafka_replication_factor: int = Field(default=1, ge=1)
    """Replication factor of the topics spendgate creates: 3 on a production cluster (with the brokers'
    ``min.insync.replicas=2``; the producer always waits for ``acks=all``)."""
    kafka_session_timeout_ms: int = Field(default=10_000, gt=0)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, gt=0)
    kafka_rebalance_timeout_ms: int | None = None
    """Consumer-group timings; brokers enforce a minimum session timeout (6 s on Apache Kafka)."""
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    """SASL and TLS for the Kafka bus (``SPENDGATE_KAFKA__SECURITY_PROTOCOL=SASL_SSL``)."""
    bus_partitions: int = Field(default=4, ge=1, le=1024)
    """Partitions per topic of the embedded Postgres bus."""

    host: str = "127.0.0.1"
    proxy_port: int = Field(default=8080, ge=0, le=65535)
    admin_port: int = Field(default=8081, ge=0, le=65535)
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
    upstream_connect_timeout_s: float = Field(default=10.0, gt=0)
    upstream_read_timeout_s: float = Field(default=600.0, gt=0)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    proxy_allowed_paths: list[str] = Field(default_factory=list)
    """Extra paths the proxy forwards beyond its route table: regular expressions matched against the
    whole path under ``/v1`` (``/vector_stores(/[A-Za-z0-9_-]+)?``). They are forwarded as free
    pass-through (still one usage event each, still refused on traversal); everything else not in the
    table is a 404."""
    header_timeout_s: float = Field(default=30.0, gt=0)
    """A connection (to the proxy or the admin API) that has not finished sending a request's headers within
    this many seconds (or sits idle this long between requests) is closed."""
    body_timeout_s: float = Field(default=120.0, gt=0)
    """A proxy request whose body has not fully arrived this many seconds after its headers is answered 408
    (the connection closes after aiohttp's lingering read, at most 10 s more): a key holder trickling bodies on
    many connections held each one (and up to ``max_body_bytes`` of buffer) forever."""
    max_header_bytes: int = Field(default=8190, ge=1024, le=1024 * 1024)
    """Longest request line or header the proxy and the admin API read; longer ones get a 400 that echoes
    nothing."""
    metrics_token: SecretStr | None = None
    """Bearer token ``/metrics`` requires (spend figures); unset means ``/metrics`` answers 404."""
    ops_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of this process's own ``/healthz`` and ``/metrics`` (for ``spendgate ledger``, ``alerter``,
    ``forecaster`` run alone; the proxy also serves both on its own port). Unset: no such server."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    publish_timeout_s: float = Field(default=10.0, gt=0)
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
        self._check_values()
        if self.database.query() and not self.database_url:
            raise ValueError("database: TLS settings apply to the server of database_url, which is unset "
                             "(the embedded PostgreSQL is reached over a local socket)")
        if self.database_url:
            in_url = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.database_url).query))
            for name, value in self.database.query().items():
                if name in in_url and in_url[name] != value:
                    raise ValueError(f"database.{name} contradicts the {name} in database_url: set it in one place")
        return self

    def _check_values(self) -> None:
        """Numbers finite, durations not negative, addresses that parse, a real time zone (config_checks)."""
        config_checks.numbers(self)
        if self.bus.startswith("kafka://"):
            config_checks.kafka_bootstrap(self.bus)
        if self.database_url:
            config_checks.database_url(self.database_url)
        config_checks.http_url("upstream_url", self.upstream_url, example="https://api.openai.com/v1")
        config_checks.http_url("anthropic_upstream_url", self.anthropic_upstream_url,
                               example="https://api.anthropic.com/v1")
        if self.otel.endpoint:
            config_checks.http_url("otel.endpoint (or OTEL_EXPORTER_OTLP_*ENDPOINT)", self.otel.endpoint,
                                   example="http://collector:4318/v1/traces")
        config_checks.timezone("default_timezone", self.default_timezone)
        enforcement = self.enforcement
        if enforcement.balance_poll_interval_s >= enforcement.outage_after_s:
            raise ValueError(f"enforcement.balance_poll_interval_s ({enforcement.balance_poll_interval_s:g} s) must be "
                             f"below enforcement.outage_after_s ({enforcement.outage_after_s:g} s): the balance view "
                             "would count as stale between two polls (seconds, not milliseconds)")
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms:
            raise ValueError(f"kafka_heartbeat_interval_ms ({self.kafka_heartbeat_interval_ms}) must be below "
                             f"kafka_session_timeout_ms ({self.kafka_session_timeout_ms}; Kafka's advice: a third "
                             "of it): the group would drop a live consumer")
        if self.supervisor.backoff_base_s > self.supervisor.backoff_cap_s:
            raise ValueError(f"supervisor.backoff_base_s ({self.supervisor.backoff_base_s}) is above "
                             f"supervisor.backoff_cap_s ({self.supervisor.backoff_cap_s}): the first wait "
                             "would already be past the cap")

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
    def _cascades_priced(self) -> Settings:
        """A cascade step the pricing table cannot price failed only once the proxy started (after the other
        services had, with a traceback in the log); say so at start, like an unpriced Bedrock model."""
        table = self.pricing.table()
        for model, steps in self.enforcement.cascades.items():
            missing = [m for m in steps if not table.knows(m)]
            if missing:
                raise ValueError(f"enforcement.cascades.{model}: no price for {', '.join(map(repr, missing))}: add "
                                 "it to pricing.models (or set pricing.fallback), or remove it from the cascade")
        return self

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
        lines = [_error_line(e["loc"], e["msg"]) for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc


def _error_line(loc: tuple[int | str, ...], msg: str) -> str:
    """``setting: message``, without pydantic's ``Value error,`` and without naming the setting twice when
    the message already starts with its name (``kafka: kafka.ssl_cafile: …``)."""
    where, msg = ".".join(str(p) for p in loc), msg.removeprefix("Value error, ")
    return msg if not where or msg.startswith(where) else f"{where}: {msg}"


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
    unknown = [key for key in loaded if key not in Settings.model_fields]
    if unknown:
        raise ConfigError(f"the config file {path} names no setting {_unknown_keys(unknown)}")
    return loaded


def _unknown_keys(keys: list[Any]) -> str:
    """The file's unknown top-level keys, quoted short, each with the setting it was likely meant to be (a
    misspelt ``proxy_prot:`` must be an error, not a setting silently left at its default)."""
    import difflib

    from spendgate.domain.errors import shown

    parts = []
    for key in keys[:5]:
        close = difflib.get_close_matches(str(key)[:100], list(Settings.model_fields), n=1)
        parts.append(shown(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return ", ".join(parts) + more + "; the settings are listed under Configuration in README.md"


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
