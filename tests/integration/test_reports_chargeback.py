"""Chargeback over a known month of Codex traffic folded by the real ledger: every figure exact."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import asyncpg
import pytest

from spendgate.admin.reports import ChargebackLine, chargeback
from spendgate.admin.window import Filters, Window
from spendgate.domain.enforcement import budget_of
from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.store.budgets import store
from tests.support.admin_traffic import (
    MONTH_START,
    PRICES,
    Expected,
    expected_by,
    fold_through_ledger,
    known_month,
    usage,
)
from tests.support.factories import usage_event

NOVEMBER = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="UTC", now=MONTH_START)


@pytest.fixture
async def month(pool: asyncpg.Pool) -> list[UsageRecorded]:
    events = known_month()
    await fold_through_ledger(pool, events)
    return events


def assert_line(line: ChargebackLine, x: Expected) -> None:
    got = (line.requests, line.refused, line.input_tokens, line.cached_tokens, line.output_tokens,
           line.reasoning_tokens, line.cost_micros, line.retries, line.retry_cost_micros, line.downgraded,
           line.downgrade_saved_micros, line.turns, line.sessions, line.first_at, line.last_at)
    want = (x.requests, x.refused, x.input_tokens, x.cached_tokens, x.output_tokens, x.reasoning_tokens,
            x.cost_micros, x.retries, x.retry_cost_micros, x.downgraded, x.downgrade_saved_micros,
            len(x.turns), len(x.sessions), x.first_at, x.last_at)
    assert got == want, line.group


@pytest.mark.parametrize("by", ["session", "developer", "team", "cost_center", "repo"])
async def test_every_line_matches_the_event_by_event_oracle(pool: asyncpg.Pool, month: list[UsageRecorded],
                                                            by: str) -> None:
    """Each chargeback line (tokens, cost, turns, retries, downgrades and their savings) equals the oracle."""
    report = await chargeback(pool, PRICES, by=by, window=NOVEMBER)
    expected = expected_by(month, by)
    assert {line.group for line in report.lines} == set(expected)
    for line in report.lines:
        assert_line(line, expected[line.group])
    assert [line.cost_micros for line in report.lines] == sorted((x.cost_micros for x in expected.values()),
                                                                  reverse=True)
    assert report.total is not None
    assert_line(report.total, _sum(expected.values()))


def _sum(parts: Iterable[Expected]) -> Expected:
    total = Expected()
    for x in parts:
        for name, value in x.__dict__.items():
            if isinstance(value, set):
                getattr(total, name).update(value)
            elif name in ("first_at", "last_at"):
                pick = min if name == "first_at" else max
                setattr(total, name, pick(v for v in (getattr(total, name), value) if v is not None))
            else:
                setattr(total, name, getattr(total, name) + value)
    return total


async def test_the_traffic_has_what_the_reports_must_cover(month: list[UsageRecorded]) -> None:
    """The known month really holds cached tokens, downgrades, pause-cheapest, retries and a refusal."""
    reasons = {e.route_reason for e in month}
    assert reasons == {"requested", "downgrade", "pause_cheapest"}
    assert sum(e.retry for e in month) >= 10
    assert len({e.session_id for e in month}) >= 50
    assert len({e.team for e in month}) == 3 and len({e.repo for e in month}) == 4
    assert any(e.status == "refused" for e in month) and all(e.cached_tokens <= e.input_tokens for e in month)


async def test_totals_reconcile_with_the_ledger_balances_to_the_micro_dollar(pool: asyncpg.Pool,
                                                                            month: list[UsageRecorded]) -> None:
    """Org, team and developer totals for November equal the ledger's monthly balances exactly."""
    balances = {r["scope"]: (r["spent_micros"], r["requests"]) for r in await pool.fetch(
        "SELECT scope, spent_micros, requests FROM balances WHERE period = 'month' AND period_start = $1",
        date(2026, 11, 1))}
    total = (await chargeback(pool, PRICES, by="team", window=NOVEMBER)).total
    assert total is not None and (total.cost_micros, total.requests) == balances["org"]
    for by in ("team", "developer"):
        for line in (await chargeback(pool, PRICES, by=by, window=NOVEMBER)).lines:
            assert (line.cost_micros, line.requests) == balances[f"{by}:{line.group}"]


async def test_one_day_window_reconciles_with_the_daily_balance(pool: asyncpg.Pool,
                                                               month: list[UsageRecorded]) -> None:
    """A single-day window covers exactly that day: its total equals the org's daily balance."""
    day = date(2026, 11, 13)
    window = Window.of(day, day, tz="UTC", now=MONTH_START)
    total = (await chargeback(pool, PRICES, by="developer", window=window)).total
    spent = await pool.fetchval(
        "SELECT spent_micros FROM balances WHERE scope = 'org' AND period = 'day' AND period_start = $1", day)
    assert total is not None and total.cost_micros == spent
    assert total.requests == sum(1 for e in month if e.occurred_at.date() == day and e.status != "refused")


