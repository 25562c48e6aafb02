"""Operator mistakes in settings are refused at load, one line naming the setting and what it accepts: each
of these once started (a busy loop, a setting silently useless, or a traceback once a service used it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spendgate.core.config import load_settings
from spendgate.domain.errors import ConfigError


def refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]) -> str:
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


@pytest.mark.parametrize(("env", "message"), [
    ({"SPENDGATE_BUS": "kafka://"}, "bus: 'kafka://' is not kafka://host:port"),
    ({"SPENDGATE_BUS": "kafka://broker:notaport"}, "a port from 1 to 65535"),
    ({"SPENDGATE_BUS": "kafka://127.0.0.1:99999"}, "a port from 1 to 65535"),
    ({"SPENDGATE_DATABASE_URL": "notaurl"}, "database_url: must be a postgresql:// URL"),
    ({"SPENDGATE_DATABASE_URL": "postgresql://u@db/x?sslmode=verify_full"}, "sslmode='verify_full' is not one of"),
    ({"SPENDGATE_OTEL__ENDPOINT": "garbage"}, "otel.endpoint (or OTEL_EXPORTER_OTLP_*ENDPOINT): must be an http(s)"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "::::"}, "otel.endpoint (or OTEL_EXPORTER_OTLP_*ENDPOINT)"),
    ({"SPENDGATE_UPSTREAM_URL": "ftp://x/v1"}, "upstream_url: must be an http(s) URL"),
    ({"SPENDGATE_ANTHROPIC_UPSTREAM_URL": "http://"}, "anthropic_upstream_url: must be an http(s) URL"),
    ({"SPENDGATE_DEFAULT_TIMEZONE": "../../etc/passwd"}, "default_timezone: '../../etc/passwd' is not an IANA"),
    ({"SPENDGATE_DEFAULT_TIMEZONE": "A" * 300}, f"default_timezone: '{'A' * 60}' is not an IANA"),
    ({"SPENDGATE_UPSTREAM_READ_TIMEOUT_S": "inf"}, "upstream_read_timeout_s: must be a finite number"),
    ({"SPENDGATE_UPSTREAM_CONNECT_TIMEOUT_S": "-1"}, "upstream_connect_timeout_s: Input should be greater than 0"),
    ({"SPENDGATE_HEADER_TIMEOUT_S": "inf"}, "header_timeout_s: must be a finite number"),
    ({"SPENDGATE_ENFORCEMENT__OUTAGE_AFTER_S": "inf"}, "enforcement.outage_after_s: must be a finite number"),
    ({"SPENDGATE_ENFORCEMENT__BALANCE_POLL_INTERVAL_S": "0"}, "enforcement.balance_poll_interval_s"),
    ({"SPENDGATE_UPSTREAM_POOL__COOLDOWN_S": "inf"}, "upstream_pool.cooldown_s: must be a finite number"),
    ({"SPENDGATE_ALERTS__REQUEST_TIMEOUT_S": "-1"}, "alerts.request_timeout_s"),
    ({"SPENDGATE_SMTP__PORT": "99999"}, "smtp.port"),
    ({"SPENDGATE_BUS_PARTITIONS": "0"}, "bus_partitions"),
    ({"SPENDGATE_MAX_BODY_BYTES": "-1"}, "max_body_bytes"),
    ({"SPENDGATE_KAFKA_SESSION_TIMEOUT_MS": "-5"}, "kafka_session_timeout_ms"),
    ({"SPENDGATE_SUPERVISOR__BACKOFF_BASE_S": "100", "SPENDGATE_SUPERVISOR__BACKOFF_CAP_S": "1"},
     "supervisor.backoff_base_s (100.0) is above supervisor.backoff_cap_s"),
    ({"SPENDGATE_ENFORCEMENT__BALANCE_POLL_INTERVAL_S": "100"},
     "enforcement.balance_poll_interval_s (100 s) must be below enforcement.outage_after_s (10 s)"),
    ({"SPENDGATE_KAFKA_HEARTBEAT_INTERVAL_MS": "10000"},
     "kafka_heartbeat_interval_ms (10000) must be below kafka_session_timeout_ms (10000"),
    ({"SPENDGATE_ENFORCEMENT__CASCADES": '{"gpt-5.1": ["no-such-model"]}'},
     "enforcement.cascades.gpt-5.1: no price for 'no-such-model'"),
])
def test_impossible_values_are_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          env: dict[str, str], message: str) -> None:
    """Each impossible value is a ConfigError whose line names the setting (no pydantic "Value error," noise)."""
    error = refused(monkeypatch, tmp_path, env)
    assert message in error and "Value error" not in error


@pytest.mark.parametrize("setting", ["KAFKA__SSL_CAFILE", "DATABASE__SSLROOTCERT", "SMTP__CA_FILE"])
@pytest.mark.parametrize("kind", ["directory", "not pem"])
def test_tls_files_must_be_pem_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setting: str,
                                     kind: str) -> None:
    """A CA path that is a directory or a file without PEM is refused at load, for Kafka, PostgreSQL and SMTP
    (a PostgreSQL CA that was not PEM used to pass until the first connection)."""
    path = tmp_path / "ca"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\x30\x82\x01\x0a DER bytes, not PEM")
    env = {f"SPENDGATE_{setting}": str(path)}
    if setting.startswith("KAFKA"):
        env |= {"SPENDGATE_BUS": "kafka://127.0.0.1:9092", "SPENDGATE_KAFKA__SECURITY_PROTOCOL": "SSL"}
    if setting.startswith("DATABASE"):
        env |= {"SPENDGATE_DATABASE_URL": "postgresql://u@db.example/x", "SPENDGATE_DATABASE__SSLMODE": "verify-ca"}
    error = refused(monkeypatch, tmp_path, env)
    expected = "is not a PEM file" if kind == "not pem" else "does not exist or is not a file"
    assert f"{setting.lower().replace('__', '.')}: {path} {expected}" in error


def test_valid_values_still_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Several brokers (IPv6 too), a socket URL, a standard OTLP base, zero for the durations that allow it."""
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    s = load_settings(bus="kafka://a:9092,[::1]:9093,b", database_url="postgresql://u@/x?host=/run/pg&sslmode=disable",
                      default_timezone="Europe/Paris", drain_timeout_s=0, publish_interval_s=0)
    assert s.otel.endpoint == "http://collector:4318/v1/traces" and s.drain_timeout_s == 0


