"""Kafka (or any Kafka-protocol broker) through aiokafka.

Producer: ``acks=all``, idempotence on by default (a setting, since some managed services lack
InitProducerId), partition key = the record key (the virtual key id for usage events). Consumer:
a consumer group with manual commits; ``on_assign`` seeks to positions stored outside Kafka.
``namespace`` is prefixed to every topic and group name on the wire and stripped from what comes back,
so several deployments share one cluster (callers keep using the plain names).
aiokafka errors are translated into :class:`BusError` here, keeping their ``retriable`` flag.

Every aiokafka client (producer, consumer, admin) is built from :meth:`KafkaBus.client_options`, so SASL
and TLS (``kafka:`` settings) apply to all of them. aiokafka logs why it could not bootstrap and raises a
bare "Unable to bootstrap"; :meth:`KafkaBus.explain` then opens one connection to find the cause, so a
refused login, an untrusted certificate or a protocol the listener does not speak fails at start with a
message that says so (not retriable: waiting does not fix a wrong password).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from spendgate.core.bus.base import OnAssign, Record, TopicPartition
from spendgate.core.config_services import KafkaSettings
from spendgate.domain.errors import BusError, BusUnavailableError, ConfigError

COMMIT_TIMEOUT_S = 5.0
"""aiokafka retries a retriable commit error for ever (a broker that lost the group or the topic answers
UnknownTopicOrPartition to every try); past this the commit fails as BusUnavailableError instead."""
CONSUMER_STOP_TIMEOUT_S = 10.0
EXPLAIN_TIMEOUT_S = 5.0
"""How long :meth:`KafkaBus.explain` waits for its one diagnostic connection."""
TLS_ALERT_AS_LENGTH = 0x1503
"""A TLS listener answers a plaintext request with an alert record (type 0x15, version 0x03..); read as a
Kafka frame, its first two bytes are the top of an impossible length."""


def _translate(exc: KafkaError) -> BusError:
    if isinstance(exc, KafkaConnectionError):
        return BusUnavailableError(f"Kafka unavailable: {exc}")
    return BusError(f"Kafka error: {exc!r}", retriable=bool(getattr(exc, "retriable", False)))


def _diagnosis(failure: BaseException, where: str, security: KafkaSettings) -> BusError | None:
    """What a failed connection says about the settings, if anything."""
    cause = failure if isinstance(failure, ssl.SSLError) else failure.__cause__  # aiokafka wraps it
    if isinstance(cause, ssl.SSLCertVerificationError):
        return BusError(f"{where}: its TLS certificate is not trusted ({cause.verify_message}); check kafka.ssl_cafile",
                        retriable=False)
    if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError) or (
            isinstance(failure, ConnectionResetError) and security.security_protocol in ("SSL", "SASL_SSL")):
        # a listener without TLS hangs up on our handshake, but so does a broker going down: keep retrying
        return BusUnavailableError(f"{where} closed the connection during the TLS handshake (a listener without "
                                   "TLS? check kafka.security_protocol)")
    if isinstance(cause, ssl.SSLError):
        return BusError(f"{where}: TLS failed ({cause.reason or cause}); check the kafka.ssl_* settings (a listener "
                        "that requires client certificates needs ssl_certfile and ssl_keyfile) and "
                        "kafka.security_protocol", retriable=False)
    if isinstance(cause, asyncio.IncompleteReadError) and (cause.expected or 0) >> 16 == TLS_ALERT_AS_LENGTH:
        return BusError(f"{where} answered in TLS to a {security.security_protocol} client: set "
                        "kafka.security_protocol to SSL or SASL_SSL", retriable=False)
    return None


def security_options(security: KafkaSettings) -> dict[str, Any]:
    """aiokafka's connection options for ``security``: protocol, TLS context, SASL login."""
    options: dict[str, Any] = {"security_protocol": security.security_protocol}
    if security.security_protocol in ("SSL", "SASL_SSL"):
        password = security.ssl_key_password.get_secret_value() if security.ssl_key_password else None
        try:
            options["ssl_context"] = create_ssl_context(cafile=security.ssl_cafile, certfile=security.ssl_certfile,
                                                        keyfile=security.ssl_keyfile, password=password)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: not PEM, key not matching, bad password
            raise ConfigError(f"kafka: cannot load the TLS files ({exc})") from None
    if security.sasl_mechanism is not None:
        assert security.sasl_password is not None  # KafkaSettings validated it
        options |= {"sasl_mechanism": security.sasl_mechanism, "sasl_plain_username": security.sasl_username,
                    "sasl_plain_password": security.sasl_password.get_secret_value()}
    return options


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
        security: KafkaSettings | None = None,
        namespace: str = "",
        replication_factor: int = 1,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security or KafkaSettings()
        self._security_options = security_options(self.security)
        self.idempotence = idempotence
        self.partitions = partitions
        self.topics = list(topics)
        self.client_id = client_id
        self.namespace = namespace
        self.replication_factor = replication_factor
        """Of the topics this bus creates (aiokafka's CreateTopics v3 cannot ask for the broker's default)."""
        self.group_timings = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": heartbeat_interval_ms}
        if rebalance_timeout_ms is not None:
            self.group_timings["rebalance_timeout_ms"] = rebalance_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    def client_options(self, client_id: str | None = None) -> dict[str, Any]:
        """What every aiokafka client of this bus is built with: the brokers, a client id, SASL and TLS."""
        return {"bootstrap_servers": self.bootstrap_servers, "client_id": client_id or self.client_id,
                **self._security_options}

    async def explain(self, exc: KafkaError) -> BusError:
        """``exc`` as a :class:`BusError`. A failed bootstrap is tried again on one connection of our own to
        report its cause (a refused login, an untrusted broker certificate, a client certificate the broker
        refused, a security protocol the listener does not speak) instead of aiokafka's "Unable to
        bootstrap"."""
        if not isinstance(exc, KafkaConnectionError):
            return _translate(exc)
        host, port, _ = collect_hosts(self.bootstrap_servers, randomize=False)[0]
        try:
            async with asyncio.timeout(EXPLAIN_TIMEOUT_S):
                conn = await create_conn(host, port, client_id=self.client_id, **self._security_options)
            conn.close()
        except SaslAuthenticationFailed as refusal:
            return BusError(f"Kafka at {host}:{port} refused the {self.security.sasl_mechanism} login of "
                            f"{self.security.sasl_username!r}: {refusal}", retriable=False)
        except (OSError, KafkaError, TimeoutError) as failure:
            return _diagnosis(failure, f"Kafka at {host}:{port}", self.security) or _translate(exc)
        return _translate(exc)

    async def start(self) -> None:
        if self.topics:
            await self.ensure_topics(self.topics)
        producer = AIOKafkaProducer(
            **self.client_options(),
            acks="all",
            enable_idempotence=self.idempotence,
            linger_ms=2,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise await self.explain(exc) from exc
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(**self.client_options())
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, self.partitions, self.replication_factor)
                       for name in map(self.wire, topics) if name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another process created it first
                    await admin.create_topics(missing)
        except KafkaError as exc:
            raise await self.explain(exc) from exc
        finally:
            await admin.close()

    def wire(self, name: str) -> str:
        """A topic or group name as the broker knows it."""
        return self.namespace + name

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BusUnavailableError("Kafka producer is not started")
        return self._producer

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        await self.publish_many(topic, [(key, value)])

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        producer = self._require_producer()
        topic = self.wire(topic)
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
        ours = [self.owner.ours(tp) for tp in assigned]
        positions = await self.owner.on_assign(ours)
        for tp, offset in positions.items():
            consumer.seek(self.owner.theirs(tp), offset)