async def test_session_lines_agree_with_the_ledgers_session_aggregates(pool: asyncpg.Pool,
                                                                      month: list[UsageRecorded]) -> None:
    """Per session: turns, requests, tokens, cost, retries, retry cost and downgrades equal the sessions table."""
    report = await chargeback(pool, PRICES, by="session", window=NOVEMBER)
    stored = {r["session_id"]: r for r in await pool.fetch("SELECT * FROM sessions")}
    lines = [line for line in report.lines if line.group is not None]
    assert {line.group for line in lines} == set(stored)
    for line in lines:
        s = stored[line.group]
        assert (line.developer, line.team, line.cost_center, line.repo, line.first_at, line.last_at) == (
            s["developer"], s["team"], s["cost_center"], s["repo"], s["first_at"], s["last_at"])
        assert (line.turns, line.requests, line.input_tokens, line.cached_tokens, line.output_tokens,
                line.reasoning_tokens, line.cost_micros, line.retries, line.retry_cost_micros, line.downgraded) == (
            s["turns"], s["requests"], s["input_tokens"], s["cached_tokens"], s["output_tokens"],
            s["reasoning_tokens"], s["cost_micros"], s["retries"], s["retry_cost_micros"], s["downgraded"])


async def test_filters_narrow_the_report_to_one_team(pool: asyncpg.Pool, month: list[UsageRecorded]) -> None:
    """A team filter keeps only that team's developers, and their lines still match the oracle."""
    report = await chargeback(pool, PRICES, by="developer", window=NOVEMBER, filters=Filters(team="payments"))
    expected = expected_by([e for e in month if e.team == "payments"], "developer")
    assert {line.group for line in report.lines} == {"carol", "dave"} == set(expected)
    for line in report.lines:
        assert_line(line, expected[line.group])


async def test_a_scope_budgeted_in_berlin_reconciles_in_berlin_days(pool: asyncpg.Pool) -> None:
    """With team:platform budgeted in Europe/Berlin, its report in Berlin days equals its Berlin-month balance,
    while a UTC report of the same dates also counts a request made after midnight in Berlin."""
    await store.set_budget(pool, budget_of("team:platform", daily_micros=None, monthly_micros=10**9,
                                           timezone="Europe/Berlin"), actor="test")
    late = usage(developer="alice", session_id="late", turn_id="t", repo="api",
                 at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC), model_requested="gpt-5.1",
                 input_tokens=50_000, cached_tokens=0, output_tokens=2_000)
    await fold_through_ledger(pool, [*known_month(), late])
    reports = {}
    for tz in ("Europe/Berlin", "UTC"):
        window = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz=tz, now=MONTH_START)
        (reports[tz],) = (await chargeback(pool, PRICES, by="team", window=window,
                                           filters=Filters(team="platform"))).lines
    balance = await pool.fetchval("SELECT spent_micros FROM balances WHERE scope = 'team:platform' "
                                  "AND period = 'month' AND period_start = '2026-11-01'")
    assert reports["Europe/Berlin"].cost_micros == balance
    assert reports["UTC"].cost_micros == balance + late.cost_micros


async def test_downgrade_savings_price_claude_cache_writes(pool: asyncpg.Pool) -> None:
    """A Claude request downgraded from Opus to Sonnet: the saving prices the cache writes it made at the
    requested model's write prices (5 minutes 1.25x, 1 hour 2x input), stored in the ledger's columns."""
    tokens = {"input_tokens": 20_000, "cached_tokens": 8_000, "output_tokens": 500,
              "cache_write_5m_tokens": 6_000, "cache_write_1h_tokens": 2_000}
    paid = cost_micros(SHIPPED_PRICES["claude-sonnet-4-5"], **tokens)
    event = usage_event(model_requested="claude-opus-4-5", model_used="claude-sonnet-4-5", route_reason="downgrade",
                        stage="downgrade", endpoint="/v1/messages", client="claude-code", reasoning_tokens=0,
                        cost_micros=paid, **tokens)
    await fold_through_ledger(pool, [event])
    [line] = (await chargeback(pool, PRICES, by="developer", window=NOVEMBER)).lines
    # Opus 4.5: $5 input, $0.50 cache read, $6.25 / $10 cache writes, $25 output per 1M tokens
    would = (4_000 * 5 + 8_000 * 0.5 + 6_000 * 6.25 + 2_000 * 10 + 500 * 25)
    assert line.downgrade_saved_micros == round(would) - paid == 94_000 - 56_400
