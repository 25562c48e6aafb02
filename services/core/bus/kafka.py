"""Kafka (or any Kafka-protocol broker) through aiokafka.

Producer: ``acks=all``, idempotence on by default (a setting, since some brokers lack
InitProducerId), partition key = the record key (the virtual key id for usage events). Consumer:
a consumer group with manual commits; ``on_assign`` seeks to positions stored outside Kafka.
aiokafka errors are translated into :class:`BusError` here, keeping their ``retriable`` flag.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from spendgate.core.bus.base import OnAssign, Record, TopicPartition
from spendgate.domain.errors import BusError, BusUnavailableError

COMMIT_TIMEOUT_S = 5.0
"""aiokafka retries a retriable commit error for ever (a broker that lost the group or the topic answers
UnknownTopicOrPartition to every try); past this the commit fails as BusUnavailableError instead."""
CONSUMER_STOP_TIMEOUT_S = 10.0


def _translate(exc: KafkaError) -> BusError:
    if isinstance(exc, KafkaConnectionError):
        return BusUnavailableError(f"Kafka unavailable: {exc}")
    return BusError(f"Kafka error: {exc!r}", retriable=bool(getattr(exc, "retriable", False)))


class KafkaBus:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        idempotence: bool = True,
        partitions: int = 4,
        topics: Sequence[str] = (),
        client_id: str = "spendgate",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.idempotence = idempotence
        self.partitions = partitions
        self.topics = list(topics)
        self.client_id = client_id
        self.group_timings = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": heartbeat_interval_ms}
        if rebalance_timeout_ms is not None:
            self.group_timings["rebalance_timeout_ms"] = rebalance_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self.topics:
            await self.ensure_topics(self.topics)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=self.idempotence,
            linger_ms=2,
            client_id=self.client_id,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise _translate(exc) from exc
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, self.partitions, 1) for t in topics if t not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another process created it first
                    await admin.create_topics(missing)
        except KafkaError as exc:
            raise _translate(exc) from exc
        finally:
            await admin.close()

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BusUnavailableError("Kafka producer is not started")
        return self._producer

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        await self.publish_many(topic, [(key, value)])

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        producer = self._require_producer()
        try:
            futures = [
                await producer.send(topic, value, key=key.encode() if key is not None else None)
                for key, value in items
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise _translate(exc) from exc

    def consumer(self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None) -> KafkaConsumer:
        return KafkaConsumer(self, group, topics, on_assign)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Sequence[KafkaTP]) -> None:
        consumer = self.owner._consumer
        if self.owner.on_assign is None or consumer is None or not assigned:
            return
        ours = [TopicPartition(tp.topic, tp.partition) for tp in assigned]
        positions = await self.owner.on_assign(ours)
        for tp, offset in positions.items():
            consumer.seek(KafkaTP(tp.topic, tp.partition), offset)


class KafkaConsumer:
    def __init__(self, bus: KafkaBus, group: str, topics: Sequence[str], on_assign: OnAssign | None) -> None:
        self.bus, self.group, self.topics, self.on_assign = bus, group, list(topics), on_assign
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await self.bus.ensure_topics(self.topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.bus.client_id}-{self.group}",
            **self.bus.group_timings,
        )
        consumer.subscribe(self.topics, listener=_Listener(self))
        self._consumer = consumer
        try:
            await consumer.start()
        except KafkaError as exc:
            self._consumer = None
            await consumer.stop()
            raise _translate(exc) from exc

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # Bounded: leaving the group talks to a broker that may be gone; a stuck stop must not hold
            # up the shutdown of every service.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONSUMER_STOP_TIMEOUT_S):
                    await consumer.stop()

    async def poll(self, *, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        if self._consumer is None:
            raise BusUnavailableError("Kafka consumer is not started")
        try:
            batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise _translate(exc) from exc
        return [
            Record(m.topic, m.partition, m.offset, m.key.decode() if m.key is not None else None, m.value)
            for tp in sorted(batches, key=lambda t: (t.topic, t.partition))
            for m in batches[tp]
        ]

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._consumer is None or not offsets:
            return
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self._consumer.commit({KafkaTP(tp.topic, tp.partition): o for tp, o in offsets.items()})
        except KafkaError as exc:
            raise _translate(exc) from exc
        except TimeoutError:
            raise BusUnavailableError(f"Kafka offset commit did not complete in {COMMIT_TIMEOUT_S} s") from None
