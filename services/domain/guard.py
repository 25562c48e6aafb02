"""The guard's judgement: which parts of a live policy version changed, which turns each part touched
before and since, and whether they got worse. Pure: no I/O.

A version's **affected segments** (:func:`~spendgate.domain.guard_segments.affected`) are the parts of its
document that differ from its parent's: routing rules, the downgrade size limit, a budget's stage
thresholds or amounts, retry caps, the exploration block. For each, the *candidate* turns are those the
change touched under the version and the *baseline* turns the same kind of turns before it went live
(for exploration: its control arm since), started in an hour of the day in which the candidates
started (:meth:`Segment.hour`: a morning of new traffic is compared with mornings, not with the quiet
nights before; the weekday mix is not matched, the baseline's week holds every weekday once). For a
routing rule the baseline is the turns of the days before that the rule's predicate matches (its scope,
the turn's starting input size under ``max_input_tokens``, its local start time in ``hours``, and the
requested models it routes from). Their quality scores are compared with
:func:`spendgate.domain.learning.regression` (docs/policy.md, "The guard").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spendgate.domain.enforcement.routing import RoutingRule
from spendgate.domain.guard_segments import (
    Change,
    Kind,
    Segment,
    affected,
    in_scope,
    matches,
    requested_models,
    routed,
)
from spendgate.domain.learning import Regression, regression
from spendgate.domain.outcomes import TurnFacts
from spendgate.domain.periods import zone

__all__ = ["GUARD_APPROVER", "Change", "Judged", "Kind", "Segment", "Verdict", "affected", "in_scope", "judge",
           "local_hour", "matches", "requested_models", "rollback_reason", "routed"]

Verdict = Literal["regressed", "harmless", "unsure", "too_few"]
GUARD_APPROVER = "spendgate-guard"
MAX_SUMMARY_CHARS = 200
"""The change's sentence in a rollback reason is cut to this (the reason holds at most 500 characters)."""


def local_hour(rule: RoutingRule, f: TurnFacts) -> int:
    """The hour of the day (0-23, the rule's time zone) the turn started in."""
    return f.started_at.astimezone(zone(rule.timezone)).hour


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


def rollback_reason(version_id: str, j: Judged, tolerance_pct: float) -> str:
    """The math in one sentence, recorded on the rollback version."""
    assert j.estimate is not None
    e = j.estimate
    before = "turns before" if j.segment.baseline_before else "turns of its control arm"
    return (f"guard: version {version_id}'s {what(j.segment)} made its turns score "
            f"{e.regression:.1%} worse (mean {e.candidate_mean:.3f} over {e.candidate_n} turns since, against "
            f"{e.baseline_mean:.3f} over {e.baseline_n} {before}; 95 % bounds {e.lower:.1%} to {e.upper:.1%}), "
            f"past the {tolerance_pct:g} % tolerance")


def what(segment: Segment) -> str:
    """The change in words, short enough for a rollback reason: ``routing rule small (team:platform)``, or
    the segment's summary (``downgrade size limit 8,000 → 32,000 input tokens``)."""
    if segment.rule is not None:
        return f"routing rule {segment.rule.name} ({segment.rule.scope})"
    text = segment.summary
    return f"change ({text if len(text) <= MAX_SUMMARY_CHARS else text[:MAX_SUMMARY_CHARS - 1] + '…'})"
