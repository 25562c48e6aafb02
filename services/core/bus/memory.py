"""In-process bus for unit tests: the same semantics as the real adapters, no I/O."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence

from spendgate.core.bus.base import OnAssign, Record, TopicPartition, partition_for


class MemoryBus:
    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self._logs: dict[TopicPartition, list[Record]] = defaultdict(list)
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._owners: dict[tuple[str, TopicPartition], MemoryConsumer] = {}
        self._changed = asyncio.Condition()
        self._round_robin = itertools.count()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        await self.publish_many(topic, [(key, value)])

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        for key, value in items:
            tp = TopicPartition(topic, partition_for(key, self.partitions, fallback=next(self._round_robin)))
            log = self._logs[tp]
            log.append(Record(topic, tp.partition, len(log), key, value))
        async with self._changed:
            self._changed.notify_all()

    def consumer(self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None) -> MemoryConsumer:
        return MemoryConsumer(self, group, topics, on_assign)

    # -- group coordination (a member owns a partition until it stops) --
    def _claim(self, member: MemoryConsumer) -> list[TopicPartition]:
        members = {m for (g, _), m in self._owners.items() if g == member.group} | {member}
        fair_share = -(-len(member.topics) * self.partitions // len(members))
        owned = [tp for (g, tp), m in self._owners.items() if g == member.group and m is member]
        claimed: list[TopicPartition] = []
        for topic in member.topics:
            for p in range(self.partitions):
                tp = TopicPartition(topic, p)
                if len(owned) + len(claimed) >= fair_share:
                    return claimed
                if (member.group, tp) not in self._owners:
                    self._owners[(member.group, tp)] = member
                    claimed.append(tp)
        return claimed

    def _release(self, member: MemoryConsumer) -> None:
        for k in [k for k, m in self._owners.items() if m is member]:
            del self._owners[k]


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, group: str, topics: Sequence[str], on_assign: OnAssign | None) -> None:
        self.bus, self.group, self.topics, self.on_assign = bus, group, list(topics), on_assign
        self._positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self._rebalance()

    async def stop(self) -> None:
        self.bus._release(self)
        self._positions.clear()

    async def _rebalance(self) -> None:
        new = self.bus._claim(self)
        if not new:
            return
        stored = dict(await self.on_assign(new)) if self.on_assign else {}
        for tp in new:
            self._positions[tp] = stored.get(tp, self.bus._committed.get((self.group, tp), 0))

    def _ready(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for tp, pos in sorted(self._positions.items()):
            batch = self.bus._logs[tp][pos : pos + max_records - len(out)]
            out.extend(batch)
            self._positions[tp] = pos + len(batch)
            if len(out) >= max_records:
                break
        return out

    async def poll(self, *, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        await self._rebalance()
        records = self._ready(max_records)
        if records:
            return records
        async with self.bus._changed:
            try:
                await asyncio.wait_for(self.bus._changed.wait(), timeout_s)
            except TimeoutError:
                return []
        return self._ready(max_records)

    async def lag(self) -> dict[TopicPartition, int]:
        return {tp: len(self.bus._logs[tp]) - pos for tp, pos in sorted(self._positions.items())}

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.bus._committed[(self.group, tp)] = offset
