"""Routing rules: hours in the rule's time zone with their boundaries, scope and size limits, the models a
rule applies to, how the decision records a routed request, and the errors a bad rule gets on apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spendgate.domain.enforcement import BalanceKey, Budget, Policy, Principal, RequestFacts, decide
from spendgate.domain.enforcement.policy import policy_from_document
from spendgate.domain.enforcement.routing import RoutingTable, parse_hours, stored_rules
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import PeriodKind
from spendgate.domain.pricing import PriceTable

ALICE = Principal("k1", "alice", "platform")
BOB = Principal("k2", "bob", "research")
USD = 1_000_000
RULE: dict[str, Any] = {"name": "small-daytime", "scope": "team:platform", "max_input_tokens": 8000,
                        "hours": "09:00-17:00", "timezone": "Europe/Berlin", "model": "gpt-5.1-mini"}


def with_rules(*rules: dict[str, Any], budgets: list[dict[str, Any]] | None = None) -> Policy:
    return policy_from_document({"budgets": budgets or [], "routing_rules": list(rules)}, EnforcementSettings())


def berlin(hour: int, minute: int = 0, second: int = 0, day: int = 26) -> datetime:
    """A November instant given as Berlin wall time (UTC+1 then)."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=1)


def routed(p: Policy, at: datetime, *, who: Principal = ALICE, model: str = "gpt-5.1", tokens: int = 1_000) -> str:
    return decide(RequestFacts(who, model, tokens), p, lambda _k: 0, at).model_used


@pytest.mark.parametrize(("wall", "expected"), [
    ((8, 59, 59), "gpt-5.1"), ((9, 0, 0), "gpt-5.1-mini"), ((12, 30, 0), "gpt-5.1-mini"),
    ((16, 59, 59), "gpt-5.1-mini"), ((17, 0, 0), "gpt-5.1"), ((23, 0, 0), "gpt-5.1"),
])
def test_hours_are_local_to_the_rule_and_end_exclusive(wall: tuple[int, int, int], expected: str) -> None:
    """09:00-17:00 Europe/Berlin routes from 09:00:00 Berlin time up to, not including, 17:00:00."""
    assert routed(with_rules(RULE), berlin(*wall)) == expected


def test_daylight_saving_moves_the_window_in_utc() -> None:
    """The same rule starts at 08:00 UTC in November (UTC+1) and 07:00 UTC in July (UTC+2)."""
    p = with_rules(RULE)
    assert routed(p, datetime(2026, 11, 26, 8, 0, tzinfo=UTC)) == "gpt-5.1-mini"
    assert routed(p, datetime(2026, 11, 26, 7, 59, tzinfo=UTC)) == "gpt-5.1"
    assert routed(p, datetime(2026, 7, 1, 7, 0, tzinfo=UTC)) == "gpt-5.1-mini"
    assert routed(p, datetime(2026, 7, 1, 6, 59, tzinfo=UTC)) == "gpt-5.1"


def test_hours_may_wrap_midnight() -> None:
    """22:00-06:00 covers 23:30 and 05:59 but not 06:00 or 21:59."""
    p = with_rules({**RULE, "hours": "22:00-06:00"})
    assert [routed(p, berlin(h, m)) for h, m in ((23, 30), (5, 59), (6, 0), (21, 59))] == [
        "gpt-5.1-mini", "gpt-5.1-mini", "gpt-5.1", "gpt-5.1"]


def test_the_cached_local_minute_follows_the_clock() -> None:
    """The table caches the local minute per time zone for one UTC minute only."""
    table = RoutingTable()
    assert table.minute_of_day("Asia/Kolkata", datetime(2026, 11, 26, 3, 29, 59, tzinfo=UTC)) == 8 * 60 + 59
    assert table.minute_of_day("Asia/Kolkata", datetime(2026, 11, 26, 3, 30, tzinfo=UTC)) == 9 * 60


