"""More budget shapes, pure: ISO weeks, cost-center and per-model scopes, per-scope cascades, step_down."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from spendgate.domain.enforcement import (
    BalanceKey,
    Budget,
    Decision,
    Policy,
    Principal,
    RequestFacts,
    budget_of,
    decide,
    parse_scope,
    policy_from_document,
)
from spendgate.domain.enforcement.scopes import model_scope, scope_label, split_scope
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import PeriodKind, period_containing, period_of
from spendgate.ledger.fold import fold
from tests.support.factories import usage_event

USD = 1_000_000
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # a Thursday
ALICE = Principal("k1", "alice", "platform", "cc-eng")
FLAGSHIP = "org|model:gpt-5.1"


def policy(*budgets: Budget) -> Policy:
    return Policy.from_settings(EnforcementSettings(), budgets)


def month(scope: str) -> BalanceKey:
    return BalanceKey(scope, PeriodKind.MONTH, date(2026, 11, 1))


def run(p: Policy, spent: dict[BalanceKey, int], model: str = "gpt-5.1", tokens: int = 5_000,
        who: Principal = ALICE) -> Decision:
    return decide(RequestFacts(who, model, tokens), p, lambda k: spent.get(k, 0), NOW)


# -- ISO weeks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "tz", "monday"),
    [
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), "UTC", date(2026, 11, 23)),
        (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), "UTC", date(2026, 11, 23)),  # Monday 00:00 opens it
        (datetime(2026, 11, 22, 23, 59, tzinfo=UTC), "UTC", date(2026, 11, 16)),  # Sunday 23:59 closes the last
        # Sunday 23:30 UTC is already Monday in Tokyo and still Sunday afternoon in Los Angeles
        (datetime(2027, 1, 3, 23, 30, tzinfo=UTC), "Asia/Tokyo", date(2027, 1, 4)),
        (datetime(2027, 1, 3, 23, 30, tzinfo=UTC), "America/Los_Angeles", date(2026, 12, 28)),
        # Monday 05:00 UTC is still Sunday in Los Angeles: the previous week there
        (datetime(2026, 11, 23, 5, 0, tzinfo=UTC), "America/Los_Angeles", date(2026, 11, 16)),
        # New Year's Day 2027 is a Friday: its ISO week (2026-W53) began on Monday 28 December 2026
        (datetime(2027, 1, 1, 12, 0, tzinfo=UTC), "Europe/Berlin", date(2026, 12, 28)),
        (datetime(2025, 12, 31, 12, 0, tzinfo=UTC), "UTC", date(2025, 12, 29)),  # 2026-W01 starts in 2025
    ],
)
def test_a_week_starts_on_the_local_monday(instant: datetime, tz: str, monday: date) -> None:
    """The week containing an instant is the ISO week of its local date in the budget's time zone."""
    week = period_containing(PeriodKind.WEEK, instant, tz)
    assert week.start == monday
    assert week.start.isocalendar().weekday == 1
    assert week.starts_at <= instant < week.ends_at


def test_a_week_across_the_year_end_is_one_period() -> None:
    """2026-W53 runs from Monday 28 December 2026 to Monday 4 January 2027, local midnight to midnight."""
    week = period_of(PeriodKind.WEEK, date(2026, 12, 28), "Europe/Berlin")
    assert week.start.isocalendar()[:2] == (2026, 53)
    assert week.starts_at == datetime(2026, 12, 27, 23, 0, tzinfo=UTC)
    assert week.ends_at == datetime(2027, 1, 3, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "monday", "hours"),
    [("Europe/Berlin", date(2026, 10, 19), 169), ("America/New_York", date(2027, 3, 8), 167),
     ("Europe/Berlin", date(2026, 11, 23), 168)],
)
def test_a_week_with_a_clock_change_is_an_hour_longer_or_shorter(tz: str, monday: date, hours: int) -> None:
    """Local midnight to local midnight: the week of a DST change has 169 (autumn) or 167 (spring) hours."""
    week = period_of(PeriodKind.WEEK, monday, tz)
    assert week.ends_at - week.starts_at == timedelta(hours=hours)


