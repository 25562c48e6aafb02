"""Session drill-down: the session's chargeback line, its turns, and every request under its turn."""

from __future__ import annotations

import asyncpg
import pytest

from spendgate.admin.sessions import SessionNotFound, session_detail
from spendgate.domain.events import UsageRecorded
from tests.support.admin_traffic import PRICES, expected_by, fold_through_ledger, known_month


@pytest.fixture
async def month(pool: asyncpg.Pool) -> list[UsageRecorded]:
    events = known_month()
    await fold_through_ledger(pool, events)
    return events


async def test_a_session_shows_its_turns_and_each_request_in_order(pool: asyncpg.Pool,
                                                                  month: list[UsageRecorded]) -> None:
    """Turns in order of their first request; each request's time, models, stage, tokens, cost, retry, status."""
    by_session = expected_by(month, "session")
    busiest = max((s for s in by_session if s is not None),
                  key=lambda s: (len(by_session[s].turns), by_session[s].downgraded, by_session[s].retries))
    detail = await session_detail(pool, PRICES, busiest)
    mine = [e for e in month if e.session_id == busiest]
    x = by_session[busiest]
    assert detail.line.group == busiest and detail.line.cost_micros == x.cost_micros
    assert detail.line.turns == len(detail.turns) == len(x.turns) >= 2
    assert [t.turn_id for t in detail.turns] == list(dict.fromkeys(e.turn_id for e in mine))
    flat = [r for t in detail.turns for r in t.request_lines]
    assert [(r.event_id, r.occurred_at, r.model_requested, r.model_used, r.route_reason, r.stage, r.status,
             r.input_tokens, r.cached_tokens, r.output_tokens, r.reasoning_tokens, r.cost_micros, r.retry)
            for r in flat] == [
        (e.event_id, e.occurred_at, e.model_requested, e.model_used, e.route_reason, e.stage, e.status,
         e.input_tokens, e.cached_tokens, e.output_tokens, e.reasoning_tokens, e.cost_micros, e.retry)
        for e in mine]
    assert sum(t.cost_micros for t in detail.turns) == detail.line.cost_micros
    assert sum(t.retries for t in detail.turns) == detail.line.retries
    assert sum(t.downgraded for t in detail.turns) == detail.line.downgraded


async def test_a_refused_request_is_shown_but_not_counted_as_traffic(pool: asyncpg.Pool,
                                                                    month: list[UsageRecorded]) -> None:
    """The refused request appears with its status; requests count it apart, as the ledger does."""
    detail = await session_detail(pool, PRICES, "sess-refused")
    (turn,) = detail.turns
    assert [r.status for r in turn.request_lines] == ["refused"]
    assert (turn.requests, detail.line.requests, detail.line.refused, detail.line.cost_micros) == (0, 0, 1, 0)


async def test_an_unknown_session_is_reported_as_not_found(pool: asyncpg.Pool) -> None:
    """A session id with no usage raises SessionNotFound (a 404 in the API, a clear error in the CLI)."""
    with pytest.raises(SessionNotFound, match="no usage recorded"):
        await session_detail(pool, PRICES, "nope")