def test_size_limit_is_strictly_under_and_scope_must_match() -> None:
    """Turns under max_input_tokens are routed, one at the limit is not; another team's turns are not."""
    p = with_rules(RULE)
    noon = berlin(12)
    assert routed(p, noon, tokens=7_999) == "gpt-5.1-mini"
    assert routed(p, noon, tokens=8_000) == "gpt-5.1"
    assert routed(p, noon, who=BOB) == "gpt-5.1"


def test_default_models_are_those_whose_cascade_reaches_the_target() -> None:
    """Without models:, a request for a model that already is the target or cheaper is left alone."""
    p = with_rules(RULE)
    noon = berlin(12)
    assert routed(p, noon, model="gpt-5.1-mini") == "gpt-5.1-mini"
    assert routed(p, noon, model="gpt-4.1-mini") == "gpt-4.1-mini"


def test_explicit_models_limit_the_rule() -> None:
    """models: [gpt-5.1-codex] routes that model only."""
    p = with_rules({**RULE, "models": ["gpt-5.1-codex"], "model": "gpt-5.1-codex-mini"})
    noon = berlin(12)
    assert routed(p, noon, model="gpt-5.1-codex") == "gpt-5.1-codex-mini"
    assert routed(p, noon, model="gpt-5.1") == "gpt-5.1"


def test_narrowest_scope_wins_then_document_order() -> None:
    """A developer's rule beats the team's; within a scope the first listed matching rule wins."""
    p = with_rules(
        {**RULE, "name": "team-first"},
        {**RULE, "name": "team-second", "model": "gpt-4.1-mini"},
        {**RULE, "name": "alice", "scope": "developer:alice", "model": "gpt-4.1-mini"},
    )
    d = decide(RequestFacts(ALICE, "gpt-5.1", 1_000), p, lambda _k: 0, berlin(12))
    assert (d.model_used, d.routing_rule) == ("gpt-4.1-mini", "alice")
    d = decide(RequestFacts(Principal("k3", "carol", "platform"), "gpt-5.1", 1_000), p, lambda _k: 0, berlin(12))
    assert (d.model_used, d.routing_rule) == ("gpt-5.1-mini", "team-first")


def test_a_routed_request_is_recorded_with_the_rule_and_the_version() -> None:
    """The decision names the rule, keeps the requested model, and carries the policy's version id."""
    p = with_rules(RULE).with_version("v-1", with_rules(RULE).routing, None)
    d = decide(RequestFacts(ALICE, "gpt-5.1", 1_000), p, lambda _k: 0, berlin(12))
    assert (d.action, d.model_requested, d.model_used, d.route_reason, d.routing_rule, d.policy_version) == (
        "pass", "gpt-5.1", "gpt-5.1-mini", "routing_rule", "small-daytime", "v-1")
    plain = decide(RequestFacts(BOB, "gpt-5.1", 1_000), p, lambda _k: 0, berlin(12))
    assert (plain.route_reason, plain.routing_rule, plain.policy_version) == ("requested", None, "v-1")


def test_budget_stages_apply_to_the_routed_model() -> None:
    """At the downgrade stage a routed turn steps further down from the rule's model; at a refusing pause it
    is refused as the requested model."""
    budget = [{"scope": "team:platform", "daily": "10"}]
    p = with_rules(RULE, budgets=budget)
    key = BalanceKey("team:platform", PeriodKind.DAY, berlin(12).date())
    down = decide(RequestFacts(ALICE, "gpt-5.1", 1_000), p, lambda k: 9_600_000 if k == key else 0, berlin(12))
    assert (down.model_used, down.route_reason, down.routing_rule) == ("gpt-4.1-mini", "downgrade", "small-daytime")
    paused = decide(RequestFacts(ALICE, "gpt-5.1", 1_000), p, lambda k: 12 * USD if k == key else 0, berlin(12))
    assert (paused.action, paused.model_requested, paused.model_used) == ("refuse", "gpt-5.1", "gpt-5.1")


