"""The pure fold: usage events in, balance and session increments and threshold crossings out.

No I/O. The consumer gives it only events that were newly inserted (idempotency lives in the
store); ``spendgate ledger rebuild`` gives it every stored event. Both paths share this code, so the
incremental and rebuilt balances cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, effective_budget_micros
from spendgate.domain.enforcement.scopes import Principal, model_scope
from spendgate.domain.enforcement.stages import StageLevel, crossed, stage_for
from spendgate.domain.events import Stage, UsageRecorded
from spendgate.domain.periods import PeriodKind, local_date, period_of, period_start_date


def scopes_of(event: UsageRecorded) -> tuple[str, ...]:
    """Every budget scope a request falls in (its key, developer, team, cost center, the org): the proxy's
    rule."""
    return _scopes(event.key_id, event.developer, event.team, event.cost_center or None)


@lru_cache(maxsize=16384)
def _scopes(key_id: str, developer: str, team: str, cost_center: str | None) -> tuple[str, ...]:
    # Made once per principal, not per event: a batch has far fewer principals than events.
    return Principal(key_id, developer, team, cost_center).scopes()


def model_scopes_of(event: UsageRecorded) -> tuple[str, ...]:
    """The per-model scopes the event's cost could count in: each of its scopes on the model that served
    it (``model_used``); a balance is kept for those with a budget only."""
    return _model_scopes(scopes_of(event), event.model_used)


@lru_cache(maxsize=16384)
def _model_scopes(scopes: tuple[str, ...], model: str) -> tuple[str, ...]:
    return tuple(model_scope(s, model) for s in scopes)


def batch_scopes(events: Iterable[UsageRecorded]) -> set[str]:
    """Every scope and per-model scope ``events`` could count in (whose budgets the fold needs)."""
    principals = {(scopes_of(e), e.model_used) for e in events}
    return {s for scopes, model in principals for s in (*scopes, *_model_scopes(scopes, model))}


def counts_as_request(event: UsageRecorded) -> bool:
    """Refused requests never reached the provider: they are recorded but not counted as traffic."""
    return event.status != "refused"


@dataclass(slots=True)
class BalanceDelta:
    spent_micros: int = 0
    requests: int = 0
    resets_at: datetime | None = None
    steps: list[tuple[int, UsageRecorded]] = field(default_factory=list)
    """Running increment after each event, in fold order: finds the event that crossed a threshold."""


SessionKey = tuple[str, str]
"""A session as the ledger keys it: (developer, session id). The id is a label the client sends; the
developer comes from the key, so another key holder naming the same id folds into a session of their own."""


@dataclass(slots=True)
class SessionDelta:
    developer: str
    session_id: str
    first: UsageRecorded
    first_at: datetime
    last_at: datetime
    repo: str | None
    requests: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    retries: int = 0
    retry_cost_micros: int = 0
    downgraded: int = 0
    turn_ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class FoldResult:
    balances: dict[BalanceKey, BalanceDelta] = field(default_factory=dict)
    sessions: dict[SessionKey, SessionDelta] = field(default_factory=dict)


def fold(events: Iterable[UsageRecorded], timezone_of: Callable[[str], str],
         per_model: Container[str] = (), weekly: Container[str] = (),
         budgeted: Container[str] | None = None) -> FoldResult:
    """Sum events into per-(scope, period) balance increments and per-(developer, session) aggregates.

    Every scope of an event gets a day and a month balance. ``per_model``: the per-model scopes that have
    a budget; an event's cost also counts in those of them it falls in (:func:`model_scopes_of`).
    ``weekly``: the scopes whose budget has a weekly amount, which get a week balance too. Both are
    counted afresh from the events when such a budget is set (:mod:`spendgate.ledger.changes`), so a
    balance kept only while a budget asks for it still holds the whole period.
    ``budgeted``: the scopes with a budget, when known; only their balances keep the per-event
    :attr:`BalanceDelta.steps` that :func:`crossings` reads (the others' would be made and dropped)."""
    result = FoldResult()
    balances = result.balances
    zones: dict[str, str] = {}
    deltas_of: dict[tuple[str, date], tuple[BalanceDelta, ...]] = {}
    for ev in events:
        local_days: dict[str, date] = {}  # most scopes share a timezone: convert once per event
        cost, counted = ev.cost_micros, counts_as_request(ev)
        scopes = scopes_of(ev)
        if per_model:
            scopes += tuple(s for s in model_scopes_of(ev) if s in per_model)
        for scope in scopes:
            stepped = budgeted is None or scope in budgeted
            tz = zones.get(scope)
            if tz is None:
                tz = zones[scope] = timezone_of(scope)
            day = local_days.get(tz)
            if day is None:
                day = local_days[tz] = local_date(ev.occurred_at, tz)
            deltas = deltas_of.get((scope, day))
            if deltas is None:  # a BalanceKey hashes its PeriodKind in Python: looked up once per scope and day
                deltas = deltas_of[(scope, day)] = tuple(
                    balances.setdefault(key, BalanceDelta(resets_at=ends_at))
                    for key, ends_at in _balance_keys(scope, day, tz, scope in weekly))
            for delta in deltas:
                delta.spent_micros += cost
                delta.requests += counted
                if stepped:
                    delta.steps.append((delta.spent_micros, ev))
        if ev.session_id:
            _fold_session(result.sessions, ev)
    return result


def fold_under(events: Iterable[UsageRecorded], budgets: Mapping[str, Budget], default_timezone: str) -> FoldResult:
    """:func:`fold` with what ``budgets`` (those of the events' scopes, by scope) says of each scope: its
    timezone (``default_timezone`` for a scope without a budget), its per-model and weekly balances, and
    which balances are budgeted."""
    return fold(events, lambda scope: budgets[scope].timezone if scope in budgets else default_timezone,
                per_model={s for s, b in budgets.items() if b.model is not None},
                weekly={s for s, b in budgets.items() if b.weekly_micros is not None}, budgeted=budgets)


FOLDED_PERIODS = (PeriodKind.DAY, PeriodKind.MONTH)
"""The periods every scope's spend is summed over (a scope with a weekly budget: the week too)."""
WITH_WEEK = (*FOLDED_PERIODS, PeriodKind.WEEK)


@lru_cache(maxsize=16384)
def _balance_keys(scope: str, day: date, tz: str, week: bool) -> tuple[tuple[BalanceKey, datetime], ...]:
    """The balances an event of ``scope`` on local ``day`` adds to, each with when its period ends: made
    once per scope and day, so the fold's loop over events only looks them up."""
    return tuple((BalanceKey(scope, kind, period.start), period.ends_at)
                 for kind in (WITH_WEEK if week else FOLDED_PERIODS)
                 for period in (period_of(kind, period_start_date(kind, day), tz),))


def _fold_session(sessions: dict[SessionKey, SessionDelta], ev: UsageRecorded) -> None:
    assert ev.session_id is not None
    s = sessions.get(key := (ev.developer, ev.session_id))
    if s is None:
        s = sessions[key] = SessionDelta(ev.developer, ev.session_id, ev, ev.occurred_at, ev.occurred_at, ev.repo)
    s.first_at = min(s.first_at, ev.occurred_at)
    s.last_at = max(s.last_at, ev.occurred_at)
    s.repo = s.repo or ev.repo
    s.requests += counts_as_request(ev)
    s.input_tokens += ev.input_tokens
    s.cached_tokens += ev.cached_tokens
    s.output_tokens += ev.output_tokens
    s.reasoning_tokens += ev.reasoning_tokens
    s.cost_micros += ev.cost_micros
    if ev.retry:
        s.retries += 1
        s.retry_cost_micros += ev.cost_micros
    s.downgraded += ev.route_reason != "requested"
    if ev.turn_id:
        s.turn_ids.add(ev.turn_id)


@dataclass(frozen=True, slots=True)
class Crossing:
    key: BalanceKey
    threshold_pct: int
    stage: Stage
    spent_micros: int
    budget_micros: int
    resets_at: datetime
    trigger: UsageRecorded


def crossings(
    key: BalanceKey, before_micros: int, delta: BalanceDelta, budget: Budget, *,
    recorded: StageLevel, raises: Sequence[BudgetRaise] = (),
) -> list[Crossing]:
    """Thresholds of ``budget`` the balance is at or past during this increment, beyond the stage
    ``recorded`` (whose thresholds are on record already), each with the first event that shows it.

    Each event is measured against the budget effective at its own time (``raises`` active then), as
    the proxy decided it; thresholds map to stages by position
    (:func:`~spendgate.domain.enforcement.stages.crossed`).
    """
    base = budget.limit_micros(key.period)
    if base is None or not delta.steps:
        return []
    assert delta.resets_at is not None
    own = [r for r in raises if r.scope == key.scope]
    thresholds = budget.thresholds
    level = recorded
    if not own and stage_for(before_micros + delta.spent_micros, base, thresholds) <= level:
        return []  # one budget for the whole increment, and spend only grows: nothing new at its end
    out: list[Crossing] = []
    for running, event in delta.steps:
        limit = effective_budget_micros(base, own, key.scope, event.occurred_at, as_of=True) if own else base
        spent = before_micros + running
        now = stage_for(spent, limit, thresholds)
        if now > level:
            out.extend(Crossing(key, pct, stage.label, spent, limit, delta.resets_at, event)
                       for pct, stage in crossed(level, now, thresholds))
            level = now
            if level is StageLevel.PAUSE:
                break
    return out


def batch_crossings(
    result: FoldResult, before: Mapping[BalanceKey, int], budgets: Mapping[str, Budget], *,
    raises: Sequence[BudgetRaise] = (),
) -> list[Crossing]:
    """The crossings of a folded batch: each budgeted balance's, from its total before the batch.

    What earlier batches recorded is not known here, so every threshold a balance is at or past is
    reported (from ``OK``): the outbox keeps one row per balance and threshold and drops the repeats.
    A threshold that a balance is past only because its budget shrank since its last event (a raise
    expired, the budget was lowered) is so still reported, at the next event, as the proxy already
    acts on it; deciding from the spend before the batch used to skip it for good.
    """
    found: list[Crossing] = []
    for key, delta in result.balances.items():
        budget = budgets.get(key.scope)
        if budget is not None:
            found.extend(crossings(key, before.get(key, 0), delta, budget, recorded=StageLevel.OK, raises=raises))
    return found
