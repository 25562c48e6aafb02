"""The enforcement decision: pass, downgrade, force the cheapest model, or refuse. Pure: no I/O.

``decide`` looks at every budgeted scope a request falls in (key, developer, team, org) and both
periods (day, month), computes each one's stage from ``settled + unsettled + reserved`` spend against
the effective budget (base plus active raises), and lets the most severe stage decide:

- ``ok`` / ``alert``: pass (the ledger's threshold crossing drives the alert);
- ``downgrade``: turns estimated under ``downgrade_max_input_tokens`` move one step down the
  requested model's cascade; larger turns, and models without a cascade, keep the requested model;
- ``pause``: refused, unless every pausing scope says ``at_pause: cheapest`` and the model has a
  cascade, in which case the request goes to the cascade's last model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from spendgate.domain.enforcement.balances import BalanceKey, SpendOf
from spendgate.domain.enforcement.policy import AtPause, Policy
from spendgate.domain.enforcement.scopes import Principal
from spendgate.domain.enforcement.stages import StageLevel, stage_for
from spendgate.domain.events import RouteReason
from spendgate.domain.periods import PeriodKind

Action = Literal["pass", "downgrade", "pause_cheapest", "refuse"]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the decision knows about a request before it is forwarded."""

    principal: Principal
    model: str
    est_input_tokens: int
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Standing:
    """One scope-period's position against its budget at decision time."""

    key: BalanceKey
    resets_at: datetime
    spent_micros: int
    budget_micros: int
    stage: StageLevel
    at_pause: AtPause
    timezone: str

    @property
    def scope(self) -> str:
        return self.key.scope


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    stage: StageLevel
    model_requested: str
    model_used: str
    route_reason: RouteReason
    decided_by: Standing | None
    """The scope-period whose stage decided (None when no budget applies)."""
    keys: tuple[BalanceKey, ...]
    """The budgeted balances this request's spend lands in: reserve against these."""
    remaining_micros: int | None = None
    """The tightest of the request's budgets: the least (effective budget − spent) over its budgeted
    scope-periods, negative once spend is past a budget; None when no budget applies."""

    @property
    def refused(self) -> bool:
        return self.action == "refuse"


def balance_keys(principal: Principal, policy: Policy, now: datetime) -> list[tuple[BalanceKey, datetime]]:
    """The budgeted balances a request at ``now`` falls in, each with the instant its period resets.

    Kept per scopes on the policy (a new policy, on any budget change, starts empty) until one of the
    periods ends: every request of a key asks the same question."""
    scopes = principal.scopes()
    cached = policy._keys.get(scopes)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached[2]
    out: list[tuple[BalanceKey, datetime]] = []
    starts, ends = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    for scope in scopes:
        budget = policy.budgets.get(scope)
        if budget is None:
            continue
        for kind in (PeriodKind.DAY, PeriodKind.MONTH):
            if budget.limit_micros(kind) is not None:
                period = policy.period(kind, budget.timezone, now)
                out.append((BalanceKey(scope, kind, period.start), period.ends_at))
                starts, ends = max(starts, period.starts_at), min(ends, period.ends_at)
    if len(policy._keys) >= KEYS_CACHED:
        policy._keys.clear()
    policy._keys[scopes] = (starts, ends, out)
    return out


KEYS_CACHED = 100_000
"""At most this many principals' balance keys are kept per policy (then the cache starts again)."""


def standings(principal: Principal, policy: Policy, spend: SpendOf, now: datetime) -> list[Standing]:
    """Every budgeted scope-period of the request with its spend, effective budget and stage."""
    out = []
    for key, resets_at in balance_keys(principal, policy, now):
        budget = policy.budgets[key.scope]
        limit = policy.effective_micros(budget, key.period, now)
        assert limit is not None
        spent = spend(key)
        out.append(Standing(key, resets_at, spent, limit, stage_for(spent, limit, budget.thresholds),
                            budget.at_pause, budget.timezone))
    return out


def _worst(candidates: list[Standing]) -> Standing:
    """Highest spent/budget ratio (compared by cross-multiplication), later reset on a tie."""
    best = candidates[0]
    for s in candidates[1:]:
        lhs, rhs = s.spent_micros * best.budget_micros, best.spent_micros * s.budget_micros
        if lhs > rhs or (lhs == rhs and s.resets_at > best.resets_at):
            best = s
    return best


def decide(facts: RequestFacts, policy: Policy, spend: SpendOf, now: datetime,
           found: list[Standing] | None = None) -> Decision:
    """Decide what happens to a request; the most severe stage over all its scopes wins.

    ``found``: the request's :func:`standings` when the caller has just computed them for the same
    principal, spend and time (the proxy does, to see whether it is near a pause line).
    """
    if found is None:
        found = standings(facts.principal, policy, spend, now)
    keys = tuple(s.key for s in found)
    left = min((s.budget_micros - s.spent_micros for s in found), default=None)
    model = facts.model
    level = max((s.stage for s in found), default=StageLevel.OK)
    at_level = [s for s in found if s.stage == level]
    if level is StageLevel.PAUSE:
        cheapest = policy.cheapest_model(model)
        refusing = [s for s in at_level if s.at_pause == "refuse" or cheapest is None]
        if refusing:
            # The request passes again only when every refusing period has reset: name the last one.
            by = max(refusing, key=lambda s: (s.resets_at, s.spent_micros * 10**6 // s.budget_micros))
            return Decision("refuse", level, model, model, "requested", by, keys, left)
        assert cheapest is not None
        by = max(at_level, key=lambda s: s.resets_at)
        return Decision("pause_cheapest", level, model, cheapest, "pause_cheapest", by, keys, left)
    if not at_level:
        return Decision("pass", level, model, model, "requested", None, keys, left)
    by = _worst(at_level)
    if level is StageLevel.DOWNGRADE and facts.est_input_tokens < policy.downgrade_max_input_tokens:
        target = policy.next_model(model)
        if target is not None:
            return Decision("downgrade", level, model, target, "downgrade", by, keys, left)
    return Decision("pass", level, model, model, "requested", by, keys, left)
