"""The policy replay engine: stored usage events, in time order, through the proxy's own decision.

Pure: no I/O. Each event becomes the request it was (key, developer, team, session, requested model,
input tokens as the estimate) and goes through :func:`spendgate.domain.enforcement.decide` against the
spend the proposal would have let happen so far; its cost is then recomputed for the model the
decision picks (the stored cost when that is the model that served it, else repriced with
:func:`spendgate.domain.pricing.cost_micros`) and added to its budgeted balances, where threshold
crossings become the alerts the proposal would have sent.

What a replay cannot know: requests that never happened because the live policy paused their
session (a looser proposal cannot bring them back), and the tokens of requests that were refused
live. Retries are counted from the events' ``retry`` flag: a run of consecutive retry requests in
a session is refused once it reaches the scope's retry cap, as the retry detector would.

Exploration (the proposal's ``exploration`` block) is replayed with the proxy's own keyed hash of each
event's turn id, so the replay explores exactly the turns the proxy would; ``explored_turns`` and
``explore_saved_micros`` say how many and what that saves.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from spendgate.domain.enforcement import BalanceKey, Policy, Principal, RequestFacts, balance_keys, decide
from spendgate.domain.enforcement.stages import StageLevel, crossed, stage_for
from spendgate.domain.errors import UnknownModelError
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.domain.usage import StoredUsage

Usage = StoredUsage
"""The parts of a stored usage event a replay needs (the usage store reads them as this type)."""


Outcome = str
"""``pass``, ``downgrade``, ``pause_cheapest``, ``pause_step_down``, ``refuse`` (budget pause), ``retry_refuse``
or ``refused_other`` (refused live for a reason no budget policy changes, e.g. a model with no price)."""
_SERVED = frozenset({"pass", "downgrade", "pause_cheapest", "pause_step_down"})


def actual_outcome(u: Usage) -> Outcome:
    """What the live policy did with the request, as recorded on its event."""
    if u.status == "refused":
        if u.stage == "pause":
            return "refuse"
        return "retry_refuse" if u.retry else "refused_other"
    if u.route_reason == "downgrade":
        return "downgrade"
    return u.route_reason if u.route_reason in ("pause_cheapest", "pause_step_down") else "pass"


@dataclass(frozen=True, slots=True)
class AlertHit:
    scope: str
    period: str
    period_start: date
    threshold_pct: int
    stage: str
    at: datetime
    spent_micros: int
    budget_micros: int


@dataclass(slots=True)
class Pause:
    session_id: str
    developer: str
    scope: str
    paused_at: datetime
    turns_before: int
    requests_before: int
    refused_requests: int = 0
    remaining_turns: set[str] = field(default_factory=set)
    remaining_cost_micros: int = 0
    """What the refused requests cost when they ran live: the spend the pause would have cut."""
    resumed_at: datetime | None = None


@dataclass(slots=True)
class ScopeTally:
    downgrades: int = 0
    downgrade_saved_micros: int = 0
    forced_cheapest: int = 0
    forced_cheapest_saved_micros: int = 0
    refused_requests: int = 0
    retry_refused: int = 0
    spend_micros: int = 0
    actual_micros: int = 0


@dataclass(slots=True)
class _Session:
    turns: set[str] = field(default_factory=set)
    requests: int = 0
    retry_streak: int = 0
    pause: Pause | None = None


class Replay:
    """Feed events in time order; read the tallies, alerts, pauses and differences afterwards."""

    def __init__(self, policy: Policy, prices: PriceTable, *, trace: bool = False) -> None:
        self.policy, self.prices = policy, prices
        self.spend: dict[BalanceKey, int] = defaultdict(int)
        self.crossed: dict[BalanceKey, StageLevel] = {}
        """Per balance, the most severe stage whose threshold crossing has been reported (alerted once)."""
        self.scopes: dict[str, ScopeTally] = {s: ScopeTally() for s in policy.budgets}
        self._per_model = {s for s, b in policy.budgets.items() if b.model is not None}
        self.alerts: list[AlertHit] = []
        self.pauses: list[Pause] = []
        self.events = self.spend_micros = self.actual_micros = self.differences = self.retry_refused = 0
        self.changed = 0
        """Requests served differently from live: another outcome, or the same outcome on another model (a
        routing rule's)."""
        self.trace: dict[str, Outcome] | None = {} if trace else None
        self._sessions: dict[str, _Session] = defaultdict(_Session)
        self._principals: dict[tuple[str, str, str, str], Principal] = {}
        self._who: dict[tuple[str, str, str, str], tuple[Principal, tuple[ScopeTally, ...]]] = {}
        self.explored_turns: set[str] = set()
        """Turns the proposal's exploration sends to the cheaper model (those whose requests it served)."""
        self.explore_requests = self.explore_saved_micros = 0

    def seed(self, key_id: str, developer: str, team: str, at: datetime, spent_micros: int, *,
             cost_center: str = "", model: str = "") -> None:
        """Spend from before the replayed window that still counts in its periods (e.g. earlier this month);
        thresholds it reached were alerted before the window. ``model``: the model that spent it (for the
        per-model budgets)."""
        principal = self._principal(key_id, developer, team, cost_center)
        self._add(self._keys(principal, at, model), spent_micros, at, alert=False)

    def feed(self, u: Usage) -> Outcome:
        self.events += 1
        who_key = (u.key_id, u.developer, u.team, u.cost_center)
        who = self._who.get(who_key)
        if who is None:
            who = self._who[who_key] = self._tallies_of(*who_key)
        principal, tallies = who
        session = self._sessions[u.session_id] if u.session_id else None
        outcome, scope, cost, saved, used = self._decide(u, principal, session)
        self.spend_micros += cost
        self.actual_micros += u.cost_micros
        if outcome == "retry_refuse":
            self.retry_refused += 1
        if outcome != actual_outcome(u):
            self.differences += 1
            self.changed += 1
        elif used != u.model_used:
            self.changed += 1
        if self.trace is not None:
            self.trace[u.event_id] = outcome
        for tally in tallies:
            tally.spend_micros += cost
            tally.actual_micros += u.cost_micros
        if self._per_model:  # per-model budgets: the spend of their model only, as the ledger folds it
            for s in self.policy.budget_scopes(principal.scopes(), used):
                if s in self._per_model:
                    self.scopes[s].spend_micros += cost
            for s in self.policy.budget_scopes(principal.scopes(), u.model_used):
                if s in self._per_model:
                    self.scopes[s].actual_micros += u.cost_micros
        if scope is not None:
            tally = self.scopes[scope]
            if outcome in ("downgrade", "pause_step_down"):  # a step down at the pause counts as a downgrade
                tally.downgrades += 1
                tally.downgrade_saved_micros += saved
            elif outcome == "pause_cheapest":
                tally.forced_cheapest += 1
                tally.forced_cheapest_saved_micros += saved
            elif outcome == "refuse":
                tally.refused_requests += 1
            elif outcome == "retry_refuse":
                tally.retry_refused += 1
        if session is not None:
            self._follow_session(u, session, outcome, scope)
        return outcome

    def _decide(self, u: Usage, principal: Principal,
                session: _Session | None) -> tuple[Outcome, str | None, int, int, str]:
        """The outcome, the deciding scope, the cost and saving under the proposal, and the model it serves."""
        if session is not None:
            session.retry_streak = session.retry_streak + 1 if u.retry else 0
            scopes = principal.scopes()
            if session.retry_streak and session.retry_streak >= max(self.policy.retry_cap_for(scopes), 1):
                self._add(self._keys(principal, u.occurred_at), 0, u.occurred_at)
                return "retry_refuse", self._retry_scope(scopes), 0, 0, u.model_requested
        if u.status == "refused" and not u.retry and u.stage != "pause":
            self._add(self._keys(principal, u.occurred_at), 0, u.occurred_at)
            return "refused_other", None, 0, 0, u.model_requested
        facts = RequestFacts(principal, u.model_requested, u.input_tokens, u.session_id, u.turn_id)
        decision = decide(facts, self.policy, self._spent, u.occurred_at)
        scope = decision.decided_by.scope if decision.decided_by is not None else None
        if decision.action == "refuse" or u.status == "refused":
            # No spend, but the ledger folds the refused event too: a balance past a threshold only
            # because its budget shrank (a raise expired) gets that crossing now.
            self._add(decision.keys, 0, u.occurred_at)
            if decision.action == "refuse":
                return "refuse", scope, 0, 0, u.model_requested
            # refused live, passes now: its tokens were never known
            return decision.action, scope, 0, 0, decision.model_used
        cost = self._cost(u, decision.model_used)
        saved = self._cost(u, u.model_requested) - cost if decision.action != "pass" else 0
        if decision.experiment_arm == "explore" and decision.model_used != u.model_requested:
            self.explore_requests += 1
            self.explore_saved_micros += self._cost(u, u.model_requested) - cost
            if u.turn_id is not None:
                self.explored_turns.add(u.turn_id)
        self._add(decision.keys, cost, u.occurred_at)
        return decision.action, scope, cost, saved, decision.model_used

    def _spent(self, key: BalanceKey) -> int:
        return self.spend.get(key, 0)

    def _keys(self, principal: Principal, at: datetime, model: str = "") -> tuple[BalanceKey, ...]:
        return tuple(key for key, _ in balance_keys(principal, self.policy, at, model))

    def _add(self, keys: tuple[BalanceKey, ...], cost: int, at: datetime, *, alert: bool = True) -> None:
        """Add ``cost`` to the balances; a balance past a threshold not reported yet alerts it (once per
        balance and threshold, as the ledger's crossings outbox keeps them), whether the spend or a
        shrunk budget (an expired raise) put it there."""
        spend, policy, crossed_ = self.spend, self.policy, self.crossed
        for key in keys:
            after = spend[key] = spend[key] + cost
            budget = policy.budgets[key.scope]
            limit = policy.effective_micros(budget, key.period, at)
            assert limit is not None  # decide() only returns keys of periods with a budget
            now = stage_for(after, limit, budget.thresholds)
            was = crossed_.get(key, StageLevel.OK)
            if now > was:
                crossed_[key] = now
                if alert:
                    self.alerts.extend(AlertHit(key.scope, key.period.value, key.period_start, pct, stage.label, at,
                                                after, limit) for pct, stage in crossed(was, now, budget.thresholds))

    def _cost(self, u: Usage, model: str) -> int:
        if model == u.model_used:
            return u.cost_micros
        try:
            price = self.prices.lookup(model).price
        except UnknownModelError:
            return u.cost_micros
        return cost_micros(price, input_tokens=u.input_tokens, cached_tokens=u.cached_tokens,
                           output_tokens=u.output_tokens, cache_write_5m_tokens=u.cache_write_5m_tokens,
                           cache_write_1h_tokens=u.cache_write_1h_tokens)

    def _follow_session(self, u: Usage, s: _Session, outcome: Outcome, scope: str | None) -> None:
        assert u.session_id is not None
        refused = outcome == "refuse"
        if refused and s.pause is None:
            s.pause = Pause(u.session_id, u.developer, scope or "org", u.occurred_at, len(s.turns), s.requests)
            self.pauses.append(s.pause)
        if refused and s.pause is not None:
            s.pause.refused_requests += 1
            s.pause.remaining_cost_micros += u.cost_micros
            if u.turn_id is not None and u.turn_id not in s.turns:
                s.pause.remaining_turns.add(u.turn_id)
        elif outcome in _SERVED:
            if s.pause is not None and s.pause.resumed_at is None:
                s.pause.resumed_at = u.occurred_at
                s.pause = None
            s.requests += 1
            if u.turn_id is not None:
                s.turns.add(u.turn_id)

    def _principal(self, key_id: str, developer: str, team: str, cost_center: str = "") -> Principal:
        p = self._principals.get((key_id, developer, team, cost_center))
        if p is None:
            p = self._principals[(key_id, developer, team, cost_center)] = Principal(key_id, developer, team,
                                                                                     cost_center or None)
        return p

    def _tallies_of(self, key_id: str, developer: str, team: str,
                    cost_center: str = "") -> tuple[Principal, tuple[ScopeTally, ...]]:
        principal = self._principal(key_id, developer, team, cost_center)
        return principal, tuple(self.scopes[s] for s in principal.scopes() if s in self.scopes)

    def _retry_scope(self, scopes: tuple[str, ...]) -> str | None:
        capped = [(b.retry_cap, s) for s in scopes if (b := self.policy.budgets.get(s)) and b.retry_cap is not None]
        return min(capped)[1] if capped else None
