"""Exploration: the share of eligible turns explored, one arm per turn, who is eligible, how a decision
records it, and the errors a bad block gets."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from spendgate.admin.policy import to_document
from spendgate.domain.enforcement import BalanceKey, Policy, Principal, RequestFacts, decide
from spendgate.domain.enforcement.exploration import parse_exploration, stored_exploration
from spendgate.domain.enforcement.policy import policy_from_document
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import PeriodKind
from spendgate.domain.pricing import PriceTable

ALICE = Principal("k1", "alice", "platform")
BOB = Principal("k2", "bob", "research")
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
USD = 1_000_000
BLOCK: dict[str, Any] = {"share_pct": 5, "teams": ["platform", "web"], "max_input_tokens": 8000}


def exploring(block: dict[str, Any] | None = None, **doc: Any) -> Policy:
    return policy_from_document({"exploration": block or BLOCK, **doc}, EnforcementSettings())


def decided(p: Policy, turn: str | None, *, who: Principal = ALICE, model: str = "gpt-5.1", tokens: int = 1_000,
            spend: Any = lambda _k: 0) -> Any:
    return decide(RequestFacts(who, model, tokens, "s1", turn), p, spend, NOW)


def test_the_share_is_honoured_within_binomial_error() -> None:
    """Over 20,000 turn ids, 5 % explore, within four standard deviations of the binomial."""
    p = exploring()
    n = 20_000
    explored = sum(decided(p, f"turn-{i}").experiment_arm == "explore" for i in range(n))
    sd = math.sqrt(n * 0.05 * 0.95)
    assert abs(explored - n * 0.05) < 4 * sd, explored


def test_a_decimal_share_is_honoured_too() -> None:
    """A share of "12.5" explores 12.5 % of 20,000 turn ids, within four standard deviations."""
    ex = parse_exploration({**BLOCK, "share_pct": "12.5"})
    assert ex is not None
    n = 20_000
    explored = sum(ex.arm(f"t{i}") == "explore" for i in range(n))
    assert abs(explored - n * 0.125) < 4 * math.sqrt(n * 0.125 * 0.875), explored


def test_every_request_of_a_turn_gets_the_same_arm_and_a_changed_block_draws_afresh() -> None:
    """The arm is a function of the turn id and the block alone: a second policy object (another proxy)
    agrees, and a different block (another salt) makes a different draw."""
    a, b = exploring(), exploring()
    arms = [decided(a, f"turn-{i}").experiment_arm for i in range(2_000)]
    assert arms == [decided(b, f"turn-{i}").experiment_arm for i in range(2_000)]
    assert [decided(a, f"turn-{i}", tokens=7_999).experiment_arm for i in range(2_000)] == arms
    other = exploring({**BLOCK, "teams": ["platform"]})
    assert [decided(other, f"turn-{i}").experiment_arm for i in range(2_000)] != arms


def test_an_explored_turn_runs_on_the_next_cheaper_model_and_a_control_turn_as_asked() -> None:
    """Explore: gpt-5.1-mini, route_reason explore, the version kept; control: gpt-5.1 as requested."""
    p = exploring().with_version("v-7", exploring().routing, exploring().exploration)
    turns = [f"turn-{i}" for i in range(400)]
    explore = next(t for t in turns if decided(p, t).experiment_arm == "explore")
    control = next(t for t in turns if decided(p, t).experiment_arm == "control")
    d = decided(p, explore)
    assert (d.action, d.model_requested, d.model_used, d.route_reason, d.policy_version) == (
        "pass", "gpt-5.1", "gpt-5.1-mini", "explore", "v-7")
    c = decided(p, control)
    assert (c.model_used, c.route_reason, c.experiment_arm) == ("gpt-5.1", "requested", "control")


@pytest.mark.parametrize(("who", "turn", "model", "tokens"), [
    (BOB, "t", "gpt-5.1", 1_000),            # team not listed
    (ALICE, None, "gpt-5.1", 1_000),         # no turn id
    (ALICE, "t", "gpt-5.1", 8_000),          # not under the size limit
    (ALICE, "t", "gpt-4.1-mini", 1_000),     # no cheaper step
])
def test_ineligible_requests_have_no_arm(who: Principal, turn: str | None, model: str, tokens: int) -> None:
    """An unlisted team, no turn id, a request at the size limit or a model with no cheaper step: no arm."""
    p = exploring({**BLOCK, "share_pct": 50})
    assert [decided(p, f"{turn}{i}" if turn else None, who=who, model=model, tokens=tokens).experiment_arm
            for i in range(50)] == [None] * 50


def test_models_limits_the_requested_models() -> None:
    """With models: [gpt-5.1-codex], gpt-5.1 turns are out of the experiment and codex turns in it."""
    p = exploring({**BLOCK, "share_pct": 50, "models": ["gpt-5.1-codex"]})
    assert {decided(p, f"t{i}").experiment_arm for i in range(50)} == {None}
    assert {decided(p, f"t{i}", model="gpt-5.1-codex").experiment_arm for i in range(50)} == {"explore", "control"}


def test_routing_rules_and_downgrades_come_first_and_budgets_still_apply() -> None:
    """A routed request is not in the experiment; nor is one a budget is downgrading; an explored turn at
    the alert stage keeps its arm and its stage."""
    rule = {"name": "small", "scope": "team:platform", "max_input_tokens": 4000, "model": "gpt-5.1-mini"}
    routed = exploring({**BLOCK, "share_pct": 50}, routing_rules=[rule])
    assert {decided(routed, f"t{i}").experiment_arm for i in range(50)} == {None}
    assert {decided(routed, f"t{i}", tokens=5_000).experiment_arm for i in range(50)} == {"explore", "control"}
    p = exploring({**BLOCK, "share_pct": 50}, budgets=[{"scope": "team:platform", "daily": "10"}])
    key = BalanceKey("team:platform", PeriodKind.DAY, NOW.date())
    down = [decided(p, f"t{i}", spend=lambda k: 9_600_000 if k == key else 0) for i in range(50)]
    assert {(d.action, d.experiment_arm) for d in down} == {("downgrade", None)}
    alert = [decided(p, f"t{i}", spend=lambda k: 8_500_000 if k == key else 0) for i in range(50)]
    explored = [d for d in alert if d.experiment_arm == "explore"]
    assert explored and {(d.stage.label, d.model_used, d.route_reason) for d in explored} == {
        ("alert", "gpt-5.1-mini", "explore")}


def test_a_paused_cheaper_model_never_turns_exploration_into_a_refusal() -> None:
    """A per-model budget of the cheaper model at a refusing pause: the turn runs as asked, out of the
    experiment, instead of being refused."""
    p = exploring({**BLOCK, "share_pct": 50},
                  budgets=[{"scope": "team:platform", "model": "gpt-5.1-mini", "daily": "1"}])
    key = BalanceKey("team:platform|model:gpt-5.1-mini", PeriodKind.DAY, NOW.date())
    out = [decided(p, f"t{i}", spend=lambda k: 5 * USD if k == key else 0) for i in range(50)]
    assert {(d.action, d.model_used) for d in out} == {("pass", "gpt-5.1")}


def test_the_block_round_trips_through_the_stored_document() -> None:
    """``policy show`` writes the block (the share as a decimal string: signed documents hold no floats) and
    a stored version reads it back to the same draw."""
    p = exploring({**BLOCK, "share_pct": "2.5", "models": ["gpt-5.1"]})
    doc = to_document(p)
    assert doc["exploration"] == {"share_pct": "2.5", "teams": ["platform", "web"], "max_input_tokens": 8000,
                                  "models": ["gpt-5.1"]}
    assert stored_exploration(doc) == p.exploration
    assert "exploration" not in to_document(policy_from_document({}, EnforcementSettings()))


@pytest.mark.parametrize(("block", "message"), [
    ({**BLOCK, "share_pct": 0}, r"exploration\.share_pct: a percentage over 0"),
    ({**BLOCK, "share_pct": 51}, r"exploration\.share_pct: a percentage over 0 and at most 50"),
    ({**BLOCK, "share_pct": 5.0}, r"exploration\.share_pct: .*never a float"),
    ({**BLOCK, "share_pct": "five"}, r"exploration\.share_pct"),
    ({**BLOCK, "share_pct": "NaN"}, r"exploration\.share_pct"),
    ({**BLOCK, "share_pct": "1.00001"}, r"exploration\.share_pct: at most four decimal places"),
    ({**BLOCK, "share_pct": True}, r"exploration\.share_pct"),
    ({**BLOCK, "share_pct": "1" * 100_000}, r"exploration\.share_pct: a percentage over 0 and at most 50"),
    ({k: v for k, v in BLOCK.items() if k != "share_pct"}, r"exploration\.share_pct"),
    ({k: v for k, v in BLOCK.items() if k != "teams"}, r"exploration\.teams: required"),
    ({**BLOCK, "teams": []}, r"exploration\.teams: a list of 1 to 500"),
    ({**BLOCK, "teams": "platform"}, r"exploration\.teams: a list"),
    ({**BLOCK, "teams": ["platform", "platform"]}, r"exploration\.teams: names a team twice"),
    ({**BLOCK, "teams": ["a\nb"]}, r"exploration\.teams: .* is not a team name"),
    ({**BLOCK, "teams": ["x" * 300]}, r"exploration\.teams: .* is not a team name"),
    ({**BLOCK, "max_input_tokens": 0}, r"exploration\.max_input_tokens: a whole number"),
    ({**BLOCK, "max_input_tokens": "8000"}, r"exploration\.max_input_tokens"),
    ({**BLOCK, "models": []}, r"exploration\.models: a list of 1 to 64"),
    ({**BLOCK, "models": ["not a model"]}, r"exploration\.models"),
    ({**BLOCK, "share": 5}, r"exploration: unknown field 'share'"),
])
def test_bad_blocks_are_refused_with_an_error_naming_the_field(block: dict[str, Any], message: str) -> None:
    """Each malformed or hostile block is one ConfigError that names the field."""
    with pytest.raises(ConfigError, match=message):
        exploring(block)


def test_a_block_that_is_not_a_mapping_and_a_model_without_a_cheaper_step_are_refused() -> None:
    """A list instead of a mapping is refused on parse; a model with no cascade on the price check."""
    with pytest.raises(ConfigError, match="exploration: a mapping"):
        policy_from_document({"exploration": [5]}, EnforcementSettings())
    p = exploring({**BLOCK, "models": ["gpt-4.1-mini"]})
    with pytest.raises(ConfigError, match=r"exploration\.models: gpt-4\.1-mini has no cheaper model"):
        p.check_prices(PriceTable())


def test_without_a_block_nothing_changes() -> None:
    """A policy without exploration decides as before, with no arm."""
    p = policy_from_document({}, EnforcementSettings())
    d = decided(p, "turn-1")
    assert (d.model_used, d.route_reason, d.experiment_arm) == ("gpt-5.1", "requested", None)
