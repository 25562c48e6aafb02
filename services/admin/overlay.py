"""Checking many candidate policies against the live one over every event of the window, at about the cost of
one replay (``policy suggest``'s dry-run check; ``docs/policy.md``, "How a candidate is checked").

The live policy is replayed over every event (:class:`Traced`, a :class:`~.replay.Replay` that remembers what
it did with the last event). Each candidate is an :class:`Overlay` that follows it event by event and keeps
only where its balances differ from the live replay's (``delta``). An event gets the candidate's own decision
(the proxy's ``decide``, through the overlay's balances) when the candidate can treat it differently:

- the event falls in a scope the candidate changes (its team's budget, routing rule or retry cap; for a
  retry cap alone, only its retry requests; for a routing rule, only the requests the rule routes; for a
  change of budget amounts or thresholds alone, only when one of the event's balances is in another stage
  under the candidate than under the live policy: the decision reads a balance only through its stage);
- for a larger downgrade size limit: the live decision was at the downgrade stage and the event's input is
  between the old and the new limit (the only requests the limit decides);
- one of the event's balances is in another stage under the candidate than under the live policy (a budget
  shared with the changed team, the org's or a cost center's, that the candidate's saving moved across a
  threshold: other teams' requests then decide differently too);
- the live policy has per-model budgets (their balances depend on the model a decision picks): every event.

Every other event is decided exactly as the live replay decided it (same stages, same policy for its scopes,
same retry streak): the candidate takes the live outcome and cost without deciding. Totals are the live
replay's plus the candidate's differences, so "no more paused sessions than today" counts every team's
sessions. An overlay keeps no alerts and no per-scope tallies (``policy dry-run`` gives those).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from spendgate.admin.replay import Outcome, Replay, Usage, _Session, actual_outcome
from spendgate.domain.enforcement import BalanceKey, Policy, Principal
from spendgate.domain.enforcement.routing import RoutingRule
from spendgate.domain.enforcement.stages import StageLevel, stage_for
from spendgate.domain.periods import PeriodKind
from spendgate.domain.pricing import PriceTable

_STEP_DOWN = frozenset({"downgrade", "pause_step_down"})


@dataclass(slots=True)
class Totals:
    """What ``policy suggest`` compares between the live policy and a candidate (names as on ``DryRun``)."""

    events: int = 0
    spend_micros: int = 0
    paused_sessions: int = 0
    differences: int = 0
    downgrades: int = 0
    forced_cheapest: int = 0
    retry_refused: int = 0

    def plus(self, diff: Totals) -> Totals:
        """These (the live replay's) totals with a candidate's differences added; the events are the same."""
        return Totals(events=self.events, spend_micros=self.spend_micros + diff.spend_micros,
                      paused_sessions=self.paused_sessions + diff.paused_sessions,
                      differences=self.differences + diff.differences, downgrades=self.downgrades + diff.downgrades,
                      forced_cheapest=self.forced_cheapest + diff.forced_cheapest,
                      retry_refused=self.retry_refused + diff.retry_refused)


class Traced(Replay):
    """The live policy's replay, remembering the last event's decision for the overlays that follow it."""

    def __init__(self, policy: Policy, prices: PriceTable) -> None:
        super().__init__(policy, prices)
        self.last: tuple[Outcome, str | None, int, int, str] = ("pass", None, 0, 0, "")
        self.last_keys: tuple[BalanceKey, ...] = ()
        self.last_cost = 0
        self.last_principal: Principal | None = None
        self.last_was_paused = self.last_paused = False

    def _decide(self, u: Usage, principal: Principal,
                session: _Session | None) -> tuple[Outcome, str | None, int, int, str]:
        self.last_principal = principal
        self.last_was_paused = self.last_paused = False
        self.last = super()._decide(u, principal, session)
        return self.last

    def _add(self, keys: tuple[BalanceKey, ...], cost: int, at: datetime, *, alert: bool = True) -> None:
        """The balances only: the totals count no alerts, so the threshold crossings are not followed."""
        self.last_keys, self.last_cost = keys, cost
        spend = self.spend
        for key in keys:
            spend[key] += cost

    def _follow_session(self, u: Usage, s: _Session, outcome: Outcome, scope: str | None) -> None:
        self.last_was_paused = s.pause is not None
        pauses = len(self.pauses)
        super()._follow_session(u, s, outcome, scope)
        self.last_paused = len(self.pauses) > pauses

    def before(self, key: BalanceKey) -> int:
        """The live balance before the last event was added."""
        spent = self.spend.get(key, 0)
        return spent - self.last_cost if key in self.last_keys else spent

    def level(self, at: datetime) -> StageLevel:
        """The stage the last event was decided at (its balances before it)."""
        out = StageLevel.OK
        for key in self.last_keys:
            budget = self.policy.budgets[key.scope]
            limit = self.policy.effective_micros(budget, key.period, at)
            if limit is not None:
                out = max(out, stage_for(self.before(key), limit, budget.thresholds))
        return out

    def totals(self) -> Totals:
        tallies = self.scopes.values()
        return Totals(events=self.events, spend_micros=self.spend_micros, paused_sessions=len(self.pauses),
                      differences=self.differences, downgrades=sum(t.downgrades for t in tallies),
                      forced_cheapest=sum(t.forced_cheapest for t in tallies), retry_refused=self.retry_refused)


@dataclass(frozen=True, slots=True)
class Change:
    """Where a candidate differs from the live policy."""

    scopes: frozenset[str] = frozenset()
    """Scopes whose budget, routing rule or retry cap it changes: their events are decided by the candidate."""
    size_window: tuple[int, int] | None = None
    """A new downgrade size limit: (old, new)."""
    retry_only: bool = False
    """Only the retry cap changes: in ``scopes``, only retry requests can be decided differently (a request
    that is no retry resets the streak and is never retry-refused); the rest follow through the stage check."""
    rule: RoutingRule | None = None
    """A routing rule added: in ``scopes``, only the requests it routes are decided differently; the rest
    follow through the stage check (the routed requests' saving moves the team's balances)."""


@dataclass(slots=True)
class _Diff(Totals):
    """A candidate's totals less the live replay's (``events`` unused), and what it takes to follow them."""

    decided: int = 0
    """Events the candidate decided itself (the rest took the live decision)."""
    sessions: dict[str, bool] = field(default_factory=dict)
    """Sessions whose pause state may differ from the live replay's: paused or not, under the candidate."""


class Overlay(Replay):
    """A candidate policy replayed as its differences from :class:`Traced` (fed after it, event by event)."""

    def __init__(self, policy: Policy, prices: PriceTable, base: Traced, change: Change, near: dict[BalanceKey, int],
                 watch: dict[str, list[Overlay]], *, every_event: bool = False) -> None:
        super().__init__(policy, prices)
        self.base, self.change, self.near, self.watch = base, change, near, watch
        self.every_event = every_event or bool(base._per_model or self._per_model)
        self.stages_only = _stages_only(base.policy, policy, change)
        """The candidate changes only the amounts or thresholds of its scopes' budgets (same periods)."""
        self.delta: dict[BalanceKey, int] = {}
        """Balances where the candidate's spend differs from the live replay's: candidate minus live."""
        self.diff = _Diff()

    # -- the balances: the live replay's plus the delta ------------------------------------------------------

    def _spent(self, key: BalanceKey) -> int:
        return self.base.before(key) + self.delta.get(key, 0)

    def _add(self, keys: tuple[BalanceKey, ...], cost: int, at: datetime, *, alert: bool = True) -> None:
        self._shift(keys, cost)

    def _shift(self, keys: Iterable[BalanceKey], amount: int) -> None:
        if not amount:
            return
        delta, near = self.delta, self.near
        for key in keys:
            d = delta.get(key, 0) + amount
            if d:
                delta[key] = d
                if abs(d) > near.get(key, 0):
                    near[key] = abs(d)
            else:
                delta.pop(key, None)

    def seed(self, key_id: str, developer: str, team: str, at: datetime, spent_micros: int, *,
             cost_center: str = "", model: str = "") -> None:
        """Earlier spend: the live replay is seeded with it too, so only a difference in keys counts."""
        principal = self._principal(key_id, developer, team, cost_center)
        if not self.every_event and self.change.scopes.isdisjoint(principal.scopes()):
            return  # the same budgets as the live policy's: the same keys
        mine, theirs = self._keys(principal, at, model), self.base._keys(principal, at, model)
        if mine != theirs:
            self._shift(mine, spent_micros)
            self._shift(theirs, -spent_micros)

    # -- following the live replay ------------------------------------------------------------------------------

    def _diverges(self, at: datetime, scopes: frozenset[str] = frozenset()) -> bool:
        """One of the last event's balances is in another stage under the candidate than under the live policy
        (checked where the balances differ, and in ``scopes``, whose budgets differ)."""
        base = self.base
        for key in base.last_keys:
            d = self.delta.get(key, 0)
            if not d and key.scope not in scopes:
                continue
            before = base.before(key)
            mine, theirs = self.policy.budgets[key.scope], base.policy.budgets[key.scope]
            limit = self.policy.effective_micros(mine, key.period, at)
            live_limit = base.policy.effective_micros(theirs, key.period, at)
            if limit is None or live_limit is None:
                return True
            if stage_for(before + d, limit, mine.thresholds) != stage_for(before, live_limit, theirs.thresholds):
                return True
        return False

    def routes(self, u: Usage, principal: Principal) -> bool:
        """The candidate's new routing rule is the one that routes this request."""
        policy = self.policy
        return policy.routing.match(principal, u.model_requested, u.input_tokens, u.occurred_at,
                                    policy.chain_of) == self.change.rule

    def treats(self, u: Usage, principal: Principal) -> bool:
        """The event is one the change itself may decide differently (before any stage moves)."""
        return (not self.change.scopes.isdisjoint(principal.scopes()) and (u.retry or not self.change.retry_only)
                and (self.change.rule is None or self.routes(u, principal)))

    def _must_decide(self, u: Usage, principal: Principal, suspect: bool, treated: bool | None) -> bool:
        if self.every_event:
            return True
        if self.treats(u, principal) if treated is None else treated:
            return not self.stages_only or self._diverges(u.occurred_at, self.change.scopes)
        window = self.change.size_window
        if window is not None and window[0] <= u.input_tokens < window[1] \
                and self.base.level(u.occurred_at) is StageLevel.DOWNGRADE:
            return True
        return suspect and self._diverges(u.occurred_at)

    def follow(self, u: Usage, suspect: bool, treated: bool | None = None) -> None:
        """After the live replay was fed ``u``: decide it here too if it can differ, and count the difference.
        ``treated``: whether :meth:`treats` the event, when the caller already knows."""
        base = self.base
        principal = base.last_principal
        assert principal is not None
        live_outcome, live_scope, live_cost, _, _ = base.last
        sid = u.session_id
        if not self._must_decide(u, principal, suspect, treated):
            if sid is not None and sid in self.diff.sessions:
                self._follow_pause(sid, live_outcome)
            return
        streak = base._sessions[sid].retry_streak if sid else 0
        session = _Session(retry_streak=streak - 1 if u.retry else 0) if sid else None
        outcome, scope, cost, _, _ = self._decide(u, principal, session)
        self._shift(base.last_keys, -base.last_cost)
        d = self.diff
        d.decided += 1
        d.spend_micros += cost - live_cost
        actual = actual_outcome(u)
        d.differences += (outcome != actual) - (live_outcome != actual)
        d.downgrades += (scope is not None and outcome in _STEP_DOWN) - (live_scope is not None
                                                                           and live_outcome in _STEP_DOWN)
        d.forced_cheapest += (scope is not None and outcome == "pause_cheapest") - (live_scope is not None
                                                                            and live_outcome == "pause_cheapest")
        d.retry_refused += (outcome == "retry_refuse") - (live_outcome == "retry_refuse")
        if sid is not None:
            self._follow_pause(sid, outcome)

    def _follow_pause(self, sid: str, outcome: Outcome) -> None:
        """The session's pause state under the candidate (as :meth:`Replay._follow_session` keeps it); a pause
        the candidate starts where the live replay did not, or the reverse, is the difference."""
        base, d = self.base, self.diff
        paused = d.sessions.get(sid)
        if paused is None:
            paused = base.last_was_paused
            self.watch.setdefault(sid, []).append(self)
        started = outcome == "refuse" and not paused
        if outcome == "refuse":
            paused = True
        elif outcome in ("pass", "downgrade", "pause_cheapest", "pause_step_down"):
            paused = False
        d.sessions[sid] = paused
        d.paused_sessions += started - base.last_paused

    def totals(self, live: Totals) -> Totals:
        return live.plus(self.diff)


def _stages_only(live: Policy, policy: Policy, change: Change) -> bool:
    """``policy`` differs from ``live`` only in the amounts and thresholds of ``change.scopes``' budgets, each
    with the same periods: the same balances, the same at-pause action and retry cap. Then its decision on an
    event is the live one unless one of the event's balances is in another stage (the decision reads a balance
    only through its stage: ``decision._decide``), so it decides only those (:meth:`Overlay._must_decide`)."""
    if change.rule is not None or change.retry_only or change.size_window is not None or not change.scopes:
        return False
    for scope in change.scopes:
        mine, theirs = policy.budgets.get(scope), live.budgets.get(scope)
        if mine is None or theirs is None or any(
                (mine.limit_micros(k) is None) != (theirs.limit_micros(k) is None) for k in PeriodKind):
            return False
        if replace(mine, thresholds=theirs.thresholds, daily_micros=theirs.daily_micros,
                   weekly_micros=theirs.weekly_micros, monthly_micros=theirs.monthly_micros) != theirs:
            return False
    return replace(policy, budgets={**policy.budgets, **{s: live.budgets[s] for s in change.scopes}}) == live


class Pass:
    """The live replay and its overlays over one stream of events: each event goes to the overlays that can
    treat it differently (:meth:`Overlay.follow`), found through indexes instead of asking every overlay."""

    def __init__(self, live: Policy, prices: PriceTable, candidates: Sequence[tuple[Policy, Change]]) -> None:
        self.base = Traced(live, prices)
        self.near: dict[BalanceKey, int] = {}
        """Per balance, the largest difference any overlay has had there."""
        self.watch: dict[str, list[Overlay]] = {}
        """Per session, the overlays whose pause state for it may differ from the live replay's."""
        self.overlays = [Overlay(p, prices, self.base, c, self.near, self.watch) for p, c in candidates]
        self.by_scope: dict[str, list[Overlay]] = {}
        for o in self.overlays:
            for scope in o.change.scopes:
                self.by_scope.setdefault(scope, []).append(o)
        self.windowed = [o for o in self.overlays if o.change.size_window is not None and not o.every_event]
        self.every = [o for o in self.overlays if o.every_event]

    def seed(self, key_id: str, developer: str, team: str, at: datetime, spent_micros: int, *,
             cost_center: str = "", model: str = "") -> None:
        for r in (self.base, *self.overlays):
            r.seed(key_id, developer, team, at, spent_micros, cost_center=cost_center, model=model)

    def feed(self, u: Usage) -> None:
        base = self.base
        base.feed(u)
        if self.near and self._suspect(u):
            for overlay in self.overlays:
                overlay.follow(u, True)
            return
        targets: dict[int, Overlay] = {}
        treated: dict[int, bool] = {}
        principal = base.last_principal
        assert principal is not None
        by_scope = self.by_scope
        for scope in principal.scopes():
            for o in by_scope.get(scope, ()):
                if (u.retry or not o.change.retry_only) and (o.change.rule is None or o.routes(u, principal)):
                    targets[id(o)] = o
                    treated[id(o)] = True
        for o in self.windowed:
            window = o.change.size_window
            assert window is not None
            if window[0] <= u.input_tokens < window[1]:
                targets[id(o)] = o
        for o in self.every:
            targets[id(o)] = o
        if u.session_id is not None:
            for o in self.watch.get(u.session_id, ()):
                targets[id(o)] = o
        for key, o in targets.items():
            o.follow(u, False, treated.get(key, False))

    def _suspect(self, u: Usage) -> bool:
        """One of the event's balances is within some overlay's largest difference of a threshold: it may
        diverge (each overlay then checks its own difference)."""
        base, near = self.base, self.near
        for key in base.last_keys:
            m = near.get(key)
            if m:
                budget = base.policy.budgets[key.scope]
                limit = base.policy.effective_micros(budget, key.period, u.occurred_at)
                before = base.before(key)
                if limit is None or (stage_for(max(before - m, 0), limit, budget.thresholds)
                                     != stage_for(before + m, limit, budget.thresholds)):
                    return True
        return False

    def totals(self) -> tuple[Totals, list[Totals]]:
        live = self.base.totals()
        return live, [o.totals(live) for o in self.overlays]
