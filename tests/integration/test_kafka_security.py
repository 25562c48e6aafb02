"""KafkaBus over SASL and TLS against a real Apache Kafka broker (tests/support/kafka_secure.py).

One broker for the module (about 6 s to format and start): a SASL_SSL listener with SCRAM-SHA-512,
SCRAM-SHA-256 and PLAIN users, and a mutual-TLS listener, certificates made with ``trustme``. Settings
come through :func:`load_settings` from ``SPENDGATE_KAFKA__*`` variables and the bus from
:func:`create_bus`, as a service builds them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spendgate.core.bus import create_bus
from spendgate.core.bus.kafka import KafkaBus
from spendgate.core.config import Settings, load_settings
from spendgate.domain.errors import BusError, BusUnavailableError
from tests.support.cli import spendgate
from tests.support.kafka_secure import PLAIN_USER, SCRAM_USER, Pki, SecureKafkaBroker, write_pki

pytestmark = pytest.mark.kafka

SCRAM_PASSWORD = "scram-" + uuid.uuid4().hex
PLAIN_PASSWORD = "plain-" + uuid.uuid4().hex
REFUSAL_DEADLINE_S = 15.0
"""A refused login or certificate must fail start within this, never hang."""


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaBroker]:
    base = tmp_path_factory.mktemp("secure-kafka")
    broker = SecureKafkaBroker(base / "kafka", write_pki(base / "pki"), scram_password=SCRAM_PASSWORD,
                               plain_password=PLAIN_PASSWORD)
    broker.start()
    yield broker
    broker.stop()


def settings_from_env(monkeypatch: pytest.MonkeyPatch, bootstrap: str, **kafka: str | Path) -> Settings:
    """The settings a service would load with ``SPENDGATE_BUS`` and ``SPENDGATE_KAFKA__<NAME>`` set."""
    monkeypatch.setenv("SPENDGATE_BUS", f"kafka://{bootstrap}")
    monkeypatch.setenv("SPENDGATE_KAFKA_SESSION_TIMEOUT_MS", "3000")
    monkeypatch.setenv("SPENDGATE_KAFKA_HEARTBEAT_INTERVAL_MS", "300")
    for name, value in kafka.items():
        monkeypatch.setenv(f"SPENDGATE_KAFKA__{name.upper()}", str(value))
    return load_settings()


async def round_trip(bus: KafkaBus) -> None:
    """Publish three records on a new topic and read them back through a consumer group."""
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    bus.topics = [topic]
    sent = [f"v{i}".encode() for i in range(3)]
    await bus.start()
    consumer = bus.consumer(f"g-{uuid.uuid4().hex[:6]}", [topic])
    try:
        await bus.publish_many(topic, [("k", v) for v in sent])
        await consumer.start()
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < len(sent) and time.monotonic() < deadline:
            got.extend(r.value for r in await consumer.poll(timeout_s=0.5))
    finally:
        await consumer.stop()
        await bus.stop()
    assert got == sent


async def refused(bus: KafkaBus) -> BusError:
    """The error ``bus.start()`` fails with, within the deadline."""
    started = time.monotonic()
    try:
        with pytest.raises(BusError) as caught:
            async with asyncio.timeout(REFUSAL_DEADLINE_S):
                await bus.start()
    finally:
        await bus.stop()
    assert time.monotonic() - started < REFUSAL_DEADLINE_S
    return caught.value


def scram(pki: Pki, **overrides: str | Path) -> dict[str, Any]:
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": SCRAM_USER,
            "sasl_password": SCRAM_PASSWORD, "ssl_cafile": pki.ca, **overrides}


async def test_scram_sha_512_over_tls_round_trip(secure_kafka: SecureKafkaBroker,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from SPENDGATE_KAFKA__* (SASL_SSL, SCRAM-SHA-512, our CA): the bus publishes and a consumer
    group reads the records back, producer, consumer and admin client all over the secured listener."""
    settings = settings_from_env(monkeypatch, secure_kafka.sasl_bootstrap, **scram(secure_kafka.pki))
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    await round_trip(bus)


@pytest.mark.parametrize(("mechanism", "user", "password"), [
    ("SCRAM-SHA-256", SCRAM_USER, SCRAM_PASSWORD),
    ("PLAIN", PLAIN_USER, PLAIN_PASSWORD),
], ids=["SCRAM-SHA-256", "PLAIN"])
async def test_other_sasl_mechanisms_log_in(secure_kafka: SecureKafkaBroker, monkeypatch: pytest.MonkeyPatch,
                                            mechanism: str, user: str, password: str) -> None:
    """SCRAM-SHA-256 and PLAIN (over TLS) reach the broker as well."""
    settings = settings_from_env(monkeypatch, secure_kafka.sasl_bootstrap,
                                 **scram(secure_kafka.pki, sasl_mechanism=mechanism, sasl_username=user,
                                         sasl_password=password))
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    await round_trip(bus)


