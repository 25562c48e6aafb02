"""The bus port and its adapters. Only :func:`create_bus` decides which adapter a service gets."""

from __future__ import annotations

import asyncpg

from spendgate.core.bus import positions
from spendgate.core.bus.base import (
    Bus,
    Consumer,
    OnAssign,
    PositionStore,
    Record,
    TopicPartition,
    next_offsets,
    partition_for,
)
from spendgate.core.bus.memory import MemoryBus
from spendgate.core.config import Settings
from spendgate.domain.constants import ALL_TOPICS

__all__ = ["POSITIONS", "Bus", "Consumer", "MemoryBus", "OnAssign", "PositionStore", "Record", "TopicPartition",
           "create_bus", "next_offsets", "partition_for"]

POSITIONS: PositionStore = positions
"""Consumer positions in PostgreSQL: the :mod:`.positions` module, pinned to its port here."""


def create_bus(settings: Settings, *, pool: asyncpg.Pool | None, dsn: str | None) -> Bus:
    """The bus the settings name: Kafka, the embedded Postgres log, or memory."""
    if settings.bus.startswith("kafka://"):
        from spendgate.core.bus.kafka import KafkaBus

        return KafkaBus(
            settings.bus.removeprefix("kafka://"),
            idempotence=settings.kafka_idempotence,
            partitions=settings.bus_partitions,
            topics=ALL_TOPICS,
            client_id=f"spendgate-{settings.instance}",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
            security=settings.kafka,
            namespace=settings.kafka_namespace,
            replication_factor=settings.kafka_replication_factor,
        )
    if settings.bus == "postgres":
        from spendgate.core.bus.postgres import PostgresBus

        if pool is None or dsn is None:
            raise ValueError("the Postgres bus needs a pool and a DSN")
        return PostgresBus(pool, dsn, partitions=settings.bus_partitions)
    return MemoryBus(partitions=settings.bus_partitions)