def test_a_key_given_twice_in_the_config_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``proxy_port: 8080`` and, further down, ``proxy_port: 9090`` (or a nested key twice) is an error naming
    the key and line; PyYAML kept the last one without a word."""
    cfg = tmp_path / "spendgate.yaml"
    cfg.write_text("proxy_port: 8080\nsmtp:\n  host: a\nproxy_port: 9090\n")
    error = refused(monkeypatch, tmp_path, {"SPENDGATE_CONFIG": str(cfg)})
    assert "gives the key 'proxy_port' twice in one mapping (line 4)" in error
    cfg.write_text("smtp:\n  host: a\n  port: 25\n  host: b\n")
    assert "gives the key 'host' twice" in refused(monkeypatch, tmp_path, {})


def test_the_same_key_in_different_mappings_is_fine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keys repeat freely across sibling mappings, list items and levels; a merge key is not a duplicate."""
    from spendgate.core.yamltext import parse_yaml

    doc = parse_yaml("a: &base {x: 1}\nb:\n  <<: *base\n  y: 2\nc: [{x: 1}, {x: 2}]\nd: {a: {a: 1}}\n",
                     source="test", aliases=True)
    assert doc["c"] == [{"x": 1}, {"x": 2}] and doc["b"] == {"x": 1, "y": 2} and doc["d"] == {"a": {"a": 1}}
