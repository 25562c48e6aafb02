"""The optimiser's other knobs (``docs/policy.md``, "What the optimiser searches"): candidate changes beside
the routing rules, each the live policy with one change, for :func:`spendgate.admin.suggest.suggest` to
check with the dry-run replay.

- ``downgrade_limit``: a larger ``downgrade_max_input_tokens`` (the next size edges above today's), so bigger
  turns downgrade at the downgrade stage; quality from the explored / budget-downgraded turns of the sizes it
  adds, in every team that has them.
- ``stage_threshold``: a team budget's downgrade stage 5, 10 and 15 points earlier (95 % → 90, 85, 80 %; each
  still above the alert stage), where that team's small turns did as well on the cheaper model.
- ``budget``: a monthly budget for a team without one, at its stored month-end P90 rounded up to the next
  :data:`BUDGET_STEP_MICROS`, and a daily budget of that over the month's working days (Monday to Friday).
- ``retry_cap``: a team budget's retry cap each step lower, down to 1, where the team's sessions ran retry loops.

Several steps of one knob on one scope are several candidates: ``suggest`` dry-runs them all and keeps the best
(the largest dry-run saving with no extra pause). Reads: the stored forecasts and the window's retry spend per
team. No dry-run here.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg

from spendgate.domain.enforcement import Budget, Policy
from spendgate.domain.enforcement.policy import Thresholds
from spendgate.domain.enforcement.scopes import parse_scope, split_scope
from spendgate.domain.errors import ConfigError
from spendgate.domain.learning import Regression
from spendgate.domain.money import format_usd, usd_str
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.domain.pricing import ModelPrice
from spendgate.domain.segments import SIZE_EDGES, Estimate, SegmentTurn, estimate
from spendgate.store.forecasts.store import StoredForecast, latest_forecasts
from spendgate.store.usage import store as usage

KnobKind = Literal["downgrade_limit", "stage_threshold", "budget", "retry_cap"]
BUDGET_STEP_MICROS = 10_000_000
"""A proposed monthly budget is the P90 rounded up to the next $10."""
THRESHOLD_STEPS_PCT = (5, 10, 15)
"""A proposed downgrade stage starts this many points earlier than today's (each one a candidate)."""
RETRY_STEPS_ALL = 8
"""A retry cap up to this much above 1 is tried at every lower value; a larger one by halving."""


@dataclass(frozen=True, slots=True)
class Knob:
    """One candidate: ``policy`` is the live policy with the change."""

    kind: KnobKind
    id: str
    scope: str
    team: str | None
    """The team whose budget the change touches (its events are decided by the candidate in the dry-run; every
    team's events are replayed); None: a change to the whole policy."""
    words: str
    """The change in words, for the summary."""
    policy: Policy
    change: dict[str, Any]
    estimates: tuple[Estimate, ...] = ()
    """The quality evidence for the turns the change moves to a cheaper model (empty: it moves none)."""
    moves_turns: bool = False
    """The change sends turns to a cheaper model: the dry-run's extra downgrades need the evidence to hold."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A knob the evidence does not support, before any dry-run."""

    kind: KnobKind
    scope: str
    verdict: Literal["needs_data", "harmful", "no_saving"]
    summary: str
    estimate: Estimate | None = None


def _clean(raw: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in raw)[:64]


def _harmless(e: Estimate, tolerance: float) -> bool:
    return isinstance(e.result, Regression) and e.result.within(tolerance)