def test_timezone_defaults_to_the_scopes_budget() -> None:
    """A rule without timezone takes its scope's budget's, and the stored document writes it out."""
    rule = {k: v for k, v in RULE.items() if k != "timezone"}
    p = with_rules(rule, budgets=[{"scope": "team:platform", "daily": "10", "timezone": "Asia/Tokyo"}])
    assert p.routing.rules[0].timezone == "Asia/Tokyo"
    assert stored_rules({"routing_rules": [r.document() for r in p.routing.rules]}).rules == p.routing.rules
    assert with_rules(rule).routing.rules[0].timezone == "UTC"


@pytest.mark.parametrize(("change", "message"), [
    ({"hours": "9-17"}, "hours must look like"),
    ({"hours": "25:00-26:00"}, "does not exist"),
    ({"hours": "09:00-09:00"}, "start and end at the same time"),
    ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
    ({"max_input_tokens": 0}, "max_input_tokens must be a whole number"),
    ({"max_input_tokens": 8000.5}, "max_input_tokens must be a whole number"),
    ({"scope": "planet:mars"}, "scope"),
    ({"model": "bad model!"}, "small-daytime"),
    ({"models": ["gpt-5.1-mini"]}, "the model it routes to"),
    ({"colour": "blue"}, "unknown field 'colour'"),
    ({"name": "no spaces please"}, "routing_rules.0.name"),
])
def test_bad_rules_are_refused_with_a_clear_error(change: dict[str, Any], message: str) -> None:
    """Each malformed rule is a ConfigError that says what is wrong."""
    with pytest.raises(ConfigError, match=message):
        with_rules({**RULE, **change})


def test_duplicate_names_and_too_many_rules_are_refused() -> None:
    """Two rules of one name, or more than 200 rules, are refused."""
    with pytest.raises(ConfigError, match="two routing rules are named"):
        with_rules(RULE, RULE)
    with pytest.raises(ConfigError, match="at most 200 routing rules"):
        with_rules(*({**RULE, "name": f"r{i}"} for i in range(201)))


def test_unknown_and_unreachable_models_fail_the_price_check() -> None:
    """A rule to an unpriced model, one whose target no cascade reaches, or across providers fails check_prices."""
    table = PriceTable()
    with pytest.raises(ConfigError, match="gpt-9-nano"):
        with_rules({**RULE, "model": "gpt-9-nano"}).check_prices(table)
    with pytest.raises(ConfigError, match=r"no cascade steps down to gpt-5\.1"):
        with_rules({**RULE, "model": "gpt-5.1"}).check_prices(table)
    with pytest.raises(ConfigError, match="one provider"):
        with_rules({**RULE, "models": ["gpt-5.1"], "model": "claude-haiku-4-5"}).check_prices(table)
    with_rules(RULE).check_prices(table)


def test_parse_hours_accepts_the_end_of_the_day() -> None:
    """24:00 closes a window at midnight; 00:00 starts one."""
    assert parse_hours("18:00-24:00", what="r") == (18 * 60, 24 * 60)
    assert parse_hours("00:00-06:30", what="r") == (0, 6 * 60 + 30)


def test_a_policy_without_rules_decides_as_before() -> None:
    """No rules: an empty routing table, falsy, and the decision leaves the model alone."""
    p = Policy.from_settings(EnforcementSettings(), [Budget("team:platform", daily_micros=10 * USD)])
    assert not p.routing.rules
    assert routed(p, berlin(12)) == "gpt-5.1"


def test_a_rule_without_scope_applies_to_the_whole_org_after_narrower_ones() -> None:
    """scope defaults to org: every team's turns are routed, but a team's own rule is tried first."""
    org_rule = {k: v for k, v in RULE.items() if k != "scope"} | {"name": "everyone", "model": "gpt-4.1-mini"}
    p = with_rules(org_rule, RULE)
    assert routed(p, berlin(12), who=BOB) == "gpt-4.1-mini"
    assert routed(p, berlin(12), who=ALICE) == "gpt-5.1-mini"
