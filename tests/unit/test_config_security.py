"""The ``kafka:`` and ``database:`` security settings: combinations checked at load, secrets kept out of
reprs and errors, variables nested with ``__``, the TLS settings carried into the database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from spendgate.core.bus.kafka import KafkaBus
from spendgate.core.config import load_settings
from spendgate.domain.errors import ConfigError


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nPEM in form; its content is not checked until a client is built\n"
                    "-----END CERTIFICATE-----\n")
    return path


def kafka_error(**kafka: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(kafka=kafka)
    return str(caught.value)


def test_kafka_sections_from_yaml_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  pem: Path) -> None:
    """A ``kafka:`` YAML section and SPENDGATE_KAFKA__* variables merge key by key; the password stays secret."""
    cfg = tmp_path / "spendgate.yaml"
    cfg.write_text(f"kafka:\n  security_protocol: sasl_ssl\n  sasl_mechanism: scram-sha-512\n  ssl_cafile: {pem}\n")
    monkeypatch.setenv("SPENDGATE_CONFIG", str(cfg))
    monkeypatch.setenv("SPENDGATE_KAFKA__SASL_USERNAME", "svc-spendgate")
    monkeypatch.setenv("SPENDGATE_KAFKA__SASL_PASSWORD", "hunter2-secret")
    s = load_settings()
    assert (s.kafka.security_protocol, s.kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert s.kafka.sasl_username == "svc-spendgate" and s.kafka.ssl_cafile == pem
    assert s.kafka.sasl_password is not None and s.kafka.sasl_password.get_secret_value() == "hunter2-secret"
    assert "hunter2-secret" not in repr(s) and "hunter2-secret" not in str(s.model_dump())


@pytest.mark.parametrize(("kafka", "message"), [
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_password": "p"},
     "needs sasl_username and sasl_password"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p"}, "needs a sasl_mechanism"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"},
     "kafka.sasl_mechanism: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
    ({"security_protocol": "TLS"}, "kafka.security_protocol: Input should be 'PLAINTEXT', 'SSL'"),
    ({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"},
     "SASL settings are given but security_protocol is PLAINTEXT"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p",
      "ssl_cafile": "/etc/ca.pem"}, "TLS files are given but security_protocol is SASL_PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_certfile": "/etc/client.pem"}, "needs both ssl_certfile and ssl_keyfile"),
    ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"},
     "kafka.ssl_cafile: /no/such/ca.pem does not exist or is not a file"),
    ({"security_protocol": "SSL", "sasl_pasword": "typo"}, "kafka.sasl_pasword: Extra inputs are not permitted"),
])
def test_kafka_combinations_that_cannot_work_are_config_errors(kafka: dict[str, object], message: str) -> None:
    """SCRAM without a user, an unknown mechanism or protocol, SASL or TLS files the protocol would ignore,
    a certificate without its key, a missing file, a misspelt key: each refused, naming the problem."""
    assert message in kafka_error(**kafka)


def test_a_config_error_never_echoes_the_password() -> None:
    """A refused section with a password in it: the error names fields, never the secret."""
    assert "s3cret-value" not in kafka_error(security_protocol="SASL_SSL", sasl_password="s3cret-value")


def test_tls_files_that_are_not_certificates_fail_when_the_bus_is_built(pem: Path) -> None:
    """A CA file that exists but holds no certificate is a ConfigError when the bus is built, before any
    connection."""
    s = load_settings(bus="kafka://127.0.0.1:9", kafka={"security_protocol": "SSL", "ssl_cafile": str(pem)})
    with pytest.raises(ConfigError, match="kafka: cannot load the TLS files"):
        KafkaBus("127.0.0.1:9", security=s.kafka)


def test_database_tls_settings_go_into_the_url(pem: Path) -> None:
    """``database:`` sslmode and certificate paths join database_url's query (what every connection reads),
    keeping the URL's own parameters; the key password too, but never in the settings' repr."""
    s = load_settings(database_url="postgresql://sg:pw@db.internal:5432/spendgate?application_name=sg",
                      database={"sslmode": "verify-full", "sslrootcert": str(pem), "sslcert": str(pem),
                                "sslkey": str(pem), "sslpassword": "keypass"})
    assert s.database_dsn is not None
    query = parse_qs(urlsplit(s.database_dsn).query)
    assert query == {"application_name": ["sg"], "sslmode": ["verify-full"], "sslrootcert": [str(pem)],
                     "sslcert": [str(pem)], "sslkey": [str(pem)], "sslpassword": ["keypass"]}
    assert urlsplit(s.database_dsn).netloc == "sg:pw@db.internal:5432"
    assert "keypass" not in repr(s)
    assert load_settings(database_url="postgresql://h/db").database_dsn == "postgresql://h/db"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"database": {"sslmode": "verify-full"}, "database_url": "postgresql://h/db"}, "needs sslrootcert"),
    ({"database": {"sslmode": "verify-all"}, "database_url": "postgresql://h/db"}, "database.sslmode: Input should be"),
    ({"database": {"sslmode": "require"}}, "database_url, which is unset"),
    ({"database": {"sslmode": "require"}, "database_url": "postgresql://h/db?sslmode=disable"},
     "database.sslmode contradicts the sslmode in database_url"),
    ({"database": {"sslmode": "require", "sslcert": "/etc/c.pem"}, "database_url": "postgresql://h/db"},
     "needs both sslcert and sslkey"),
    ({"database": {"sslmode": "verify-ca", "sslrootcert": "/no/ca.pem"}, "database_url": "postgresql://h/db"},
     "database.sslrootcert: /no/ca.pem does not exist"),
])
def test_database_tls_combinations_that_cannot_work_are_config_errors(overrides: dict[str, object],
                                                                      message: str) -> None:
    """verify-* without a CA, an unknown sslmode, TLS without a server URL, a contradiction with the URL,
    a certificate without its key, a missing file."""
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    assert message in str(caught.value)