def downgrade_limit(live: Policy, turns: Sequence[SegmentTurn], cheaper_of: Callable[[str, str], str | None],
                    price_of: Callable[[str], ModelPrice | None], tolerance: float) -> Knob | Rejected | None:
    """The largest size edge above today's limit whose added turns are harmless in every team with evidence."""
    now = live.downgrade_max_input_tokens
    edges = [e for e in SIZE_EDGES if e > now]
    if not edges:
        return None
    if not any(t.route_reason == "downgrade" for t in turns):
        return Rejected("downgrade_limit", "org", "no_saving",
                        f"downgrade size limit above {now:,} tokens not proposed: no turn reached a downgrade stage "
                        "in the window, so a larger limit would change nothing")
    best: tuple[int, tuple[Estimate, ...]] | None = None
    last: Rejected | None = None
    for edge in edges:
        found: list[Estimate] = []
        groups: dict[tuple[str, str], list[SegmentTurn]] = {}
        for t in turns:
            if now <= t.input_tokens < edge:
                groups.setdefault((t.team, t.model_requested), []).append(t)
        for (team, model), members in sorted(groups.items()):
            cheaper = cheaper_of(team, model)
            price = price_of(cheaper) if cheaper else None
            if cheaper is not None and price is not None:
                found.append(estimate(members, cheaper, price))
        judged = [e for e in found if isinstance(e.result, Regression)]
        if not judged:
            last = Rejected("downgrade_limit", "org", "needs_data",
                            f"downgrade size limit {edge:,} tokens not proposed: too few explored or downgraded turns "
                            f"of {now:,} to {edge:,} tokens to tell what the cheaper model does to them",
                            found[0] if found else None)
            break
        bad = next((e for e in judged if not _harmless(e, tolerance)), None)
        if bad is not None:
            assert isinstance(bad.result, Regression)
            last = Rejected("downgrade_limit", "org", "harmful",
                            f"downgrade size limit {edge:,} tokens not proposed: turns of {now:,} to {edge:,} tokens "
                            f"regress {bad.result.regression * 100:.1f} % (95 % upper bound "
                            f"{bad.result.upper * 100:.1f} %) on {bad.candidate}, above the tolerance", bad)
            break
        best = (edge, tuple(judged))
    if best is None:
        return last
    edge, estimates = best
    return Knob("downgrade_limit", f"suggest-downgrade-limit-{edge // 1000}k", "org", None,
                f"let turns under {edge:,} input tokens (today {now:,}) downgrade at the downgrade stage",
                replace(live, downgrade_max_input_tokens=edge), {"downgrade_max_input_tokens": edge},
                estimates, moves_turns=True)


def _with_budget(policy: Policy, budget: Budget) -> Policy:
    return policy.with_budgets([*(b for s, b in policy.budgets.items() if s != budget.scope), budget],
                               policy.raises)


def _team_estimate(live: Policy, team: str, turns: Sequence[SegmentTurn],
                   cheaper_of: Callable[[str, str], str | None],
                   price_of: Callable[[str], ModelPrice | None]) -> Estimate | None:
    """The team's turns a downgrade stage would move (under the size limit), on its most used model."""
    small = [t for t in turns if t.team == team and t.input_tokens < live.downgrade_max_input_tokens]
    models: dict[str, int] = {}
    for t in small:
        models[t.model_requested] = models.get(t.model_requested, 0) + 1
    for model in sorted(models, key=lambda m: -models[m]):
        cheaper = cheaper_of(team, model)
        price = price_of(cheaper) if cheaper else None
        if cheaper is not None and price is not None:
            return estimate([t for t in small if t.model_requested == model], cheaper, price)
    return None


def stage_thresholds(live: Policy, turns: Sequence[SegmentTurn], cheaper_of: Callable[[str, str], str | None],
                     price_of: Callable[[str], ModelPrice | None], tolerance: float,
                     team: str | None) -> list[Knob]:
    out = []
    for scope, b in sorted(live.budgets.items()):
        name = scope.removeprefix("team:")
        if not scope.startswith("team:") or split_scope(scope)[1] is not None or (team and name != team):
            continue
        t = b.thresholds
        lowers = [t.downgrade_pct - step for step in THRESHOLD_STEPS_PCT if t.downgrade_pct - step > t.alert_pct]
        if not lowers:
            continue
        e = _team_estimate(live, name, turns, cheaper_of, price_of)
        if e is None or not _harmless(e, tolerance):
            continue  # not shown as not proposed: the routing-rule verdict already says why for this team
        for lower in lowers:
            proposed = _with_budget(live, replace(b, thresholds=Thresholds(t.alert_pct, lower, t.pause_pct)))
            out.append(Knob("stage_threshold", _clean(f"suggest-{name}-downgrade-at-{lower}"), scope, name,
                            f"start {scope}'s downgrade stage at {lower} % of its budget instead of "
                            f"{t.downgrade_pct} %",
                            proposed, {"scope": scope, "thresholds": [t.alert_pct, lower, t.pause_pct]}, (e,),
                            moves_turns=True))
    return out


