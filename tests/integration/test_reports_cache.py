"""Prompt-cache report over the known month folded by the real ledger: hit rates, savings, miss cost and the
flagged sessions, each exact."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import pytest

from spendgate.admin.cache import cache_report
from spendgate.admin.window import Window
from spendgate.domain.events import UsageRecorded
from tests.support.admin_traffic import (
    MONTH_START,
    expected_by,
    fold_through_ledger,
    known_month,
    round_micros,
    usage,
)

NOVEMBER = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="UTC", now=MONTH_START)


@pytest.fixture
async def month(pool: asyncpg.Pool) -> list[UsageRecorded]:
    events = known_month()
    await fold_through_ledger(pool, events)
    return events


def pct(cached: int, inp: int) -> str:
    return str((Decimal(cached) * 100 / Decimal(inp)).quantize(Decimal("0.1"), ROUND_HALF_UP))


async def test_a_hand_worked_session(pool: asyncpg.Pool) -> None:
    """10,000 input tokens of which 2,000 cached on gpt-5.1-codex: 20.0 %, $0.00225 saved, $0.009 lost to misses."""
    event = usage(developer="alice", session_id="s-hand", turn_id="t1", repo="api", at=MONTH_START,
                  model_requested="gpt-5.1-codex", input_tokens=10_000, cached_tokens=2_000, output_tokens=100)
    await fold_through_ledger(pool, [event])
    report = await cache_report(pool, by="session", window=NOVEMBER, min_requests=1)
    (line,) = report.lines
    assert (line.hit_rate_pct, line.saved_micros, line.miss_cost_micros) == ("20.0", 2_250, 9_000)
    assert [f.group for f in report.flagged_sessions] == ["s-hand"]


@pytest.mark.parametrize("by", ["developer", "repo", "session"])
async def test_every_line_matches_the_oracle(pool: asyncpg.Pool, month: list[UsageRecorded], by: str) -> None:
    """Per group: tokens, hit rate, money saved and miss cost (each rounded once per line) are exact."""
    report = await cache_report(pool, by=by, window=NOVEMBER)
    expected = expected_by(month, by)
    assert {line.group for line in report.lines} == set(expected)
    for line in report.lines:
        x = expected[line.group]
        assert (line.requests, line.input_tokens, line.cached_tokens, line.saved_micros, line.miss_cost_micros) == (
            x.requests, x.input_tokens, x.cached_tokens, round_micros(x.cache_saved_numerator),
            round_micros(x.miss_cost_numerator)), line.group
        assert line.hit_rate_pct == (pct(x.cached_tokens, x.input_tokens) if x.input_tokens else None)
    rates = [Decimal(line.cached_tokens) / line.input_tokens for line in report.lines if line.input_tokens]
    assert rates == sorted(rates), "lowest hit rate first"


@pytest.mark.parametrize(("below", "least"), [(30, 5), (60, 2), (10, 1)])
async def test_flagged_sessions_are_those_under_the_threshold_worst_first(
        pool: asyncpg.Pool, month: list[UsageRecorded], below: int, least: int) -> None:
    """Sessions with enough requests and a hit rate under the threshold are flagged, lowest rate first."""
    report = await cache_report(pool, by="developer", window=NOVEMBER, flag_below_pct=below, min_requests=least)
    sessions = {k: x for k, x in expected_by(month, "session").items() if k is not None}
    want = sorted((k for k, x in sessions.items()
                   if x.requests >= least and x.cached_tokens * 100 < below * x.input_tokens),
                  key=lambda k: (Decimal(sessions[k].cached_tokens) / sessions[k].input_tokens,
                                 -round_micros(sessions[k].miss_cost_numerator), k))
    assert [f.group for f in report.flagged_sessions] == want and want
    assert (report.flag_below_pct, report.min_requests) == (below, least)


async def test_total_savings_and_miss_cost_cover_the_whole_month(pool: asyncpg.Pool,
                                                                month: list[UsageRecorded]) -> None:
    """The total line sums every event of the window: its tokens and money match the oracle for all events."""
    report = await cache_report(pool, by="repo", window=NOVEMBER)
    x = expected_by(month, "cost_center")
    total_saved = round_micros(sum(v.cache_saved_numerator for v in x.values()))
    assert report.total is not None
    assert report.total.saved_micros == total_saved
    assert report.total.cached_tokens == sum(e.cached_tokens for e in month)
