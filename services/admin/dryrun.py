"""``spendgate policy dry-run``: what a proposed policy would have done to the last N days of traffic.

Loads the stored usage events of the window in time order and feeds them to :class:`~.replay.Replay`
(the proxy's own decision function underneath). Spend from earlier in the periods the window starts
in (e.g. the 1st of the month up to the window) is folded in first, at its actual cost, so a monthly
budget starts the window as full as it really was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import asyncpg
import msgspec

from spendgate.admin.overlay import Change, Pass, Totals
from spendgate.admin.replay import Replay
from spendgate.domain.enforcement import Policy
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.domain.pricing import PriceTable
from spendgate.store.usage import store as usage

FETCH_ROWS = 20_000


class DryRunAlert(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    period_start: date
    threshold_pct: int
    stage: str
    at: datetime
    spent_micros: int
    budget_micros: int


class PausedSession(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    developer: str
    paused_at: datetime
    turns_before: int
    """Turns the session had completed (at least partly) before it was paused."""
    requests_before: int
    refused_requests: int
    remaining_turns: int
    """Turns the pause would have stopped from starting."""
    remaining_cost_micros: int
    """What the refused requests cost live: the spend the pause cuts from this session."""
    resumed_at: datetime | None
    """When the session got through again (the budget period reset), if it did."""


class ScopeResult(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    daily_budget_micros: int | None
    monthly_budget_micros: int | None
    alerts: list[DryRunAlert]
    downgrades: int
    downgrade_saved_micros: int
    forced_cheapest: int
    forced_cheapest_saved_micros: int
    refused_requests: int
    retry_refused: int
    paused_sessions: list[PausedSession]
    spend_micros: int
    """What this scope would have spent under the proposal."""
    actual_micros: int
    """What it really spent in the window."""
    weekly_budget_micros: int | None = None
    """The ISO-week amount (a per-model budget's spend counts its model only)."""


class DryRun(msgspec.Struct, frozen=True, kw_only=True):
    days: int
    from_at: datetime
    to_at: datetime
    events: int
    spend_micros: int
    actual_micros: int
    downgrades: int
    downgrade_saved_micros: int
    forced_cheapest: int
    refused_requests: int
    retry_refused: int
    paused_sessions: int
    differences: int
    """Requests the proposal would have treated differently from what actually happened."""
    elapsed_ms: int
    scopes: list[ScopeResult]
    exploration: bool = False
    """The proposal explores (has an ``exploration`` block)."""
    explored_turns: int = 0
    """Turns the proposal's exploration would have sent to the next cheaper model."""
    explore_requests: int = 0
    explore_saved_micros: int = 0
    """What those explored requests would have saved against the requested model."""
    changed: int = 0
    """Requests served differently from live: ``differences`` plus those a routing rule sent to another model."""


def _seed_from(policy: Policy, start: datetime) -> datetime:
    """The earliest period start (local midnight of the 1st, per budget timezone) the window begins in."""
    starts = [period_containing(PeriodKind.MONTH, start, b.timezone).starts_at for b in policy.budgets.values()]
    return min(starts, default=start)


async def dry_run(pool: asyncpg.Pool, policy: Policy, prices: PriceTable, *, days: int, now: datetime,
                  trace: bool = False) -> tuple[DryRun, Replay]:
    """Replay the ``days`` before ``now`` through ``policy``; the replay itself is returned for its trace."""
    policy.check_prices(prices)  # a cascade model without a price is a ConfigError now, not a silent $0
    started = time.perf_counter()
    start = now - timedelta(days=days)
    replay = Replay(policy, prices, trace=trace)
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        seed_from = _seed_from(policy, start)
        if seed_from < start:
            for s in await usage.quarter_hour_spend(conn, seed_from, start):
                replay.seed(s.key_id, s.developer, s.team, s.at, s.spent_micros, cost_center=s.cost_center,
                            model=s.model_used)
        async for batch in usage.replay_batches(conn, start, now, batch_rows=FETCH_ROWS):
            for row in batch:
                replay.feed(row)
    return _result(replay, policy, days, start, now, time.perf_counter() - started), replay


async def dry_runs(pool: asyncpg.Pool, policies: Sequence[Policy], prices: PriceTable, *, days: int,
                   now: datetime, team: str | None = None) -> list[DryRun]:
    """:func:`dry_run` of several policies over one read of the events (``policy suggest`` compares the
    live policy with a candidate): each policy gets its own replay, fed the same rows.

    ``team``: replay that team's events only (and seed its own earlier spend only). Exact for a change that
    touches that team's requests alone, except through budgets it shares with other teams (the org's, a
    cost center's), which then see this team's spend only."""
    for policy in policies:
        policy.check_prices(prices)
    started = time.perf_counter()
    start = now - timedelta(days=days)
    replays = [Replay(policy, prices) for policy in policies]
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        seeds: dict[datetime, list[Replay]] = {}
        for policy, replay in zip(policies, replays, strict=True):
            seeds.setdefault(_seed_from(policy, start), []).append(replay)
        for seed_from, seeded in seeds.items():
            if seed_from < start:
                for s in await usage.quarter_hour_spend(conn, seed_from, start, team):
                    for replay in seeded:
                        replay.seed(s.key_id, s.developer, s.team, s.at, s.spent_micros, cost_center=s.cost_center,
                                    model=s.model_used)
        async for batch in usage.replay_batches(conn, start, now, batch_rows=FETCH_ROWS, team=team):
            for replay in replays:
                feed = replay.feed
                for row in batch:
                    feed(row)
    elapsed_s = time.perf_counter() - started
    return [_result(replay, policy, days, start, now, elapsed_s) for policy, replay in zip(policies, replays,
                                                                                          strict=True)]


async def checks(pool: asyncpg.Pool, live: Policy, candidates: Sequence[tuple[Policy, Change]], prices: PriceTable,
                 *, days: int, now: datetime) -> tuple[Totals, list[Totals]]:
    """The live policy and every candidate over every event of the ``days`` before ``now``, in one read and
    about one replay (:mod:`spendgate.admin.overlay`): the totals ``policy suggest`` compares, org-wide."""
    for policy in (live, *(p for p, _ in candidates)):
        policy.check_prices(prices)
    start = now - timedelta(days=days)
    shared = Pass(live, prices, candidates)
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        seed_from = min(_seed_from(p, start) for p in (live, *(p for p, _ in candidates)))
        if seed_from < start:
            for s in await usage.quarter_hour_spend(conn, seed_from, start):
                shared.seed(s.key_id, s.developer, s.team, s.at, s.spent_micros, cost_center=s.cost_center,
                            model=s.model_used)
        async for batch in usage.replay_batches(conn, start, now, batch_rows=FETCH_ROWS, event_ids=False):
            feed = shared.feed
            for row in batch:
                feed(row)
    return shared.totals()


def _result(replay: Replay, policy: Policy, days: int, start: datetime, now: datetime,
            elapsed_s: float) -> DryRun:
    scopes = []
    for scope, t in replay.scopes.items():
        budget = policy.budgets[scope]
        scopes.append(ScopeResult(
            scope=scope, daily_budget_micros=budget.daily_micros, monthly_budget_micros=budget.monthly_micros,
            weekly_budget_micros=budget.weekly_micros,
            alerts=[DryRunAlert(period=a.period, period_start=a.period_start, threshold_pct=a.threshold_pct,
                                stage=a.stage, at=a.at, spent_micros=a.spent_micros, budget_micros=a.budget_micros)
                    for a in replay.alerts if a.scope == scope],
            downgrades=t.downgrades, downgrade_saved_micros=t.downgrade_saved_micros,
            forced_cheapest=t.forced_cheapest, forced_cheapest_saved_micros=t.forced_cheapest_saved_micros,
            refused_requests=t.refused_requests, retry_refused=t.retry_refused,
            paused_sessions=[
                PausedSession(session_id=p.session_id, developer=p.developer, paused_at=p.paused_at,
                              turns_before=p.turns_before, requests_before=p.requests_before,
                              refused_requests=p.refused_requests, remaining_turns=len(p.remaining_turns),
                              remaining_cost_micros=p.remaining_cost_micros, resumed_at=p.resumed_at)
                for p in replay.pauses if p.scope == scope],
            spend_micros=t.spend_micros, actual_micros=t.actual_micros,
        ))
    scopes.sort(key=lambda s: (-s.actual_micros, s.scope))
    tallies = replay.scopes.values()
    return DryRun(
        days=days, from_at=start, to_at=now, events=replay.events, spend_micros=replay.spend_micros,
        actual_micros=replay.actual_micros, downgrades=sum(t.downgrades for t in tallies),
        downgrade_saved_micros=sum(t.downgrade_saved_micros for t in tallies),
        forced_cheapest=sum(t.forced_cheapest for t in tallies),
        refused_requests=sum(t.refused_requests for t in tallies), retry_refused=replay.retry_refused,
        paused_sessions=len(replay.pauses), differences=replay.differences, changed=replay.changed,
        elapsed_ms=int(elapsed_s * 1000), scopes=scopes, exploration=policy.exploration is not None,
        explored_turns=len(replay.explored_turns),
        explore_requests=replay.explore_requests, explore_saved_micros=replay.explore_saved_micros,
    )
