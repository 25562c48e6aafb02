"""The guard's pure judgement: which rules a version added or changed, which turns a rule's predicate
matches before the version, and the verdicts around the tolerance."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from spendgate.domain.enforcement.routing import stored_rules
from spendgate.domain.guard import affected, judge, local_hour, matches, requested_models, rollback_reason, routed
from spendgate.domain.outcomes import TurnFacts

RULE = {"name": "small", "scope": "team:platform", "max_input_tokens": 8000, "hours": "22:00-06:00",
        "timezone": "Europe/Berlin", "model": "gpt-5.1-mini"}
AT = datetime(2026, 11, 10, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: inside the rule's hours


def facts(**kw: object) -> TurnFacts:
    base = dict(developer="alice", team="platform", session_id="s", turn_id="t", started_at=AT, ended_at=AT,
                requests=1, tool_calls=0, tool_failures=0, retry_requests=0, final_message=True, failed=0,
                incomplete=0, aborted=0, refused=0, model_requested="gpt-5.1", model_used="gpt-5.1",
                downgraded=False, cost_micros=1, input_tokens=2_000, key_id="k1", cost_center="cc")
    base.update(kw)
    return TurnFacts(**base)  # type: ignore[arg-type]


def test_affected_rules_are_the_added_and_the_changed() -> None:
    """A new rule is added, one with another limit is changed, an identical one and a removed one are not."""
    keep = {**RULE, "name": "keep"}
    parent = {"routing_rules": [keep, RULE, {**RULE, "name": "gone"}]}
    doc = {"routing_rules": [keep, {**RULE, "max_input_tokens": 4000}, {**RULE, "name": "new"}]}
    assert [(s.rule.name, s.change) for s in affected(doc, parent)] == [("small", "changed"), ("new", "added")]
    assert [s.change for s in affected(doc, None)] == ["added", "added", "added"]
    assert affected(parent, parent) == []


def test_the_predicate_is_scope_size_local_hours_and_model() -> None:
    """Only platform turns under the limit, started in the rule's Berlin hours (wrapping midnight), asking
    for a model the rule routes from."""
    [rule] = stored_rules({"routing_rules": [RULE]}).rules
    models = {"gpt-5.1"}
    assert matches(rule, facts(), models)
    assert matches(rule, facts(started_at=datetime(2026, 11, 11, 4, 59, tzinfo=UTC)), models)  # 05:59 Berlin
    assert not matches(rule, facts(started_at=datetime(2026, 11, 11, 5, 0, tzinfo=UTC)), models)  # 06:00
    assert not matches(rule, facts(team="payments"), models)
    assert not matches(rule, facts(input_tokens=8_000), models)
    assert not matches(rule, facts(model_requested="gpt-4.1"), models)
    org = replace(rule, scope="org")
    key = replace(rule, scope="key:k1")
    center = replace(rule, scope="cost_center:cc")
    assert matches(org, facts(team="x"), models) and matches(key, facts(), models)
    assert matches(center, facts(), models) and not matches(center, facts(cost_center=None), models)
    candidates = [facts(policy_version="v2", routing_rule="small", model_requested="gpt-5")]
    assert requested_models(rule, candidates) == {"gpt-5"}
    assert requested_models(replace(rule, models=("gpt-5.1",)), candidates) == {"gpt-5.1"}
    assert routed(rule, candidates[0], "v2") and not routed(rule, candidates[0], "v1")
    assert local_hour(rule, facts()) == 23  # 22:30 UTC is 23:30 in Berlin


@pytest.mark.parametrize(("candidate", "verdict"), [
    ([0.4] * 40, "regressed"), ([1.0, 0.9, 1.0, 1.0, 0.9] * 8, "harmless"), ([0.9] * 10, "too_few"),
])
def test_verdicts_around_the_tolerance(candidate: list[float], verdict: str) -> None:
    """Clearly worse: regressed (and the reason carries the numbers); as good: harmless; 10 turns: too few,
    with how many more are needed."""
    [segment] = affected({"routing_rules": [RULE]}, None)
    baseline = [1.0, 0.9, 1.0, 1.0, 0.9] * 8
    j = judge(segment, baseline, candidate, tolerance=0.02, min_turns=30)
    assert j.verdict == verdict
    if verdict == "too_few":
        assert j.estimate is None and j.needed == 20
    if verdict == "regressed":
        assert j.estimate is not None and j.estimate.lower > 0.02
        reason = rollback_reason("v2", j, 2.0)
        assert "routing rule small (team:platform)" in reason and "past the 2 % tolerance" in reason
        assert "over 40 turns since" in reason and len(reason) < 500
