"""The enforcement decision: pass, downgrade, force the cheapest model, or refuse. Pure: no I/O.

``decide`` looks at every budgeted scope a request falls in (key, developer, team, cost center, org,
and each one's per-model budget of the requested model) and every period (day, week, month), computes
each one's stage from ``settled + unsettled + reserved`` spend against the effective budget (base plus
active raises), and lets the most severe stage decide:

- ``ok`` / ``alert``: pass (the ledger's threshold crossing drives the alert);
- ``downgrade``: turns estimated under ``downgrade_max_input_tokens`` move one step down the
  requested model's cascade; larger turns, and models without a cascade, keep the requested model;
- ``pause``: refused when a pausing scope says ``at_pause: refuse`` or the model has no cascade;
  otherwise ``cheapest`` (if any pausing scope says it) sends the request to the cascade's last model
  and ``step_down`` one step down the cascade, whatever the turn's size.

Routing rules (``Policy.routing``, :mod:`.routing`) come first: a request a rule matches is decided
as a request for the rule's model (its stages, its cascade), and recorded as routed by that rule
(``route_reason`` ``routing_rule``, unless a budget stage then moved it further). A refusal stays a
refusal of the requested model.

Exploration (``Policy.exploration``, :mod:`.exploration`) comes last: a request no rule routed, at the
``ok`` or ``alert`` stage, eligible for the experiment (team, turn id, size, a cheaper step), is put in its
turn's arm; an ``explore`` turn is decided as a request for the next cheaper model (``route_reason``
``explore`` unless a budget stage then moves it further; the arm is kept either way).

The cascade is the narrowest budgeted scope's own for the model, else the settings' (``Policy.chain``).
A per-model budget's stage is its model's alone: a request downgraded away from it reserves against
the balances of the model it is sent to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from spendgate.domain.enforcement.balances import BalanceKey, SpendOf
from spendgate.domain.enforcement.policy import AtPause, Policy
from spendgate.domain.enforcement.scopes import MODEL_SEP, Principal
from spendgate.domain.enforcement.stages import StageLevel, stage_for
from spendgate.domain.events import ExperimentArm, RouteReason
from spendgate.domain.periods import PERIOD_KINDS

Action = Literal["pass", "downgrade", "pause_cheapest", "pause_step_down", "refuse"]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the decision knows about a request before it is forwarded."""

    principal: Principal
    model: str
    est_input_tokens: int
    session_id: str | None = None
    turn_id: str | None = None
    """The request's turn (exploration draws its arm from it); None: not part of a known turn."""


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
    policy_version: str | None = None
    """The stored policy version that decided (``Policy.version``)."""
    routing_rule: str | None = None
    """The routing rule that changed the model (its name), if one did."""
    experiment_arm: ExperimentArm | None = None
    """The exploration arm of the request's turn (None: not in the experiment)."""

    @property
    def refused(self) -> bool:
        return self.action == "refuse"


def balance_keys(principal: Principal, policy: Policy, now: datetime,
                 model: str = "") -> list[tuple[BalanceKey, datetime]]:
    """The budgeted balances a request for ``model`` at ``now`` falls in, each with the instant its period
    resets (``model`` empty: the balances of every model only, not the per-model ones).

    Kept per scopes on the policy (a new policy, on any budget change, starts empty) until one of the
    periods ends: every request of a key asks the same question."""
    scopes = principal.scopes()
    cache_key = (*scopes, MODEL_SEP + model) if model in policy._models else scopes
    cached = policy._keys.get(cache_key)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached[2]
    out: list[tuple[BalanceKey, datetime]] = []
    starts, ends = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    for scope in policy.budget_scopes(scopes, model):
        budget = policy.budgets[scope]
        for kind in PERIOD_KINDS:
            if budget.limit_micros(kind) is not None:
                period = policy.period(kind, budget.timezone, now)
                out.append((BalanceKey(scope, kind, period.start), period.ends_at))
                starts, ends = max(starts, period.starts_at), min(ends, period.ends_at)
    if len(policy._keys) >= KEYS_CACHED:
        policy._keys.clear()
    policy._keys[cache_key] = (starts, ends, out)
    return out


KEYS_CACHED = 100_000
"""At most this many principals' balance keys are kept per policy (then the cache starts again)."""


