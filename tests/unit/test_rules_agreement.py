"""Agreement of the budget rules: proxy enforcement, the ledger fold and the dry-run replay, over
thousands of generated budgets, raises, time zones and spend sequences.

One generated world runs three ways, all pure and in memory:

- live: every request goes through the proxy's ``Enforcer.admit`` (retry detector, decision,
  reservation) against an in-memory balance view: the ledger's settled balances plus the book's
  pending spend, as ``BalanceView`` serves them; its usage event is then built as the proxy would
  (refused at zero cost, downgraded, forced to the cheapest model, or passed);
- the ledger: the events are folded in random batches by ``fold`` and ``batch_crossings``, the
  consumer's pure steps, and the crossings go through an outbox that keeps the first row per
  (scope, period, period start, threshold), as ``threshold_crossings`` does;
- the dry-run: the same events replayed through ``Replay`` under the same policy.

Asserted: the replay repeats every live outcome; the ledger's crossings and the replay's alerts are
the same set with the same stage, instant, spend and budget; and after every request the stage the
decision reports for each of its balances is the most severe stage crossed so far in that balance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from spendgate.admin.replay import Replay, Usage
from spendgate.domain.enforcement import (
    BalanceKey,
    Budget,
    BudgetRaise,
    Decision,
    Enforcer,
    Policy,
    Principal,
    RequestFacts,
    ReservationBook,
    RetryDetector,
    StageLevel,
    Thresholds,
    TokenEstimate,
    decide,
    standings,
)
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import PriceTable
from spendgate.ledger.fold import Crossing, batch_crossings, fold
from tests.support.factories import usage_event

TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Asia/Kolkata")
STARTS = (
    datetime(2026, 1, 31, 20, tzinfo=UTC),  # month end
    datetime(2026, 2, 28, 18, tzinfo=UTC),  # short month end
    datetime(2026, 3, 28, 21, tzinfo=UTC),  # Europe/Berlin springs forward, 29 March
    datetime(2026, 4, 4, 22, tzinfo=UTC),  # America/Santiago falls back at midnight, 5 April
    datetime(2026, 9, 5, 23, tzinfo=UTC),  # America/Santiago springs forward at midnight, 6 September
    datetime(2026, 10, 31, 23, tzinfo=UTC),  # month end; New York falls back 1 November
    datetime(2026, 12, 31, 12, tzinfo=UTC),  # year end
)
PRICES = PriceTable()
MODELS = ("gpt-5.1", "gpt-5.1-mini", "gpt-4.1-nano")


@dataclass(frozen=True)
class Request:
    developer: int
    gap_s: int
    cost_micros: int
    est_input_tokens: int
    model: str
    batch_ends: bool
    """The ledger folds the batch up to and including this request."""


@dataclass(frozen=True)
class World:
    principals: tuple[Principal, ...]
    policy: Policy
    start: datetime
    requests: tuple[Request, ...]

    def describe(self) -> str:
        return "\n".join([f"start {self.start}", *map(repr, self.principals), *map(repr, self.policy.budgets.values()),
                          *map(repr, self.policy.raises), *map(repr, self.requests)])


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    """Three rising percentages, often the default, sometimes equal (a hard cap)."""
    a = draw(st.integers(1, 120))
    b = draw(st.sampled_from([a, a, *range(a, a + 40, 7)]))
    c = draw(st.sampled_from([b, b, *range(b, b + 40, 9)]))
    return Thresholds(a, b, c)


THRESHOLDS = st.one_of(st.just(Thresholds()), thresholds())
PERIODS = st.sampled_from([(True, False), (False, True), (True, True)])
REQUESTS = st.lists(
    st.builds(
        Request,
        developer=st.integers(0, 2),
        gap_s=st.one_of(st.integers(1, 600), st.integers(600, 30 * 3600)),
        cost_micros=st.one_of(st.just(0), st.integers(1, 30_000)),
        est_input_tokens=st.sampled_from([500, 9_999, 10_000, 40_000]),
        model=st.sampled_from(MODELS),
        batch_ends=st.booleans(),
    ),
    min_size=1, max_size=40,
)


@st.composite
def budget(draw: st.DrawFn, scope: str) -> Budget:
    daily, monthly = draw(PERIODS)
    return Budget(
        scope,
        daily_micros=draw(st.integers(1_000, 60_000)) if daily else None,
        monthly_micros=draw(st.integers(5_000, 200_000)) if monthly else None,
        timezone=draw(st.sampled_from(TIMEZONES)),
        thresholds=draw(THRESHOLDS),
        at_pause=draw(st.sampled_from(["refuse", "cheapest"])),
    )


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """1-3 developers in 1-2 teams; budgets on some of their scopes; 0-3 raises ending inside or
    outside the window; 1-40 requests spread over minutes to days from a month end or DST change."""
    teams = [f"team{t}" for t in range(draw(st.integers(1, 2)))]
    principals = tuple(Principal(f"k{i}", f"dev{i}", draw(st.sampled_from(teams)))
                       for i in range(draw(st.integers(1, 3))))
    scopes = sorted({s for p in principals for s in p.scopes()})
    budgeted = draw(st.lists(st.sampled_from(scopes), min_size=1, max_size=len(scopes), unique=True))
    budgets = [draw(budget(s)) for s in budgeted]
    start = draw(st.sampled_from(STARTS))
    raises = [
        BudgetRaise(draw(st.sampled_from(budgeted)), draw(st.integers(1_000, 50_000)),
                    start + timedelta(minutes=draw(st.integers(-24 * 60, 5 * 24 * 60))), "generated")
        for _ in range(draw(st.integers(0, 3)))
    ]
    requests = tuple(replace(r, developer=r.developer % len(principals)) for r in draw(REQUESTS))
    return World(principals, Policy.from_settings(EnforcementSettings(), budgets, raises), start, requests)


class MemoryView:
    """``BalanceView`` without the database: the ledger's settled balances plus this proxy's book."""

    def __init__(self, policy: Policy, settled: dict[BalanceKey, int]) -> None:
        self.policy, self.settled, self.book = policy, settled, ReservationBook(900, clock=lambda: 0.0)
        self.now = datetime.now(UTC)

    def spent_micros(self, key: BalanceKey) -> int:
        return self.settled.get(key, 0) + self.book.pending_micros(key)

    def decide(self, facts: RequestFacts) -> Decision:
        return decide(facts, self.policy, self.spent_micros, self.now)

    def retry_cap(self, principal: Principal) -> int:
        return self.policy.retry_cap_for(principal.scopes())


class Ledger:
    """The consumer's pure steps over batches, and the crossings outbox (first row per threshold wins)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.settled: dict[BalanceKey, int] = {}
        self.outbox: dict[tuple[BalanceKey, int], Crossing] = {}

    def fold_batch(self, events: list[UsageRecorded]) -> None:
        budgets = self.policy.budgets
        result = fold(sorted(events, key=lambda e: (e.occurred_at, e.event_id)),
                      lambda s: budgets[s].timezone if s in budgets else "UTC")
        before = {key: self.settled.get(key, 0) for key in result.balances}
        for key, delta in result.balances.items():
            self.settled[key] = before[key] + delta.spent_micros
        for c in batch_crossings(result, before, budgets, raises=self.policy.raises):
            self.outbox.setdefault((c.key, c.threshold_pct), c)


