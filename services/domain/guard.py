"""The guard's judgement: which parts of a live policy version changed, which turns each part touched
before and since, and whether they got worse. Pure: no I/O.

A version's **affected segments** are its routing rules that are new or changed against its parent's
document (same name, another definition). For each, the *candidate* turns are those the rule routed
under the version; the *baseline* turns are those of the days before the version went live that the
rule's predicate matches (its scope, the turn's starting input size under ``max_input_tokens``, its
local start time in ``hours``, and the requested models it routes from), started in an hour of the day in
which the rule routed turns since (:func:`local_hour`: a morning of new traffic is compared with
mornings, not with the quiet nights before; the weekday mix is not matched, the baseline's week holds
every weekday once). Their quality scores are
compared with :func:`spendgate.domain.learning.regression` (docs/policy.md, "The guard").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spendgate.domain.enforcement.routing import RoutingRule, stored_rules
from spendgate.domain.learning import Regression, regression
from spendgate.domain.outcomes import TurnFacts
from spendgate.domain.periods import zone

Change = Literal["added", "changed"]
Verdict = Literal["regressed", "harmless", "unsure", "too_few"]
GUARD_APPROVER = "spendgate-guard"


@dataclass(frozen=True, slots=True)
class Segment:
    rule: RoutingRule
    change: Change


def affected(document: Mapping[str, Any], parent: Mapping[str, Any] | None) -> list[Segment]:
    """The routing rules of ``document`` that ``parent`` (None: no parent) lacks or defines otherwise."""
    before = {r.name: r for r in stored_rules(parent or {}).rules}
    out = []
    for rule in stored_rules(document).rules:
        old = before.get(rule.name)
        if old is None:
            out.append(Segment(rule, "added"))
        elif old != rule:
            out.append(Segment(rule, "changed"))
    return out


def in_scope(scope: str, f: TurnFacts) -> bool:
    kind, _, name = scope.partition(":")
    if kind == "org":
        return True
    value = {"key": f.key_id, "developer": f.developer, "team": f.team, "cost_center": f.cost_center}.get(kind)
    return value == name


def local_hour(rule: RoutingRule, f: TurnFacts) -> int:
    """The hour of the day (0-23, the rule's time zone) the turn started in."""
    return f.started_at.astimezone(zone(rule.timezone)).hour


def matches(rule: RoutingRule, f: TurnFacts, requested: Collection[str]) -> bool:
    """Whether the rule's predicate holds for a turn: scope, starting size, local start time, and a
    requested model among ``requested`` (the rule's ``models``, or the models it routed from)."""
    if not in_scope(rule.scope, f) or f.input_tokens >= rule.max_input_tokens:
        return False
    local = f.started_at.astimezone(zone(rule.timezone))
    return rule.in_hours(local.hour * 60 + local.minute) and f.model_requested in requested


def routed(rule: RoutingRule, f: TurnFacts, version_id: str) -> bool:
    """A turn the rule routed under the version."""
    return f.policy_version == version_id and f.routing_rule == rule.name


@dataclass(frozen=True, slots=True)
class Judged:
    """One affected segment's verdict."""

    segment: Segment
    baseline_n: int
    candidate_n: int
    verdict: Verdict
    estimate: Regression | None = None
    """None when there are too few turns to estimate anything."""
    needed: int = 0
    """With too few turns: how many more the short sides need."""


def judge(segment: Segment, baseline: list[float], candidate: list[float], *, tolerance: float,
          min_turns: int) -> Judged:
    """Compare the two samples: ``regressed`` when the regression's 95 % lower bound is past ``tolerance``
    (0.02 = 2 %), ``harmless`` when its upper bound is within it, ``unsure`` between, ``too_few`` below
    ``min_turns`` on a side."""
    b, c = len(baseline), len(candidate)
    if b < min_turns or c < min_turns:
        return Judged(segment, b, c, "too_few", needed=max(0, min_turns - b) + max(0, min_turns - c))
    est = regression(baseline, candidate)
    if not isinstance(est, Regression):  # min_turns is at least the bootstrap's minimum: not reached
        return Judged(segment, b, c, "too_few", needed=est.needed)
    verdict: Verdict = "regressed" if est.exceeds(tolerance) else "harmless" if est.within(tolerance) else "unsure"
    return Judged(segment, b, c, verdict, est)


def requested_models(rule: RoutingRule, candidates: Iterable[TurnFacts]) -> set[str]:
    """The requested models a rule applies to: its ``models``, or those it actually routed from."""
    if rule.models is not None:
        return set(rule.models)
    return {f.model_requested for f in candidates}


def rollback_reason(version_id: str, j: Judged, tolerance_pct: float) -> str:
    """The math in one sentence, recorded on the rollback version."""
    assert j.estimate is not None
    e = j.estimate
    rule = j.segment.rule
    return (f"guard: version {version_id}'s routing rule {rule.name} ({rule.scope}) made its turns score "
            f"{e.regression:.1%} worse (mean {e.candidate_mean:.3f} over {e.candidate_n} turns since, against "
            f"{e.baseline_mean:.3f} over {e.baseline_n} turns before; 95 % bounds {e.lower:.1%} to {e.upper:.1%}), "
            f"past the {tolerance_pct:g} % tolerance")