def standings(principal: Principal, policy: Policy, spend: SpendOf, now: datetime,
              model: str = "") -> list[Standing]:
    """Every budgeted scope-period of a request for ``model`` with its spend, effective budget and stage."""
    out = []
    for key, resets_at in balance_keys(principal, policy, now, model):
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
    if policy.routing.rules:
        rule = policy.routing.match(facts.principal, facts.model, facts.est_input_tokens, now, policy.chain_of)
        if rule is not None:
            return _decide(facts, rule.model, policy, spend, now, None, rule.name)
    decided = _decide(facts, facts.model, policy, spend, now, found, None)
    exploration = policy.exploration
    if exploration is None or facts.principal.team not in exploration.teams:
        return decided  # the common case: one set lookup
    turn = facts.turn_id
    if (turn is None or not exploration.applies(facts.principal.team, facts.model, facts.est_input_tokens, turn)
            or decided.action != "pass" or decided.stage > StageLevel.ALERT):
        return decided
    cheaper = _next(policy.chain_of(facts.model, facts.principal))
    if cheaper is None:
        return decided
    if exploration.arm(turn) == "control":
        return _with_arm(decided, "control")
    explored = _decide(facts, cheaper, policy, spend, now, None, None, "explore")
    if explored.refused:  # a per-model budget of the cheaper model is paused: exploring must not refuse
        return decided
    return _with_arm(explored, "explore")


def _with_arm(d: Decision, arm: ExperimentArm) -> Decision:
    """``d`` in ``arm`` (built directly: ``dataclasses.replace`` costs microseconds on the request path)."""
    return Decision(d.action, d.stage, d.model_requested, d.model_used, d.route_reason, d.decided_by, d.keys,
                    d.remaining_micros, d.policy_version, d.routing_rule, arm)


def _next(chain: tuple[str, ...]) -> str | None:
    return chain[1] if len(chain) > 1 else None


def _decide(facts: RequestFacts, model: str, policy: Policy, spend: SpendOf, now: datetime,
            found: list[Standing] | None, rule: str | None, changed: RouteReason = "routing_rule") -> Decision:
    """The budget decision for a request served by ``model`` (the requested one, or ``rule``'s)."""
    asked, version = facts.model, policy.version
    if found is None:
        found = standings(facts.principal, policy, spend, now, model)
    keys = tuple(s.key for s in found)
    left = min((s.budget_micros - s.spent_micros for s in found), default=None)
    level = max((s.stage for s in found), default=StageLevel.OK)
    at_level = [s for s in found if s.stage == level]
    if level is StageLevel.PAUSE:
        chain = policy.chain(model, facts.principal.scopes())
        refusing = [s for s in at_level if s.at_pause == "refuse" or len(chain) < 2]
        if refusing:
            # The request passes again only when every refusing period has reset: name the last one.
            by = max(refusing, key=lambda s: (s.resets_at, s.spent_micros * 10**6 // s.budget_micros))
            return Decision("refuse", level, asked, asked, "requested", by, keys, left, version)
        by = max(at_level, key=lambda s: s.resets_at)
        if any(s.at_pause == "cheapest" for s in at_level):
            spends_in = _keys_for(facts, model, policy, now, chain[-1], keys)
            return Decision("pause_cheapest", level, asked, chain[-1], "pause_cheapest", by, spends_in, left,
                            version, rule)
        return Decision("pause_step_down", level, asked, chain[1], "pause_step_down", by,
                        _keys_for(facts, model, policy, now, chain[1], keys), left, version, rule)
    reason: RouteReason = "requested" if rule is None and changed != "explore" else changed
    if not at_level:
        return Decision("pass", level, asked, model, reason, None, keys, left, version, rule)
    by = _worst(at_level)
    if level is StageLevel.DOWNGRADE and facts.est_input_tokens < policy.downgrade_max_input_tokens:
        target = policy.next_model(model, facts.principal.scopes())
        if target is not None:
            return Decision("downgrade", level, asked, target, "downgrade", by,
                            _keys_for(facts, model, policy, now, target, keys), left, version, rule)
    return Decision("pass", level, asked, model, reason, by, keys, left, version, rule)


def _keys_for(facts: RequestFacts, model: str, policy: Policy, now: datetime, used: str,
              requested: tuple[BalanceKey, ...]) -> tuple[BalanceKey, ...]:
    """The balances a request for ``model`` sent to ``used`` instead spends in: the same unless a per-model
    budget counts one of the two models."""
    if model not in policy._models and used not in policy._models:
        return requested
    return tuple(key for key, _ in balance_keys(facts.principal, policy, now, used))