def test_a_weekly_budget_decides_on_the_week_balance() -> None:
    """$95 of a $100 weekly budget spent this week downgrades, though the day and month have room."""
    p = policy(budget_of("team:platform", daily_micros=None, monthly_micros=1000 * USD, weekly_micros=100 * USD))
    week = BalanceKey("team:platform", PeriodKind.WEEK, date(2026, 11, 23))
    d = run(p, {week: 95 * USD, month("team:platform"): 95 * USD})
    assert (d.action, d.model_used) == ("downgrade", "gpt-5.1-mini")
    assert d.decided_by is not None and d.decided_by.key == week
    assert d.decided_by.resets_at == datetime(2026, 11, 30, tzinfo=UTC)


# -- cost centers ----------------------------------------------------------------------------------------


def test_a_cost_center_is_a_scope_between_team_and_org() -> None:
    """A key with a cost center falls in that cost center's scope; one without does not."""
    assert ALICE.scopes() == ("key:k1", "developer:alice", "team:platform", "cost_center:cc-eng", "org")
    assert Principal("k2", "bob", "data").scopes() == ("key:k2", "developer:bob", "team:data", "org")
    assert parse_scope(" cost_center:cc-eng ") == "cost_center:cc-eng"


def test_a_cost_center_budget_pauses_its_keys_only() -> None:
    """A paused cost center refuses its own keys' requests and passes another cost center's."""
    p = policy(budget_of("cost_center:cc-eng", daily_micros=None, monthly_micros=10 * USD))
    spent = {month("cost_center:cc-eng"): 11 * USD}
    refused = run(p, spent)
    assert refused.refused and refused.decided_by is not None
    assert refused.decided_by.scope == "cost_center:cc-eng"
    assert not run(p, spent, who=Principal("k2", "bob", "data", "cc-data")).refused


def test_the_fold_keeps_a_cost_center_balance() -> None:
    """The ledger folds an event into its key's cost center, as the proxy decides on it."""
    ev = usage_event(cost_center="cc-eng")
    result = fold([ev], lambda _s: "UTC")
    assert result.balances[BalanceKey("cost_center:cc-eng", PeriodKind.MONTH, date(2026, 11, 1))].spent_micros == (
        ev.cost_micros)


# -- per-model budgets -----------------------------------------------------------------------------------


def test_a_per_model_scope_is_written_and_read_back() -> None:
    """``org|model:gpt-5.1`` is the org on gpt-5.1; a bad model id is a clear error."""
    assert model_scope("org", "gpt-5.1") == FLAGSHIP == parse_scope("org|model:gpt-5.1")
    assert split_scope("team:platform|model:gpt-5.1") == ("team:platform", "gpt-5.1")
    assert split_scope("team:platform") == ("team:platform", None)
    assert scope_label(FLAGSHIP) == "the org on gpt-5.1"
    with pytest.raises(ConfigError, match="bad model"):
        parse_scope("org|model:gpt 5")
    with pytest.raises(ConfigError, match="bad model"):
        budget_of("org", daily_micros=USD, monthly_micros=None, model="x" * 200)
    with pytest.raises(ConfigError, match="once"):
        budget_of(FLAGSHIP, daily_micros=USD, monthly_micros=None, model="gpt-5.1")


def test_a_flagship_cap_downgrades_the_flagship_and_passes_the_mini() -> None:
    """At 95 % of a gpt-5.1-only budget, gpt-5.1 goes to gpt-5.1-mini (reserving outside the cap) and a
    gpt-5.1-mini request passes untouched."""
    p = policy(budget_of("org", model="gpt-5.1", daily_micros=None, monthly_micros=500 * USD))
    spent = {month(FLAGSHIP): 480 * USD}
    flagship = run(p, spent)
    assert (flagship.action, flagship.model_used) == ("downgrade", "gpt-5.1-mini")
    assert flagship.keys == ()  # the mini's spend lands in no budgeted balance
    mini = run(p, spent, model="gpt-5.1-mini")
    assert (mini.action, mini.model_used, mini.keys) == ("pass", "gpt-5.1-mini", ())


