"""The turn outcomes store's contract (turn_evals, and turns read from usage_events), run against every
implementation."""

from __future__ import annotations

import abc
from datetime import UTC, datetime, timedelta

import asyncpg

from spendgate.domain.outcomes import TurnEvaluation
from spendgate.store.outcomes.port import POSTGRES, OutcomeStore
from spendgate.store.usage.store import insert_events
from tests.support.factories import usage_event

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


class OutcomeStoreContract(abc.ABC):
    """A turn is its events added up (even those before ``since``); an evaluation is kept per turn, the
    latest winning."""

    @abc.abstractmethod
    def create_store(self) -> OutcomeStore: ...

    async def test_a_turn_adds_up_all_its_events_newest_turn_first(self, pool: asyncpg.Pool) -> None:
        """Counts, first model requested, last model used, last final_message; the limit keeps the newest."""
        store = self.create_store()
        await insert_events(pool, [
            usage_event(turn_id="t-old", occurred_at=T0 - timedelta(hours=1)),
            usage_event(turn_id="t-1", occurred_at=T0, tool_outputs=0, final_message=False),
            usage_event(turn_id="t-1", occurred_at=T0 + timedelta(seconds=5), tool_outputs=2, tool_failures=1,
                        retry=True, model_used="gpt-5.1-mini", route_reason="downgrade", final_message=False),
            usage_event(turn_id="t-1", occurred_at=T0 + timedelta(seconds=9), tool_outputs=3, tool_failures=1,
                        status="client_aborted", final_message=True),
            usage_event(turn_id=None, occurred_at=T0),
        ])
        (facts, external), = await store.turn_facts(pool, since=T0 + timedelta(seconds=1), limit=1)
        assert external is None
        assert (facts.turn_id, facts.requests, facts.tool_calls, facts.tool_failures, facts.retry_requests,
                facts.aborted, facts.final_message, facts.downgraded) == ("t-1", 3, 3, 1, 1, 1, True, True)
        assert (facts.model_requested, facts.model_used) == ("gpt-5.1", "gpt-5.1")
        assert facts.ended_at == T0 + timedelta(seconds=9) and facts.started_at < T0
        both = await store.turn_facts(pool, since=T0 - timedelta(days=1), limit=10)
        assert [f.turn_id for f, _ in both] == ["t-1", "t-old"]
        assert await store.known_turns(pool, ["t-1", "t-x", "t-1"]) == {"t-1"}

    async def test_the_latest_evaluation_of_a_turn_wins(self, pool: asyncpg.Pool) -> None:
        """Last in a batch wins; an evaluation older than the stored one does not replace it."""
        store = self.create_store()
        await insert_events(pool, [usage_event(turn_id="t-1", occurred_at=T0)])

        def ev(score: float, at: datetime) -> TurnEvaluation:
            return TurnEvaluation(turn_id="t-1", score=score, evaluator="e", evaluated_at=at)

        assert await store.record_evals(pool, [ev(0.1, T0), ev(0.2, T0)], received_at=T0) == 1
        assert await store.record_evals(pool, [ev(0.9, T0 - timedelta(days=1))], received_at=T0) == 0
        ((_, external),) = await store.turn_facts(pool, since=T0, limit=5)
        assert external is not None and (external.score, external.evaluator) == (0.2, "e")


class TestPostgresOutcomeStore(OutcomeStoreContract):
    def create_store(self) -> OutcomeStore:
        return POSTGRES
