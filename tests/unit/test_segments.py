"""Segments and the routing-rule search, pure: bucket edges, tool patterns, which side of a comparison a
turn is on, the repriced saving, the biased label, and the optimiser's verdicts."""

from __future__ import annotations

from datetime import UTC, datetime

from spendgate.domain.learning import Regression
from spendgate.domain.optimiser import HOUR_CHOICES, _more_for_bound, candidates, decide, rule_name
from spendgate.domain.outcomes import TurnFacts
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.domain.segments import BIASED, OwnModelUsage, SegmentTurn, estimate, size_bucket, tool_pattern

PRICES = PriceTable()
MINI = PRICES.lookup("gpt-5.1-mini").price
FLAGSHIP = PRICES.lookup("gpt-5.1").price


def own(model_ran_requested: bool) -> OwnModelUsage:
    if not model_ran_requested:
        return OwnModelUsage(0, 0, 0, 0, 0, 0, 0)
    cost = cost_micros(FLAGSHIP, input_tokens=3_000, cached_tokens=1_000, output_tokens=500)
    return OwnModelUsage(1, 3_000, 1_000, 500, 0, 0, cost)


def turn(*, arm: str | None = None, reason: str = "requested", used: str = "gpt-5.1", score: float = 1.0,
         tokens: int = 3_000, minute: int = 600) -> SegmentTurn:
    return SegmentTurn(team="platform", repo="/src/api", model_requested="gpt-5.1", model_used=used,
                       input_tokens=tokens, local_minute=minute, tools="ok", route_reason=reason, arm=arm,
                       score=score, own=own(used == "gpt-5.1"))


def facts(**kw: int) -> TurnFacts:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    base: dict[str, object] = dict(developer="a", team="t", session_id="s", turn_id="x", started_at=at, ended_at=at,
                                   requests=2, tool_calls=0, tool_failures=0, retry_requests=0, final_message=True,
                                   failed=0, incomplete=0, aborted=0, refused=0, model_requested="gpt-5.1",
                                   model_used="gpt-5.1", downgraded=False, cost_micros=1)
    return TurnFacts(**{**base, **kw})  # type: ignore[arg-type]


def test_size_buckets_and_tool_patterns_follow_the_documented_edges() -> None:
    """Under 2K, 2K-8K, 8K-32K, 32K and more; none / ok / failing (a failure or a retry)."""
    assert [size_bucket(n) for n in (0, 1_999, 2_000, 7_999, 8_000, 31_999, 32_000, 10**6)] == [
        "<2K", "<2K", "2K-8K", "2K-8K", "8K-32K", "8K-32K", ">=32K", ">=32K"]
    assert tool_pattern(facts()) == "none"
    assert tool_pattern(facts(tool_calls=3)) == "ok"
    assert tool_pattern(facts(tool_calls=3, tool_failures=1)) == "failing"
    assert tool_pattern(facts(tool_calls=3, retry_requests=1)) == "failing"


def test_each_turn_lands_on_its_side_of_the_comparison() -> None:
    """Control and plain requested turns are the baseline; explored turns the candidate; budget downgrades
    stand in; a turn a routing rule or a pause moved is on neither side."""
    assert turn(arm="control").role("gpt-5.1-mini") == "control"
    assert turn().role("gpt-5.1-mini") == "baseline"
    assert turn(arm="explore", reason="explore", used="gpt-5.1-mini").role("gpt-5.1-mini") == "explored"
    assert turn(reason="downgrade", used="gpt-5.1-mini").role("gpt-5.1-mini") == "downgraded"
    assert turn(reason="routing_rule", used="gpt-5.1-mini").role("gpt-5.1-mini") is None
    assert turn(reason="pause_cheapest", used="gpt-4.1-mini").role("gpt-5.1-mini") is None


def test_the_estimate_reprices_flagship_turns_and_labels_downgrades_as_biased() -> None:
    """The saving is the flagship requests' cost minus the same tokens at the candidate's price; with no
    explored turns the downgraded ones are the candidate side, and the estimate says it is biased."""
    turns = [turn(arm="control") for _ in range(40)] + [turn(reason="downgrade", used="gpt-5.1-mini")
                                                        for _ in range(35)]
    e = estimate(turns, "gpt-5.1-mini", MINI, rounds=200)
    per_turn = own(True).cost_micros - cost_micros(MINI, input_tokens=3_000, cached_tokens=1_000, output_tokens=500)
    assert e.saving_micros == 40 * per_turn > 0 and e.cost_micros == 40 * own(True).cost_micros
    assert e.biased and e.candidate_n == 35 and e.control_only and e.baseline_n == 40
    assert isinstance(e.result, Regression) and e.result.regression == 0.0
    assert BIASED == "biased: from budget downgrades"


def test_the_search_proposes_the_largest_harmless_saving_and_says_why_not_otherwise() -> None:
    """Harmless explored turns: a rule is proposed, its union covering the turns; worse ones: harmful; too
    few: needs_data with the turns short; the rule names are valid routing-rule names."""
    good = [turn(arm="control", score=0.9 + 0.1 * (i % 2)) for i in range(60)]
    good += [turn(arm="explore", reason="explore", used="gpt-5.1-mini", score=0.9 + 0.1 * (i % 2))
             for i in range(60)]
    found = candidates("platform", "gpt-5.1", "gpt-5.1-mini", "Europe/Berlin", good, MINI)
    assert len(found) == 9 and {c.rule.hours for c in found} == set(HOUR_CHOICES)
    verdict = decide("platform", "gpt-5.1", "gpt-5.1-mini", found, 0.02)
    assert verdict.verdict == "propose" and verdict.chosen is not None
    assert verdict.chosen.rule.max_input_tokens == 8_000 and verdict.chosen.rule.timezone == "Europe/Berlin"
    assert verdict.chosen.estimate.turns == 120
    bad = good[:60] + [turn(arm="explore", reason="explore", used="gpt-5.1-mini", score=0.3) for _ in range(60)]
    worse = decide("platform", "gpt-5.1", "gpt-5.1-mini",
                   candidates("platform", "gpt-5.1", "gpt-5.1-mini", "UTC", bad, MINI), 0.02)
    assert worse.verdict == "harmful" and worse.chosen is None
    thin = good[:60] + good[60:70]
    short = decide("platform", "gpt-5.1", "gpt-5.1-mini",
                   candidates("platform", "gpt-5.1", "gpt-5.1-mini", "UTC", thin, MINI), 0.02)
    assert short.verdict == "needs_data" and short.more_turns == 20
    assert rule_name("plat form/x", "gpt-5.1", 8_000, None) == "suggest-plat-form-x-gpt-5.1-under-8k-all-day"


def test_more_turns_needed_grows_as_the_bound_nears_the_tolerance() -> None:
    """The bound's distance from the estimate shrinks as 1/sqrt(n): halving it takes four times the turns."""
    r = Regression(100, 100, 0.9, 0.9, 0.0, -0.02, 0.04)
    assert _more_for_bound(r, 0.02) == 300
    assert _more_for_bound(Regression(100, 100, 0.9, 0.8, 0.05, 0.03, 0.07), 0.02) == 0