def live_event(n: int, at: datetime, p: Principal, r: Request, decision: Decision, refused: bool) -> UsageRecorded:
    common = dict(event_id=f"{n:08d}-0000-7000-8000-000000000000", occurred_at=at, key_id=p.key_id,
                  developer=p.developer, team=p.team, session_id=None, turn_id=None, model_requested=r.model,
                  model_used=decision.model_used, route_reason=decision.route_reason, stage=decision.stage.label,
                  input_tokens=r.est_input_tokens, cached_tokens=0, output_tokens=100, reasoning_tokens=0)
    if refused:
        return usage_event(**common, status="refused", http_status=429, refusal_reason="budget_pause",
                           cost_micros=0, usage_source="none")
    return usage_event(**common, cost_micros=r.cost_micros)


def as_usage(e: UsageRecorded) -> Usage:
    return Usage(e.event_id, e.occurred_at, e.key_id, e.developer, e.team, e.session_id, e.turn_id,
                 e.model_requested, e.model_used, e.route_reason, e.stage, e.status, e.input_tokens,
                 e.cached_tokens, e.output_tokens, e.cost_micros, e.retry)


def run(world: World) -> None:
    policy = world.policy
    ledger = Ledger(policy)
    view = MemoryView(policy, ledger.settled)
    enforcer = Enforcer(view, prices=PRICES, detector=RetryDetector(), clock=lambda: view.now)
    events: list[UsageRecorded] = []
    live: dict[str, str] = {}
    after: list[tuple[str, dict[BalanceKey, StageLevel]]] = []  # per request: its balances' stages after it
    batch: list[UsageRecorded] = []
    at = world.start
    for n, r in enumerate(world.requests):
        at += timedelta(seconds=r.gap_s)
        view.now = at
        p = world.principals[r.developer]
        adm = enforcer.admit(p, r.model, session_id=None, raw=b'{"n": %d}' % n,
                             estimate=TokenEstimate(r.est_input_tokens, 1_024))
        assert not adm.retry.retry
        event = live_event(n, at, p, r, adm.decision, adm.refusal is not None)
        if adm.refusal is None:
            enforcer.complete(adm, event_id=event.event_id, cost_micros=event.cost_micros)
        events.append(event)
        batch.append(event)
        live[event.event_id] = adm.decision.action
        after.append((event.event_id, {s.key: s.stage for s in standings(p, policy, view.spent_micros, at)}))
        if r.batch_ends:
            ledger.fold_batch(batch)
            view.book.folded(e.event_id for e in batch)
            batch = []
    ledger.fold_batch(batch)

    replay = Replay(policy, PRICES, trace=True)
    for e in events:
        replay.feed(as_usage(e))
    assert replay.trace == live, "the dry-run of the live policy repeats every live decision"
    assert replay.differences == 0

    crossings = {(k.scope, k.period.value, k.period_start, pct): (c.stage, c.trigger.occurred_at, c.spent_micros,
                                                                    c.budget_micros)
                 for (k, pct), c in ledger.outbox.items()}
    alerts = {(a.scope, a.period, a.period_start, a.threshold_pct): (a.stage, a.at, a.spent_micros, a.budget_micros)
              for a in replay.alerts}
    assert len(alerts) == len(replay.alerts), "the replay alerts once per balance and threshold"
    assert crossings == alerts, "the ledger's crossings are the dry-run's alerts"

    crossed: dict[BalanceKey, StageLevel] = {}
    by_trigger: dict[str, list[Crossing]] = {}
    for c in ledger.outbox.values():
        by_trigger.setdefault(c.trigger.event_id, []).append(c)
    for event_id, stages in after:
        for c in by_trigger.get(event_id, []):
            crossed[c.key] = max(crossed.get(c.key, StageLevel.OK), StageLevel[c.stage.upper()])
        for key, stage in stages.items():
            assert crossed.get(key, StageLevel.OK) == stage, (
                f"after {event_id} the decision puts {key} at {stage.label}, the ledger's crossings at "
                f"{crossed.get(key, StageLevel.OK).label}")


@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_enforcement_fold_and_replay_agree_on_every_crossing_and_stage(world: World) -> None:
    """Random budgets, raises, time zones and spend: the proxy's stages, the ledger's crossings and the
    dry-run's alerts agree on every threshold and every stage change."""
    note(world.describe())
    run(world)