def test_a_paused_flagship_cap_refuses_the_flagship_only() -> None:
    """Past the pause line of a per-model budget, that model is refused and the others pass."""
    p = policy(budget_of("org", model="gpt-5.1", daily_micros=None, monthly_micros=500 * USD),
               budget_of("org", daily_micros=None, monthly_micros=5000 * USD))
    spent = {month(FLAGSHIP): 600 * USD, month("org"): 600 * USD}
    flagship = run(p, spent)
    assert flagship.refused and flagship.decided_by is not None and flagship.decided_by.scope == FLAGSHIP
    mini = run(p, spent, model="gpt-5.1-mini")
    assert (mini.action, mini.keys) == ("pass", (month("org"),))


def test_the_fold_counts_a_model_only_in_its_own_per_model_balance() -> None:
    """A per-model balance holds the spend of the model that served the request, and only when budgeted."""
    flagship, mini = usage_event(), usage_event(model_requested="gpt-5.1-mini", model_used="gpt-5.1-mini")
    result = fold([flagship, mini], lambda _s: "UTC", per_model={FLAGSHIP})
    assert result.balances[month(FLAGSHIP)].spent_micros == flagship.cost_micros
    assert month("org|model:gpt-5.1-mini") not in result.balances
    assert result.balances[month("org")].spent_micros == flagship.cost_micros + mini.cost_micros
    assert not any("|model:" in k.scope for k in fold([flagship], lambda _s: "UTC").balances)


def test_the_fold_keeps_a_week_balance_for_weekly_budgets_only() -> None:
    """A scope with a weekly amount gets a week balance (from the local Monday); the others do not."""
    result = fold([usage_event()], lambda _s: "UTC", weekly={"team:platform"})
    weeks = {k for k in result.balances if k.period is PeriodKind.WEEK}
    assert weeks == {BalanceKey("team:platform", PeriodKind.WEEK, date(2026, 11, 2))}  # T0 is a Monday


# -- cascades per scope ----------------------------------------------------------------------------------


def test_the_narrowest_scope_with_its_own_cascade_wins() -> None:
    """The team's own cascade beats the org's, which beats the settings'; a scope without one falls through."""
    team = budget_of("team:platform", daily_micros=None, monthly_micros=100 * USD,
                     cascades={"gpt-5.1": ["gpt-4.1-mini"]})
    org = budget_of("org", daily_micros=None, monthly_micros=1000 * USD, cascades={"gpt-5.1": ["gpt-5-nano"]})
    dev = budget_of("developer:alice", daily_micros=None, monthly_micros=100 * USD)
    spent = {month("developer:alice"): 96 * USD}
    assert run(policy(dev, team, org), spent).model_used == "gpt-4.1-mini"
    assert run(policy(dev, org), spent).model_used == "gpt-5-nano"
    assert run(policy(dev), spent).model_used == "gpt-5.1-mini"  # the settings' cascade
    # a scope's cascade for another model does not hide the broader one for this model
    other = budget_of("team:platform", daily_micros=None, monthly_micros=100 * USD, cascades={"o3": ["o4-mini"]})
    assert run(policy(dev, other, org), spent).model_used == "gpt-5-nano"


@pytest.mark.parametrize(
    ("cascades", "fragment"),
    [({"gpt-5.1": []}, "1 to 8"), ({"gpt-5.1": ["m"] * 9}, "1 to 8"), ({"gpt-5.1": ["gpt-5.1"]}, "twice"),
     ({f"m{i}": ["x"] for i in range(65)}, "at most 64"), ({"gpt 5": ["x"]}, "bad model"),
     ({"gpt-5.1": "gpt-5.1-mini"}, "list")],
)
def test_bad_cascades_are_refused(cascades: dict[str, object], fragment: str) -> None:
    """Empty, overlong, self-referencing, too many, misspelt or non-list cascades are ConfigErrors."""
    with pytest.raises(ConfigError, match=fragment):
        budget_of("org", daily_micros=USD, monthly_micros=None, cascades=cascades)  # type: ignore[arg-type]


# -- at_pause: step_down ---------------------------------------------------------------------------------


