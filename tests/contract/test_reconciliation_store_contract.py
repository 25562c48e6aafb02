"""The reconciliation store's contract (reconciliation_lines, reconciliation_gaps, reconciliation_runs), run
against every implementation."""

from __future__ import annotations

import abc
from datetime import UTC, date, datetime

import asyncpg

from spendgate.core.bus import MemoryBus
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.events import ReconciliationGap, decode
from spendgate.domain.reconcile import DayGap, Line, Usage
from spendgate.store.reconciliation.port import POSTGRES, ReconciliationStore

D1, D2 = date(2026, 11, 24), date(2026, 11, 25)
AT = datetime(2026, 11, 27, 7, tzinfo=UTC)


def line(day: date, model: str, ours: int, theirs: int | None, upstream: str | None = None) -> Line:
    return Line("openai", day, model, upstream, Usage(day, model, upstream, 1, 100, 10, ours),
                Usage(day, model, upstream, 1, 100, 10, theirs))


class ReconciliationStoreContract(abc.ABC):
    """A rerun replaces a provider's days; a gap is recorded and published once; a night is claimed once."""

    @abc.abstractmethod
    def create_store(self) -> ReconciliationStore: ...

    async def test_a_rerun_replaces_the_days_lines(self, pool: asyncpg.Pool) -> None:
        """Lines come back as stored (upstream and a missing cost included); a rerun of D1..D2 leaves no stale line
        and does not touch another provider or day."""
        store = self.create_store()
        async with pool.acquire() as conn:
            await store.save_lines(conn, "openai", D1, D2, [line(D1, "gpt-5.1", 5, 7), line(D2, "gpt-5.1", 1, None),
                                                            line(D2, "o3", 2, 2, upstream="main")], AT)
            other = Line("anthropic", D1, "claude-sonnet-4-5", None, Usage(D1, "c", None), Usage(D1, "c", None))
            await store.save_lines(conn, "anthropic", D1, D1, [other], AT)
            await store.save_lines(conn, "openai", D2, D2, [line(D2, "gpt-5.1", 3, 3)], AT)
        stored = await store.stored_lines(pool, D1, D2)
        assert [(s.line.provider, s.line.day, s.line.model, s.line.upstream, s.line.ledger.cost_micros,
                 s.line.billed.cost_micros) for s in stored] == [
            ("anthropic", D1, "claude-sonnet-4-5", None, 0, 0), ("openai", D1, "gpt-5.1", None, 5, 7),
            ("openai", D2, "gpt-5.1", None, 3, 3)]
        assert [s.line.model for s in await store.stored_lines(pool, D1, D1, "openai")] == ["gpt-5.1"]
        assert stored[0].reconciled_at == AT

    async def test_a_gap_is_recorded_and_published_once(self, pool: asyncpg.Pool) -> None:
        """The same provider and day twice is one gap, one event on spendgate.budget.v1, whatever reruns."""
        store = self.create_store()
        bus = MemoryBus(partitions=1)
        gap = DayGap("openai", D1, 1_000, 3_000, ("gpt-5.1", "o3"))
        assert await store.record_gaps(pool, [gap], AT) == [gap]
        assert await store.record_gaps(pool, [gap, DayGap("openai", D1, 0, 9_000, ())], AT) == []
        assert await store.gap_days(pool, D1, D2) == [("openai", D1, False)]
        assert await store.publish_pending(pool, bus) == 1
        assert await store.publish_pending(pool, bus) == 0
        assert await store.gap_days(pool, D1, D2) == [("openai", D1, True)]
        consumer = bus.consumer("g", [TOPIC_BUDGET])
        await consumer.start()
        [event] = [decode(r.value).data for r in await consumer.poll(timeout_s=0.1)]
        assert isinstance(event, ReconciliationGap)
        assert (event.provider, event.day, event.gap_micros, event.capture_ppm, event.models) == (
            "openai", D1, 2_000, 333_333, ["gpt-5.1", "o3"])

    async def test_the_nightly_run_is_claimed_once(self, pool: asyncpg.Pool) -> None:
        """Taken once; given back when it failed; a finished run stays taken."""
        store = self.create_store()
        assert await store.claim_run(pool, D2, AT) is True
        assert await store.claim_run(pool, D2, AT) is False
        await store.release_run(pool, D2)
        assert await store.claim_run(pool, D2, AT) is True
        await store.finish_run(pool, D2, AT)
        await store.release_run(pool, D2)
        assert await store.claim_run(pool, D2, AT) is False


class TestPostgresReconciliationStore(ReconciliationStoreContract):
    def create_store(self) -> ReconciliationStore:
        return POSTGRES
