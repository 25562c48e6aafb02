"""Forecast-driven rationing: when a scope's month-end P50 (the stored forecast) crosses its monthly
budget, propose the least disruptive change that brings P50 back under (docs/policy.md, "Rationing").

Three candidates per scope, each a whole policy document (the live one with one change):

- ``downgrade_earlier``: the downgrade stage from now on (its threshold lowered to what the month has
  already spent), so small turns go to the cheaper model for the rest of the month;
- ``daily_cap``: a daily budget of what is left of the month's budget spread over the days left;
- ``routing_rule``: always-on rules sending the scope's small turns (under the downgrade size limit)
  one step down their model's cascade (one rule per cheaper model, naming the models it takes).

Each is replayed (:func:`spendgate.admin.dryrun.dry_run`) over the last ``guard.ration_days`` days beside
the live policy; the scope's spend saved per day, times the days left, is taken off the P50. The
proposals are ordered: those that bring P50 under first, then fewest sessions paused, fewest turns
paused, fewest requests treated differently, most saved. ``guard.auto_ration`` applies the first one
that suffices as a new signed version (approver ``spendgate-ration``), undone with ``policy rollback``.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Literal

import asyncpg
import msgspec

from spendgate.admin.dryrun import DryRun, ScopeResult, dry_run
from spendgate.admin.policy import live_policy, to_document
from spendgate.admin.policy_versions import apply_version
from spendgate.core.config import Settings
from spendgate.core.logs import get_logger
from spendgate.domain.enforcement import Budget, Policy
from spendgate.domain.enforcement.policy import Thresholds, policy_from_document
from spendgate.domain.enforcement.routing import RoutingRule, RoutingTable
from spendgate.domain.enforcement.scopes import split_scope
from spendgate.domain.errors import ConfigError, StoreError
from spendgate.domain.money import format_usd
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.domain.pricing import PriceTable
from spendgate.store.access import store as access
from spendgate.store.forecasts.store import StoredForecast, latest_forecasts
from spendgate.store.policies import store as versions

log = get_logger(__name__)
RATION_APPROVER = "spendgate-ration"
MAX_SCOPES = 20
"""Overrun scopes considered per call (each costs three replays), the largest overruns first."""
Kind = Literal["downgrade_earlier", "daily_cap", "routing_rule"]


class RationDryRun(msgspec.Struct, frozen=True, kw_only=True):
    days: int
    saved_micros: int
    """The scope's spend saved over the replayed days, against the live policy replayed the same way."""
    requests_changed: int
    """Requests the proposal serves differently from the live policy's replay (downgraded, routed, refused)."""
    paused_sessions: int
    turns_paused: int
    """Turns that paused sessions would not have started (beyond the live policy's)."""