def test_step_down_sends_every_turn_one_step_down_large_ones_included() -> None:
    """Paused with step_down, a 200k-token turn for gpt-5.1-codex-max goes to gpt-5.1-codex (one step, not the
    cheapest), and a model with no cheaper step is refused."""
    p = policy(budget_of("team:platform", daily_micros=None, monthly_micros=10 * USD, at_pause="step_down"))
    spent = {month("team:platform"): 12 * USD}
    big = run(p, spent, model="gpt-5.1-codex-max", tokens=200_000)
    assert (big.action, big.model_used, big.route_reason) == ("pause_step_down", "gpt-5.1-codex",
                                                              "pause_step_down")
    assert run(p, spent, model="gpt-4.1-mini").refused  # the bottom of its cascade
    assert run(p, spent, model="some-model-without-cascade").refused


def test_cheapest_beats_step_down_and_refuse_beats_both() -> None:
    """Several paused scopes: any refuse refuses; else any cheapest forces the cheapest; else step down."""
    def paused(at_pause: str, scope: str) -> Budget:
        return budget_of(scope, daily_micros=None, monthly_micros=10 * USD, at_pause=at_pause)

    spent = {month("team:platform"): 12 * USD, month("org"): 12 * USD}
    assert run(policy(paused("step_down", "team:platform"), paused("cheapest", "org")), spent).model_used == (
        "gpt-4.1-mini")
    assert run(policy(paused("step_down", "team:platform"), paused("refuse", "org")), spent).refused
    assert run(policy(paused("step_down", "team:platform"), paused("step_down", "org")), spent).model_used == (
        "gpt-5.1-mini")


# -- policy files ----------------------------------------------------------------------------------------


def test_a_policy_file_takes_every_new_shape() -> None:
    """Weekly amounts, per-model budgets, cost-center scopes, own cascades and step_down parse from a document."""
    p = policy_from_document({"budgets": [
        {"scope": "org", "model": "gpt-5.1", "monthly": "500"},
        {"scope": "cost_center:cc-eng", "weekly": "200", "at_pause": "step_down",
         "cascades": {"gpt-5.1": ["gpt-4.1-mini"]}},
    ]}, EnforcementSettings())
    assert p.budgets[FLAGSHIP].model == "gpt-5.1" and p.budgets[FLAGSHIP].monthly_micros == 500 * USD
    cc = p.budgets["cost_center:cc-eng"]
    assert (cc.weekly_micros, cc.at_pause, cc.cascades) == (200 * USD, "step_down", (("gpt-5.1", ("gpt-4.1-mini",)),))


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [({"budgets": [{"scope": "org", "weekly": 1.5}]}, "never floats"),
     ({"budgets": [{"scope": "org", "monthly": "1"}, {"scope": "org", "monthly": "2"}]}, "two budgets for org"),
     ({"budgets": [{"scope": "org", "model": "gpt-5.1", "monthly": "1"},
                   {"scope": "org|model:gpt-5.1", "monthly": "2"}]}, "two budgets"),
     ({"budgets": [{"scope": "org", "monthly": "1", "at_pause": "slow_down"}]}, "at_pause"),
     ({"budgets": [{"scope": "project:x", "monthly": "1"}]}, "cost_center:<name>"),
     ({"budgets": [{"scope": "org", "weekly": "0"}]}, "positive")],
)
def test_bad_shapes_in_a_policy_file_are_config_errors(doc: dict[str, object], fragment: str) -> None:
    """Floats, duplicate budgets, unknown pause modes or scope kinds and zero amounts are refused by name."""
    with pytest.raises(ConfigError, match=fragment):
        policy_from_document(doc, EnforcementSettings())


def test_policy_show_writes_the_new_shapes_back_as_a_proposal_reads_them() -> None:
    """``policy show``'s document of a policy with every new shape parses back to the same budgets."""
    from spendgate.admin.policy import to_document

    p = policy_from_document({"budgets": [
        {"scope": "org", "model": "gpt-5.1", "monthly": "500", "weekly": "150"},
        {"scope": "cost_center:cc-eng", "daily": "20", "at_pause": "step_down",
         "cascades": {"gpt-5.1": ["gpt-4.1-mini"], "o3": ["o4-mini"]}},
    ]}, EnforcementSettings())
    doc = to_document(p)
    assert doc["budgets"][1] == {"scope": "org", "model": "gpt-5.1", "weekly": "150.000000", "monthly": "500.000000",
                                 "timezone": "UTC", "thresholds": [80, 95, 110], "at_pause": "refuse"}
    assert policy_from_document(doc, EnforcementSettings()).budgets == p.budgets