class KafkaConsumer:
    def __init__(self, bus: KafkaBus, group: str, topics: Sequence[str], on_assign: OnAssign | None) -> None:
        self.bus, self.group, self.topics, self.on_assign = bus, group, list(topics), on_assign
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await self.bus.ensure_topics(self.topics)
        consumer = AIOKafkaConsumer(
            **self.bus.client_options(f"{self.bus.client_id}-{self.group}"),
            group_id=self.bus.wire(self.group),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.bus.group_timings,
        )
        consumer.subscribe([self.bus.wire(t) for t in self.topics], listener=_Listener(self))
        self._consumer = consumer
        try:
            await consumer.start()
        except KafkaError as exc:
            self._consumer = None
            await consumer.stop()
            raise await self.bus.explain(exc) from exc

    def ours(self, tp: KafkaTP) -> TopicPartition:
        return TopicPartition(tp.topic[len(self.bus.namespace):], tp.partition)

    def theirs(self, tp: TopicPartition) -> KafkaTP:
        return KafkaTP(self.bus.wire(tp.topic), tp.partition)

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
        strip = len(self.bus.namespace)
        return [
            Record(m.topic[strip:], m.partition, m.offset, m.key.decode() if m.key is not None else None, m.value)
            for tp in sorted(batches, key=lambda t: (t.topic, t.partition))
            for m in batches[tp]
        ]

    async def lag(self) -> dict[TopicPartition, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        assigned = sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition))
        if not assigned:
            return {}
        try:
            ends = await consumer.end_offsets(assigned)
            return {self.ours(tp): max(ends[tp] - await consumer.position(tp), 0) for tp in assigned}
        except KafkaError as exc:
            raise _translate(exc) from exc

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._consumer is None or not offsets:
            return
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self._consumer.commit({self.theirs(tp): o for tp, o in offsets.items()})
        except KafkaError as exc:
            raise _translate(exc) from exc
        except TimeoutError:
            raise BusUnavailableError(f"Kafka offset commit did not complete in {COMMIT_TIMEOUT_S} s") from None
