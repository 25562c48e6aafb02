"""The bus port: publish keyed records to topics; consume them as a group with manual commits.

Semantics every adapter honours (the contract suite in tests/contract checks them):
- records with the same key land in the same partition, in publish order;
- ``publish`` returns only once the record is durable (acks=all / committed transaction);
- a group resumes from its committed offsets; uncommitted records are redelivered to the group's
  next consumer; each group sees every record independently of other groups;
- ``on_assign`` lets a consumer keep its positions outside the bus (atomically with its results)
  and seek to them when partitions are assigned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from spendgate.core.db import Queryable


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


OnAssign = Callable[[Sequence[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]
"""Called with newly assigned partitions; returns the next offset to read for any it stores itself."""


class Consumer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def poll(self, *, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Records after the current position; waits up to ``timeout_s`` when there are none."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""
        ...

    async def lag(self) -> dict[TopicPartition, int]:
        """Per partition this member holds: records on the log after its position (for metrics)."""
        ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        """Publish one record; returns when it is durable."""
        ...

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Publish several records; returns when all are durable."""
        ...

    def consumer(
        self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None
    ) -> Consumer: ...


class PositionStore(Protocol):
    """Consumer positions kept beside the consumer's results (``positions.py`` in PostgreSQL): saved in the
    consumer's transaction, read back in ``on_assign``; a saved position never goes backwards."""

    async def load_positions(
        self, db: Queryable, consumer: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]: ...

    async def save_positions(self, db: Queryable, consumer: str, offsets: Mapping[TopicPartition, int]) -> None: ...


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """What to commit after ``records``: per partition, the offset after the highest one seen."""
    highest: dict[tuple[str, int], int] = {}  # plain tuples: a dataclass key hashes in Python, per record
    for r in records:
        tp = (r.topic, r.partition)
        if r.offset >= highest.get(tp, -1):
            highest[tp] = r.offset
    return {TopicPartition(topic, partition): offset + 1 for (topic, partition), offset in highest.items()}


def partition_for(key: str | None, partitions: int, *, fallback: int = 0) -> int:
    """Stable key → partition mapping for the adapters that choose partitions themselves."""
    if key is None:
        return fallback % partitions
    import zlib

    return zlib.crc32(key.encode()) % partitions
