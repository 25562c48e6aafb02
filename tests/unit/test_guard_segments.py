"""The guard's pure judgement: which parts of the policy a version changed (routing rules, the size limit,
budgets, thresholds, retry caps, exploration), which turns each picks, and the verdicts around the tolerance."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from spendgate.alerter.messages import rollback_message
from spendgate.domain.alerts import Message
from spendgate.domain.enforcement.routing import stored_rules
from spendgate.domain.guard import affected, judge, local_hour, matches, requested_models, rollback_reason, routed
from spendgate.domain.outcomes import TurnFacts
from tests.support.factories import examples

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
    assert [(s.name, s.change) for s in affected(doc, parent)] == [("small", "changed"), ("new", "added")]
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


BUDGET: dict[str, Any] = {"scope": "team:platform", "monthly": "2000", "thresholds": [80, 95, 110],
                          "timezone": "Europe/Berlin"}
PARENT: dict[str, Any] = {"budgets": [BUDGET, {"scope": "team:web", "daily": "40"}], "downgrade_max_input_tokens": 8000,
          "retry_cap": 3, "exploration": {"share_pct": 5, "teams": ["platform"], "max_input_tokens": 8000}}


def but(f: TurnFacts, **kw: object) -> TurnFacts:
    return msgspec.structs.replace(f, **kw)


def test_every_changed_part_is_a_segment_with_its_kind_and_a_sentence() -> None:
    """Against its parent, a version that changes everything yields one segment per part: the size limit,
    a new budget, a budget's amount, thresholds and retry cap, a removed budget, the policy-wide retry cap
    and the exploration block, each saying what changed; which turns each picks follows from whether it
    made turns cheaper. A first version (no parent) is judged on its rules only."""
    doc = {"budgets": [{**BUDGET, "monthly": "1500", "thresholds": [70, 85, 100], "retry_cap": 1},
                       {"scope": "org", "model": "gpt-5.1", "monthly": "9000.50"}],
           "downgrade_max_input_tokens": 32000, "retry_cap": 2, "routing_rules": [RULE],
           "exploration": {"share_pct": "12.5", "teams": ["platform", "web"], "max_input_tokens": 8000,
                           "models": ["gpt-5.1"]}}
    got = {(s.kind, s.name): s for s in affected(doc, PARENT)}
    assert {(k, n): (s.change, s.summary, s.picks) for (k, n), s in got.items()} == {
        ("routing_rule", "small"): ("added", "routing rule small (team:platform) added", "routed"),
        ("downgrade_limit", "downgrade_max_input_tokens"): (
            "changed", "downgrade size limit 8,000 → 32,000 input tokens", "downgraded"),
        ("budget", "budget org|model:gpt-5.1"): ("added", "budget org|model:gpt-5.1 monthly $9,000.50 (new)",
                                                  "downgraded"),
        ("budget", "budget team:platform"): ("changed", "budget team:platform monthly $2,000 → $1,500", "downgraded"),
        ("stage_thresholds", "thresholds team:platform"): (
            "changed", "stage thresholds team:platform 80/95/110 % → 70/85/100 %", "downgraded"),
        ("retry_cap", "retry_cap team:platform"): (
            "changed", "retry cap team:platform the policy-wide cap → 1 retry", "in_scope"),
        ("budget", "budget team:web"): ("removed", "budget team:web removed (was daily $40)", "in_scope"),
        ("retry_cap", "retry_cap"): ("changed", "policy-wide retry cap 3 retries → 2 retries", "in_scope"),
        ("exploration", "exploration"): (
            "changed", "exploration share 5 % → 12.5 %; teams platform → platform, web; models every model with a "
                       "cheaper step → gpt-5.1", "explored"),
    }
    assert got[("downgrade_limit", "downgrade_max_input_tokens")].sizes == (8000, 32000)
    assert got[("budget", "budget team:platform")].sizes == (0, 32000)  # only turns under the limit downgrade
    assert got[("budget", "budget team:platform")].timezone == "Europe/Berlin"
    looser = {**PARENT, "budgets": [{**BUDGET, "monthly": "2500", "thresholds": [80, 95, 120]}, PARENT["budgets"][1]],
              "downgrade_max_input_tokens": 4000, "exploration": None}
    assert {s.kind: (s.summary, s.picks) for s in affected(looser, PARENT)} == {
        "downgrade_limit": ("downgrade size limit 8,000 → 4,000 input tokens", "in_scope"),
        "budget": ("budget team:platform monthly $2,000 → $2,500", "in_scope"),
        "stage_thresholds": ("stage thresholds team:platform 80/95/110 % → 80/95/120 %", "in_scope"),
        "exploration": ("exploration removed (was 5 % of turns under 8,000 input tokens in teams platform)",
                        "in_scope"),
    }
    assert affected(PARENT, PARENT) == [] and [s.kind for s in affected(doc, None)] == ["routing_rule"]
    many = {**PARENT, "exploration": {**PARENT["exploration"], "teams": [f"t{i}" for i in range(500)]}}
    [big] = affected(many, PARENT)
    assert big.summary.endswith("and 495 more") and len(big.summary) < 200


def test_which_turns_each_kind_of_segment_picks() -> None:
    """Downgraded: only turns a budget stage made cheaper, in the size band, against turns of that band that
    ran as asked; in scope: every turn of the scope (a per-model budget: that model's); explored: explored
    turns against the control arm of the same version."""
    parent = {**PARENT, "exploration": None}
    segs = {s.kind: s for s in affected({**parent, "downgrade_max_input_tokens": 32000,
                                         "exploration": PARENT["exploration"],
                                         "budgets": [BUDGET, {"scope": "team:web", "daily": "40", "retry_cap": 0}]},
                                        parent)}
    limit, cap, explore = segs["downgrade_limit"], segs["retry_cap"], segs["exploration"]
    big = facts(input_tokens=16_000, policy_version="v2")
    assert limit.candidate(but(big, downgraded=True), "v2") and not limit.candidate(big, "v2")
    assert not limit.candidate(but(big, downgraded=True, routing_rule="r"), "v2")
    assert not limit.candidate(but(big, downgraded=True, experiment_arm="explore"), "v2")
    assert not limit.candidate(but(big, downgraded=True, input_tokens=2_000), "v2")
    assert not limit.candidate(but(big, downgraded=True), "v1")
    assert limit.baseline(big, "v2", {"gpt-5.1"}) and not limit.baseline(but(big, downgraded=True), "v2",
                                                                             {"gpt-5.1"})
    assert not limit.baseline(big, "v2", {"gpt-5"}) and limit.baseline_before
    web = facts(team="web", policy_version="v2")
    assert cap.candidate(web, "v2") and not cap.candidate(facts(policy_version="v2"), "v2")
    assert cap.baseline(web, "v2", {"gpt-5.1"})
    small = facts(policy_version="v2", experiment_arm="explore")
    assert explore.candidate(small, "v2") and not explore.candidate(but(small, experiment_arm="control"), "v2")
    assert explore.baseline(but(small, experiment_arm="control"), "v2", {"gpt-5.1"})
    assert not explore.baseline(but(small, experiment_arm="control", policy_version="v1"), "v2", {"gpt-5.1"})
    assert not explore.baseline(but(small, experiment_arm="control", team="web"), "v2", {"gpt-5.1"})
    assert not explore.baseline_before and explore.requested_models([small]) == {"gpt-5.1"}
    [per_model] = affected({**parent, "budgets": [*parent["budgets"], {"scope": "org", "model": "gpt-5",
                                                                       "monthly": "10"}]}, parent)
    assert per_model.candidate(but(big, model_requested="gpt-5", downgraded=True, input_tokens=10), "v2")
    assert not per_model.candidate(but(big, downgraded=True, input_tokens=10), "v2")


def test_a_rollback_of_another_kind_reads_as_that_change() -> None:
    """The reason names the change (cut short when long) and, for exploration, its control arm; the alert
    names the change instead of a routing rule."""
    [seg] = affected({**PARENT, "downgrade_max_input_tokens": 32000}, PARENT)
    j = judge(seg, [1.0, 0.9, 1.0, 1.0, 0.9] * 8, [0.4] * 40, tolerance=0.02, min_turns=30)
    reason = rollback_reason("v2", j, 2.0)
    assert reason.startswith("guard: version v2's change (downgrade size limit 8,000 → 32,000 input tokens) made")
    assert "turns before" in reason
    [explore] = affected({**PARENT, "exploration": {**PARENT["exploration"], "teams": [f"team-{i:03}" * 3
                                                                                      for i in range(500)]}}, PARENT)
    long = rollback_reason("v2", judge(explore, [1.0] * 40, [0.4] * 40, tolerance=0.02, min_turns=30), 2.0)
    assert "turns of its control arm" in long and len(long) < 500
    event = msgspec.structs.replace(examples()[-1], kind=seg.kind, summary=seg.summary, segment=seg.name,
                                    scope=seg.scope)
    base = Message(alert_id="a", kind="policy_rollback", severity="error", title="", summary="", scope="org",
                   incident_key="k", created_at=AT)
    text = msgspec.json.encode(rollback_message(base, event)).decode()
    assert "Turns touched by the change (downgrade size limit 8,000 → 32,000 input tokens)" in text
    assert "routing rule" not in text and "settings file" not in text  # the rollback itself restores the limit
    assert "routing rule platform-small (team:platform)" in msgspec.json.encode(
        rollback_message(base, examples()[-1])).decode()
