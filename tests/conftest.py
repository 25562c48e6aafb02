"""Session fixtures for the real parts: PostgreSQL and Apache Kafka."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from spendgate.core.clitools import Ctx
from spendgate.core.logs import configure_logging
from tests.support.kafka import KafkaBroker, KafkaCluster, KafkaForTest
from tests.support.postgres import PostgresForTests

configure_logging("warning")

ARTIFACTS = pytest.StashKey[list[Path]]()
"""Files tests saved for people to look at (screenshots); the run's summary lists them."""


@pytest.fixture
def artifact(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """A path for a file to keep after the run: under SPENDGATE_TEST_ARTIFACTS, else ./test-artifacts."""
    root = Path(os.environ.get("SPENDGATE_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")

    def path(name: str) -> Path:
        out = root / name
        out.parent.mkdir(parents=True, exist_ok=True)
        request.config.stash.setdefault(ARTIFACTS, []).append(out)
        return out

    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    saved = [p for p in config.stash.get(ARTIFACTS, []) if p.exists()]
    if saved:
        terminalreporter.write_sep("-", "test artifacts")
        for p in saved:
            terminalreporter.write_line(str(p))


@pytest.fixture(autouse=True)
def cli_keeps_the_session_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command run in-process (CliRunner) would configure structlog from its settings, replacing the
    session's configuration under loggers already cached with it, so a later capture_logs would miss
    them. In tests the session's configuration stays; commands run as processes configure their own."""
    monkeypatch.setattr(Ctx, "configure_logging", lambda self: None)


@pytest.fixture(scope="session")
async def postgres_server() -> AsyncIterator[PostgresForTests]:
    server = PostgresForTests()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def db_url(postgres_server: PostgresForTests) -> str:
    """A fresh, migrated database for this test alone."""
    return await postgres_server.new_database()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=10)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Apache Kafka broker (KRaft, data on disk) shared by the session: never stop, kill or restart it."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka(kafka_broker: KafkaBroker) -> KafkaForTest:
    """The session's broker under a namespace of this test's own: no topic, record or group of another test."""
    return KafkaForTest(kafka_broker, f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def fresh_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """An Apache Kafka broker of this test's own (about 4 s to format and start), free to kill and restart."""
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def fresh_kafka(fresh_kafka_broker: KafkaBroker) -> KafkaForTest:
    return KafkaForTest(fresh_kafka_broker, "")


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes of this test's own (replication 3, ``min.insync.replicas=2``), free to kill."""
    cluster = KafkaCluster(tmp_path / "cluster")
    cluster.start()
    yield cluster
    for node in cluster.nodes.values():
        node.kill()
