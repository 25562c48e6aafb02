"""Policy: the YAML proposal format, validation, cascades and the start-up pricing check."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from spendgate.admin.policy import parse_proposal
from spendgate.core.config_providers import PricingSettings
from spendgate.domain.enforcement import Policy, parse_scope, policy_from_document
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.pricing import PriceTable

PROPOSAL = """
budgets:
  - scope: team:platform
    daily: "40"
    monthly: 800
    timezone: Europe/Berlin
    thresholds: [70, 90, 100]
    at_pause: cheapest
    retry_cap: 5
  - scope: key:k1
    daily: "1.50"
raises:
  - {scope: team:platform, by: "20", from: "2026-11-24T00:00:00Z", until: "2026-12-01T00:00:00Z",
     reason: release week}
downgrade_max_input_tokens: 20000
"""


def test_yaml_proposal_loads_into_typed_budgets(tmp_path: Path) -> None:
    """A proposal file gives micro-dollar budgets, thresholds, raises and defaults from settings."""
    p = policy_from_document(parse_proposal(PROPOSAL, source="proposal.yaml"), EnforcementSettings())
    team = p.budgets["team:platform"]
    assert (team.daily_micros, team.monthly_micros, team.timezone) == (40_000_000, 800_000_000, "Europe/Berlin")
    assert (team.thresholds.as_list(), team.at_pause, team.retry_cap) == ([70, 90, 100], "cheapest", 5)
    assert p.budgets["key:k1"].daily_micros == 1_500_000 and p.budgets["key:k1"].monthly_micros is None
    assert p.raises[0].amount_micros == 20_000_000
    assert p.raises[0].until == datetime(2026, 12, 1, tzinfo=UTC)
    assert p.raises[0].created_at == datetime(2026, 11, 24, tzinfo=UTC)  # it counts from then
    assert p.downgrade_max_input_tokens == 20_000
    assert p.cascades["gpt-5.1"] == ("gpt-5.1-mini", "gpt-4.1-mini")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"budgets": [{"scope": "team:x", "daily": 40.5}]}, "floats"),
        ({"budgets": [{"scope": "squad:x", "daily": "1"}]}, "bad scope"),
        ({"budgets": [{"scope": "org", "daily": "1", "timezone": "Mars/Base"}]}, "unknown timezone"),
        ({"budgets": [{"scope": "org", "daily": "1", "thresholds": [95, 80, 110]}]}, "rising"),
        ({"budgets": [{"scope": "org"}]}, "daily, weekly or monthly"),
        ({"budgets": [{"scope": "org", "daily": "0"}]}, "positive"),
        ({"raises": [{"scope": "org", "by": "1", "from": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00",
                      "reason": "x"}]}, "timezone"),
        ({"raises": [{"scope": "org", "by": "1", "until": "2026-12-01T00:00:00Z", "reason": "x"}]},
         "from: Field required"),
        ({"raises": [{"scope": "org", "by": "1", "from": "2026-12-01T00:00:00Z", "until": "2026-12-01T00:00:00Z",
                      "reason": "x"}]}, "before until"),
        ({"budget": []}, "invalid policy"),
    ],
)
def test_invalid_policies_are_config_errors_naming_the_problem(doc: dict[str, object], fragment: str) -> None:
    """Floats, unknown scopes, timezones, falling thresholds, empty or zero budgets, naive times and raises
    without a start (or starting at their end) are refused."""
    with pytest.raises(ConfigError, match=fragment):
        policy_from_document(doc, EnforcementSettings())


def test_scope_forms() -> None:
    """Scopes are key:<id>, developer:<name>, team:<name> or org; names are free text, trimmed."""
    assert parse_scope(" team: platform ") == "team:platform"
    assert parse_scope("developer:Alice Smith") == "developer:Alice Smith"
    assert parse_scope("org") == "org"
    for bad in ("team:", "team:  ", "developer:a\tb", "squad:x", "org:x"):
        with pytest.raises(ConfigError):
            parse_scope(bad)


def test_budget_thresholds_default_to_the_settings() -> None:
    """A proposal budget without thresholds takes enforcement.thresholds_pct."""
    p = policy_from_document({"budgets": [{"scope": "org", "daily": "1"}]},
                             EnforcementSettings(thresholds_pct=[50, 90, 100]))
    assert p.budgets["org"].thresholds.as_list() == [50, 90, 100]


def test_cascade_steps_and_cheapest() -> None:
    """gpt-5.1 steps to gpt-5.1-mini, its cheapest is gpt-4.1-mini; the last model has nowhere to go."""
    p = Policy.from_settings(EnforcementSettings())
    assert p.next_model("gpt-5.1") == "gpt-5.1-mini"
    assert p.cheapest_model("gpt-5.1") == "gpt-4.1-mini"
    assert p.next_model("gpt-4.1-mini") is None and p.cheapest_model("unknown-model") is None


def test_default_cascades_are_all_priced() -> None:
    """Every model of the shipped cascades has a price, so the start-up check passes by default."""
    Policy.from_settings(EnforcementSettings()).check_prices(PricingSettings().table())


def test_unpriced_cascade_model_fails_at_start_up() -> None:
    """A cascade naming a model missing from the pricing table is a ConfigError at start-up."""
    settings = EnforcementSettings(cascades={"gpt-5.1": ["gpt-5.1-mini", "gpt-9-nano"]})
    with pytest.raises(ConfigError, match="gpt-9-nano"):
        Policy.from_settings(settings).check_prices(PriceTable())


def test_cascade_across_providers_fails_at_start_up() -> None:
    """A downgrade goes to the requested model's upstream: a cascade from Claude to an OpenAI model is a
    ConfigError at start-up; a Claude-only cascade is fine."""
    mixed = EnforcementSettings(cascades={"claude-sonnet-4-5": ["claude-haiku-4-5", "gpt-4.1-mini"]})
    with pytest.raises(ConfigError, match=r"claude-sonnet-4-5 \(Anthropic\) steps to gpt-4\.1-mini \(OpenAI\)"):
        Policy.from_settings(mixed).check_prices(PriceTable())
    claude = EnforcementSettings(cascades={"claude-opus-4-5": ["claude-sonnet-4-5", "claude-haiku-4-5"]})
    Policy.from_settings(claude).check_prices(PriceTable())


def test_cascade_of_a_bedrock_model_must_stay_with_bedrock() -> None:
    """On the OpenAI routes a model configured for Bedrock goes to Bedrock: its cascade may step only to
    other Bedrock models (a Claude model that is not would go to the OpenAI upstream under a Claude name),
    and an OpenAI model's cascade may not step into Bedrock."""
    bedrock = {"claude-sonnet-4-5", "claude-haiku-4-5"}
    fine = EnforcementSettings(cascades={"claude-sonnet-4-5": ["claude-haiku-4-5"], "gpt-5.1": ["gpt-5.1-mini"]})
    Policy.from_settings(fine).check_prices(PriceTable(), bedrock_models=bedrock)
    stray = EnforcementSettings(cascades={"claude-sonnet-4-5": ["claude-3-5-haiku"]})
    with pytest.raises(ConfigError, match=r"\(Bedrock\) steps to claude-3-5-haiku \(Anthropic\).*bedrock\.models"):
        Policy.from_settings(stray).check_prices(PriceTable(), bedrock_models=bedrock)
    for cascades in ({"gpt-5.1": ["claude-haiku-4-5"]}, {"claude-sonnet-4-5": ["claude-haiku-4-5", "gpt-4.1-mini"]}):
        with pytest.raises(ConfigError, match="must stay with one provider"):
            Policy.from_settings(EnforcementSettings(cascades=cascades)).check_prices(
                PriceTable(), bedrock_models=bedrock)


def test_a_per_model_budget_on_a_model_nothing_prices_is_named_unless_a_fallback_prices_it() -> None:
    """A per-model budget on an unpriced model counts nothing (its requests are refused as an unknown model): the
    policy names it (apply warns; it was stored without a word), but not with a fallback price or a Bedrock model."""
    doc = {"budgets": [{"scope": "team:a", "model": "gpt-9", "monthly": "5"},
                       {"scope": "team:a", "model": "gpt-5.1", "monthly": "5"},
                       {"scope": "team:b", "model": "my-bedrock-model", "monthly": "5"},
                       {"scope": "org", "monthly": "50"}]}
    proposal = policy_from_document(doc, EnforcementSettings())
    assert proposal.unmetered_budgets(PricingSettings().table(), bedrock_models={"my-bedrock-model"}) == [
        "team:a|model:gpt-9"]
    priced = PricingSettings(fallback={"input": "1", "cached_input": "0.1", "output": "4"}).table()
    assert proposal.unmetered_budgets(priced) == []