def _writable(scope: str) -> bool:
    """A team name from the traffic that a policy document can hold (printable, not too long): another one
    would make a document ``policy apply`` refuses."""
    try:
        return parse_scope(scope) == scope
    except ConfigError:
        return False


def working_days(year: int, month: int) -> int:
    days = calendar.monthrange(year, month)[1]
    return sum(1 for d in range(1, days + 1) if calendar.weekday(year, month, d) < 5)


def round_up(micros: int, step: int = BUDGET_STEP_MICROS) -> int:
    return max(step, -(-micros // step) * step)


async def team_budgets(pool: asyncpg.Pool, live: Policy, turns: Sequence[SegmentTurn],
                       cheaper_of: Callable[[str, str], str | None], price_of: Callable[[str], ModelPrice | None],
                       *, now: datetime, team: str | None) -> list[Knob]:
    """A monthly (P90, rounded up) and daily (monthly / working days) budget per unbudgeted team forecast
    for this month."""
    month = period_containing(PeriodKind.MONTH, now, "UTC").start
    forecasts: list[StoredForecast] = await latest_forecasts(pool, f"team:{team}" if team else None)
    out = []
    for f in forecasts:
        if not f.scope.startswith("team:") or split_scope(f.scope)[1] is not None or f.scope in live.budgets:
            continue
        if f.month != month or f.p90_micros <= 0 or not _writable(f.scope):
            continue
        name = f.scope.removeprefix("team:")
        monthly = round_up(f.p90_micros)
        days = working_days(month.year, month.month)
        daily = monthly // days
        budget = Budget(f.scope, daily_micros=daily, monthly_micros=monthly)
        e = _team_estimate(live, name, turns, cheaper_of, price_of)
        out.append(Knob("budget", _clean(f"suggest-{name}-budget"), f.scope, name,
                        f"give {f.scope} a monthly budget of {format_usd(monthly)} (its month-end P90 "
                        f"{format_usd(f.p90_micros)} rounded up to the next {format_usd(BUDGET_STEP_MICROS)}) and a "
                        f"daily one of {format_usd(daily)} ({format_usd(monthly)} / {days} working days in "
                        f"{month:%B})",
                        _with_budget(live, budget),
                        {"scope": f.scope, "monthly": usd_str(monthly), "daily": usd_str(daily)},
                        (e,) if e is not None else (), moves_turns=True))
    return out


async def retry_spend(pool: asyncpg.Pool, *, start: datetime, end: datetime,
                      team: str | None) -> dict[str, tuple[int, int]]:
    """team → (retry requests, their cost) in the window."""
    return await usage.retry_spend(pool, start, end, team)


def lower_caps(cap: int) -> list[int]:
    """The retry caps tried below ``cap``: every one down to 1 for a cap up to :data:`RETRY_STEPS_ALL`, else one
    lower and then halving (a cap of 1,000 gives 10 candidates, not 999)."""
    if cap - 1 <= RETRY_STEPS_ALL:
        return list(range(cap - 1, 0, -1))
    found, v = {cap - 1}, cap
    while v > 1:
        v //= 2
        found.add(max(v, 1))
    return sorted(found, reverse=True)


def retry_caps(live: Policy, spend: dict[str, tuple[int, int]]) -> list[Knob]:
    out = []
    for name, (n, cost) in sorted(spend.items()):
        scope = f"team:{name}"
        b = live.budgets.get(scope)
        if b is None or cost <= 0:
            continue  # a cap lives on a budget: a team without one gets the budget suggestion first
        cap = live.retry_cap_for((scope,))
        for lower in lower_caps(cap):
            out.append(Knob("retry_cap", _clean(f"suggest-{name}-retry-cap-{lower}"), scope, name,
                            f"lower {scope}'s retry cap from {cap} to {lower} ({n:,} retry requests cost "
                            f"{format_usd(cost)} in the window)",
                            _with_budget(live, replace(b, retry_cap=lower)), {"scope": scope, "retry_cap": lower}))
    return out