async def test_wrong_password_is_refused_with_a_clear_error(secure_kafka: SecureKafkaBroker,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A wrong SCRAM password fails start quickly, saying the login was refused (not "unable to bootstrap"),
    not retriable (waiting cures nothing), and the password appears nowhere: not in the message, not in
    the settings' repr, not in any log line (aiokafka's debug lines included)."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + uuid.uuid4().hex
    settings = settings_from_env(monkeypatch, secure_kafka.sasl_bootstrap,
                                 **scram(secure_kafka.pki, sasl_password=wrong))
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    error = await refused(bus)
    assert "refused the SCRAM-SHA-512 login" in str(error) and SCRAM_USER in str(error)
    assert not error.retriable and not isinstance(error, BusUnavailableError)
    assert wrong not in str(error) and wrong not in repr(settings)
    assert caplog.records and not [r for r in caplog.records if wrong in r.getMessage()]


async def test_untrusted_ca_is_refused(secure_kafka: SecureKafkaBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trusting only another CA, the client refuses the broker's certificate, and says so."""
    settings = settings_from_env(monkeypatch, secure_kafka.sasl_bootstrap,
                                 **scram(secure_kafka.pki, ssl_cafile=secure_kafka.pki.other_ca))
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    error = await refused(bus)
    assert "certificate is not trusted" in str(error) and "kafka.ssl_cafile" in str(error)
    assert not error.retriable


async def test_mutual_tls_with_an_encrypted_client_key(secure_kafka: SecureKafkaBroker,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """On the listener that requires a client certificate, the bus gets in with ours (its key encrypted,
    the password in ssl_key_password)."""
    pki = secure_kafka.pki
    settings = settings_from_env(monkeypatch, secure_kafka.mtls_bootstrap, security_protocol="SSL",
                                 ssl_cafile=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key,
                                 ssl_key_password=pki.client_key_password)
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    await round_trip(bus)


async def test_mutual_tls_without_a_client_certificate_is_refused(secure_kafka: SecureKafkaBroker,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a client certificate the mutual-TLS listener turns the bus away within the deadline, and the
    error points at the client certificate settings."""
    settings = settings_from_env(monkeypatch, secure_kafka.mtls_bootstrap, security_protocol="SSL",
                                 ssl_cafile=secure_kafka.pki.ca)
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    error = await refused(bus)
    assert str(secure_kafka.mtls_port) in str(error) and "TLS failed" in str(error) and "ssl_certfile" in str(error)
    assert not error.retriable


async def test_a_plaintext_client_on_a_tls_listener_is_told_to_use_tls(secure_kafka: SecureKafkaBroker,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """security_protocol left at PLAINTEXT against a TLS listener (the usual slip with a managed cluster):
    start fails at once, saying to set SSL or SASL_SSL."""
    settings = settings_from_env(monkeypatch, secure_kafka.sasl_bootstrap)
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    error = await refused(bus)
    assert "answered in TLS to a PLAINTEXT client" in str(error) and not error.retriable


async def test_a_tls_client_on_a_plaintext_listener_gets_a_hint(secure_kafka: SecureKafkaBroker,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS against the plain listener: the handshake is cut off; the error (retriable, since a broker going
    down looks the same) says so and points at security_protocol."""
    settings = settings_from_env(monkeypatch, secure_kafka.bootstrap, security_protocol="SSL",
                                 ssl_cafile=secure_kafka.pki.ca)
    bus = create_bus(settings, pool=None, dsn=None)
    assert isinstance(bus, KafkaBus)
    error = await refused(bus)
    assert isinstance(error, BusUnavailableError) and "during the TLS handshake" in str(error)
    assert "kafka.security_protocol" in str(error)


async def test_a_service_with_a_wrong_password_exits_saying_why(secure_kafka: SecureKafkaBroker, db_url: str,
                                                                tmp_path: Path) -> None:
    """`spendgate ledger` as its own process, with a wrong SCRAM password: it exits non-zero at start with one
    line naming the refused login (no traceback, no retrying for ever), and never prints the password."""
    wrong = "wrong-" + uuid.uuid4().hex
    env = {f"SPENDGATE_KAFKA__{k.upper()}": str(v) for k, v in scram(secure_kafka.pki, sasl_password=wrong).items()}
    started = time.monotonic()
    out = await spendgate("ledger", db_url=db_url, data_dir=tmp_path, SPENDGATE_BUS=f"kafka://{secure_kafka.sasl_bootstrap}",
                          SPENDGATE_LOG_LEVEL="debug", **env)
    assert out.returncode != 0 and time.monotonic() - started < 60
    assert "refused the SCRAM-SHA-512 login" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert wrong not in out.stderr + out.stdout