class RationProposal(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    scope: str
    summary: str
    """One sentence with the math."""
    sufficient: bool
    """The estimated P50 after the change is at or under the budget."""
    p50_after_micros: int
    saved_micros: int
    """The estimated saving from now to month end: the replay's saving per day times the days left."""
    dry_run: RationDryRun
    document: dict[str, Any]
    """The proposed policy (the live one with this change): ``policy dry-run`` / ``apply`` it."""


class ScopeRation(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    month: date
    as_of: date
    actual_micros: int
    p50_micros: int
    budget_micros: int
    days_left: float
    proposals: list[RationProposal]
    note: str = ""


class Rationing(msgspec.Struct, frozen=True, kw_only=True):
    checked_at: datetime
    scopes: list[ScopeRation]
    """Scopes whose P50 crosses their monthly budget (empty: none does)."""
    note: str = ""
    """When a named scope has nothing to ration: why (no forecast, no monthly budget, under it)."""


def _rule_name(scope: str, i: int) -> str:
    return f"ration-{re.sub(r'[^A-Za-z0-9._-]', '-', scope)[:40]}-{i}"


def candidates(policy: Policy, budget: Budget, f: StoredForecast, days_left: int) -> list[tuple[Kind, Policy, Policy]]:
    """(kind, the proposed policy, the policy to replay): the proposal's effect on the rest of the month is
    estimated from a replay in which the change is in force over the whole window."""
    out: list[tuple[Kind, Policy, Policy]] = []
    t, monthly = budget.thresholds, budget.monthly_micros or f.budget_micros or 0
    spent_pct = f.actual_micros * 100 // monthly if monthly else 0
    if t.downgrade_pct >= 1 and spent_pct < t.downgrade_pct:
        now_pct = max(1, spent_pct)
        proposed = Thresholds(min(t.alert_pct, now_pct), now_pct, t.pause_pct)
        replayed = Thresholds(1, 1, t.pause_pct)  # in force over the whole replayed window
        out.append(("downgrade_earlier", _with_budget(policy, replace(budget, thresholds=proposed)),
                    _with_budget(policy, replace(budget, thresholds=replayed))))
    left = (f.budget_micros or 0) - f.actual_micros
    if left > 0 and days_left > 0:
        daily = left // days_left
        if daily > 0 and (budget.daily_micros is None or daily < budget.daily_micros):
            capped = _with_budget(policy, replace(budget, daily_micros=daily))
            out.append(("daily_cap", capped, capped))
    steps: dict[str, list[str]] = {}
    for model, chain in sorted(policy.cascades.items()):
        if chain:
            steps.setdefault(chain[0], []).append(model)
    names = {r.name for r in policy.routing.rules}
    rules = [RoutingRule(_rule_name(budget.scope, i), budget.scope, policy.downgrade_max_input_tokens, step,
                         budget.timezone, None, tuple(models)) for i, (step, models) in enumerate(steps.items(), 1)]
    if rules and not names & {r.name for r in rules}:
        routed = policy.with_version(policy.version, RoutingTable((*rules, *policy.routing.rules)), policy.exploration)
        out.append(("routing_rule", routed, routed))
    return out


def _with_budget(policy: Policy, budget: Budget) -> Policy:
    return policy.with_budgets([*(b for s, b in policy.budgets.items() if s != budget.scope), budget],
                               policy.raises)


def _scope(result: DryRun, scope: str) -> ScopeResult | None:
    return next((s for s in result.scopes if s.scope == scope), None)


def _describe(kind: Kind, policy: Policy, budget: Budget) -> str:
    if kind == "downgrade_earlier":
        return f"start the downgrade stage now (threshold {budget.thresholds.downgrade_pct} %)"
    if kind == "daily_cap":
        return f"cap daily spend at {format_usd(budget.daily_micros or 0)}"
    rules = [r for r in policy.routing.rules if r.name.startswith("ration-") and r.scope == budget.scope]
    pairs = [f"{m} → {r.model}" for r in rules for m in (r.models or ())]
    shown = ", ".join(pairs[:4]) + (f" and {len(pairs) - 4} more" if len(pairs) > 4 else "")
    return f"route turns under {policy.downgrade_max_input_tokens:,} input tokens one model cheaper ({shown})"


async def overrun_forecasts(pool: asyncpg.Pool, scope: str | None = None) -> list[StoredForecast]:
    """The latest forecasts whose P50 crosses their monthly budget, the largest overrun first."""
    over = [f for f in await latest_forecasts(pool, scope)
            if f.budget_micros is not None and f.p50_micros > f.budget_micros and split_scope(f.scope)[1] is None]
    return sorted(over, key=lambda f: (-(f.p50_micros - (f.budget_micros or 0)), f.scope))


async def proposals(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, *, now: datetime,
                    scope: str | None = None) -> Rationing:
    """The rationing proposals of every scope (or ``scope``) whose latest P50 crosses its monthly budget."""
    days = settings.guard.ration_days
    policy = await live_policy(pool, settings.enforcement, now)
    over = await overrun_forecasts(pool, scope)
    if not over:
        return Rationing(checked_at=now, scopes=[], note=await _why_not(pool, scope) if scope else "")
    base, _ = await dry_run(pool, policy, prices, days=days, now=now)
    out = []
    for f in over[:MAX_SCOPES]:
        out.append(await _ration_scope(pool, policy, base, f, prices, days=days, now=now))
    return Rationing(checked_at=now, scopes=out)


async def _why_not(pool: asyncpg.Pool, scope: str) -> str:
    """Why ``scope`` has nothing to ration, in a sentence."""
    found = await latest_forecasts(pool, scope)
    if not found:
        return (f"{scope} has no forecast yet (the forecaster forecasts every scope with spend this month): "
                "nothing to ration")
    f = found[0]
    if f.budget_micros is None:
        return f"{scope} has no monthly budget (month-end P50 {format_usd(f.p50_micros)}): nothing to ration"
    if split_scope(f.scope)[1] is not None:
        return f"{scope} is a per-model budget: rationing proposes changes for whole scopes only"
    return (f"{scope}'s month-end P50 {format_usd(f.p50_micros)} is within its {format_usd(f.budget_micros)} "
            f"monthly budget (forecast of {f.as_of}): nothing to ration")


async def _ration_scope(pool: asyncpg.Pool, policy: Policy, base: DryRun, f: StoredForecast, prices: PriceTable,
                        *, days: int, now: datetime) -> ScopeRation:
    assert f.budget_micros is not None
    budget = policy.budgets.get(f.scope)

    def result(days_left: float, found: list[RationProposal], note: str) -> ScopeRation:
        assert f.budget_micros is not None
        return ScopeRation(scope=f.scope, month=f.month, as_of=f.as_of, actual_micros=f.actual_micros,
                           p50_micros=f.p50_micros, budget_micros=f.budget_micros, days_left=round(days_left, 2),
                           proposals=found, note=note)

    if budget is None or budget.monthly_micros is None:
        return result(0.0, [], "no monthly budget in the live policy any more")
    month = period_containing(PeriodKind.MONTH, now, budget.timezone)
    left_s = max(0.0, (month.ends_at - now).total_seconds())
    days_left = left_s / 86_400
    if month.start != f.month:
        return result(days_left, [], "the latest forecast is of another month; wait for the forecaster's next pass")
    base_scope = _scope(base, f.scope)
    found = []
    for kind, proposed, replayed in candidates(policy, budget, f, max(1, math.ceil(days_left))):
        replay, _ = await dry_run(pool, replayed, prices, days=days, now=now)
        found.append(_proposal(kind, proposed, replay, base, base_scope, f, days_left, days))
    found.sort(key=lambda p: (not p.sufficient, p.dry_run.paused_sessions, p.dry_run.turns_paused,
                              p.dry_run.requests_changed, -p.saved_micros))
    note = "" if found else "no candidate applies (already downgrading, no budget left for a daily cap, no cascade)"
    return result(days_left, found, note)


def _proposal(kind: Kind, proposed: Policy, result: DryRun, base: DryRun,
              base_scope: ScopeResult | None, f: StoredForecast, days_left: float, days: int) -> RationProposal:
    assert f.budget_micros is not None
    mine = _scope(result, f.scope)
    saved_window = max(0, (base_scope.spend_micros if base_scope else 0) - (mine.spend_micros if mine else 0))
    saved = int(saved_window * days_left / days)
    after = f.p50_micros - saved
    paused = mine.paused_sessions if mine else []
    paused_before = base_scope.paused_sessions if base_scope else []
    run = RationDryRun(
        days=days, saved_micros=saved_window, requests_changed=max(0, result.changed - base.changed),
        paused_sessions=max(0, len(paused) - len(paused_before)),
        turns_paused=max(0, sum(p.remaining_turns for p in paused) - sum(p.remaining_turns for p in paused_before)))
    budget = proposed.budgets[f.scope]
    what = _describe(kind, proposed, budget)
    verdict = "under" if after <= f.budget_micros else "still over"
    summary = (f"{f.scope}: {what}; month-end P50 {format_usd(f.p50_micros)} against a "
               f"{format_usd(f.budget_micros)} budget; a dry-run of the last {days} days saves "
               f"{format_usd(saved_window)} ({format_usd(saved_window // days)} a day), × {days_left:.1f} days left = "
               f"{format_usd(saved)}, so P50 becomes {format_usd(after)} ({verdict}); {run.requests_changed} requests "
               f"treated differently, {run.paused_sessions} sessions paused")
    return RationProposal(kind=kind, scope=f.scope, summary=summary, sufficient=after <= f.budget_micros,
                          p50_after_micros=after, saved_micros=saved, dry_run=run,
                          document=to_document(proposed.with_version(None, proposed.routing, proposed.exploration)))


async def auto_ration(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, *, now: datetime,
                      tried: set[tuple[str, date]] | None = None) -> str | None:
    """Apply the least disruptive sufficient proposal of one overrun scope as a new version (one per pass:
    the next pass starts from the policy it made); returns the version id, or None.

    A scope is rationed once per forecast (a version by ``spendgate-ration`` since the forecast's day skips
    it), and ``tried`` (the worker's memory: (scope, forecast day)) skips forecasts already weighed, so the
    replays run once per new forecast, not every pass."""
    tried = set() if tried is None else tried
    recent = await versions.list_versions(pool, limit=50)
    for f in await overrun_forecasts(pool):
        if (f.scope, f.as_of) in tried:
            continue
        tried.add((f.scope, f.as_of))
        if any(v.approver == RATION_APPROVER and v.reason.startswith(f"ration {f.scope}:")
               and v.created_at.date() >= f.as_of for v in recent):
            continue  # rationed since this forecast: wait for the next one to see the effect
        [scope] = (await proposals(pool, settings, prices, now=now, scope=f.scope)).scopes
        best = next((p for p in scope.proposals if p.sufficient), None)
        if best is None:
            log.warning("auto_ration: no proposal brings P50 under its budget", scope=f.scope)
            continue
        reason = f"ration {best.summary}"[:500]
        try:
            policy = policy_from_document(best.document, settings.enforcement)
            done = await apply_version(pool, policy, settings, prices, now=now, approver=RATION_APPROVER,
                                       reason=reason)
        except (ConfigError, StoreError) as exc:
            log.error("auto_ration: proposal not applied", scope=f.scope, reason=exc.message)
            return None
        await access.record(pool, actor=RATION_APPROVER, action="policy.apply", target="policy",
                            detail={"version": done.version_id, "kind": best.kind, "scope": f.scope})
        log.warning("auto_ration applied a proposal", scope=f.scope, kind=best.kind, version=done.version_id)
        return done.version_id
    return None
