"""The bus contract (test_bus_contract.py) once more, with KafkaBus on a real Apache Kafka broker and the
idempotent producer on, as production runs it. The tests are the contract module's own functions; only
the ``harness`` fixture differs (pytest resolves it from this module for the tests collected here).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from spendgate.core.bus import Bus
from spendgate.core.bus.kafka import KafkaBus
from tests.contract.test_bus_contract import (
    Harness,
    test_independent_groups,
    test_lag_counts_the_records_after_the_position,
    test_on_assign_seeks_to_stored_positions,
    test_per_key_order,
    test_publish_while_consumer_down,
    test_redelivery_after_consumer_dies_before_commit,
    test_resume_from_committed_offset,
)
from tests.support.kafka import KafkaBroker

pytestmark = pytest.mark.kafka

__all__ = [
    "test_independent_groups", "test_lag_counts_the_records_after_the_position",
    "test_on_assign_seeks_to_stored_positions", "test_per_key_order",
    "test_publish_while_consumer_down", "test_redelivery_after_consumer_dies_before_commit",
    "test_resume_from_committed_offset",
]


@pytest.fixture
async def harness(apache_kafka: KafkaBroker) -> AsyncIterator[Harness]:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def make() -> Bus:
        bus = KafkaBus(apache_kafka.bootstrap, idempotence=True, partitions=3, topics=[topic],
                       session_timeout_ms=3000, heartbeat_interval_ms=300)
        await bus.start()
        cleanup.append(bus.stop)
        return bus

    bus = await make()
    yield Harness(bus, topic, make)
    for fn in reversed(cleanup):
        await fn()
