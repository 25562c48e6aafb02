"""Settings of spendgate's workers and their connections: the database, the Kafka bus, mail, alerts, the
forecaster, the policy signing key and guard, tracing, the supervisor and the console's sign-in.
Sections of :class:`spendgate.core.config.Settings` (which alone reads the environment and files)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from spendgate.core import config_checks
from spendgate.domain.money import usd_to_micros


class SmtpSettings(BaseModel):
    """Outgoing mail for alerts and the nightly forecast report (shared by alerter and forecaster)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "spendgate@localhost"
    timeout_s: float = Field(default=30.0, gt=0)
    validate_certs: bool = True
    ca_file: Path | None = None
    """Extra CA bundle to trust (a private mail relay's certificate)."""

    @field_validator("ca_file")
    @classmethod
    def _pem(cls, v: Path | None) -> Path | None:
        if v is not None:
            config_checks.pem_file("smtp.ca_file", v)
        return v


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
    report_top: int = Field(default=5, ge=1)


class AlertSettings(BaseModel):
    """The alerter: routes file, secrets for its channels, and delivery retry timings."""

    routes_file: Path | None = None
    """YAML file with ``targets:``, ``routes:`` and ``developer_email:``; unset means no routes."""
    secrets_file: Path | None = None
    """YAML mapping of secret name to value, or a directory with one file per secret."""
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """Channel secrets by name (``SPENDGATE_ALERTS__SECRETS__<NAME>``), referenced as ``{secret: name}``."""
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    retry_after_max_s: float = 900.0
    request_timeout_s: float = Field(default=10.0, gt=0)
    workers_per_channel: int = Field(default=2, ge=1)
    schedule_every_s: float = Field(default=15.0, gt=0)
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
        if path is not None:
            config_checks.pem_file(f"{section}.{name}", path)


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
