"""The optimiser's search for routing rules: which turns of a team can move to the cheaper model. Pure.

For every team and requested model with a cheaper step in its cascade, each candidate rule "turns under N
input tokens, between H1 and H2 local time, go to the cheaper model" is a union of adjacent segments: N
runs over the size edges (:data:`~spendgate.domain.segments.SIZE_EDGES`: under 2K is one bucket, under 8K
two, under 32K three) and the hours over the day window, the night window and the whole day. A rule
cannot name a repo or a tool pattern (the proxy does not know a turn's tools before it runs), so each
candidate is measured on every turn it would route. Among the candidates whose regression's 95 % upper
bound is within the tolerance and that save something, the one that saves the most wins (ties: the one
covering more turns). ``docs/policy.md``, "The optimiser".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from spendgate.domain.enforcement.routing import RoutingRule
from spendgate.domain.learning import Regression, TooFew
from spendgate.domain.pricing import ModelPrice
from spendgate.domain.segments import DAY_HOURS, SIZE_EDGES, Estimate, SegmentTurn, estimate

HOUR_CHOICES: tuple[tuple[int, int] | None, ...] = (DAY_HOURS, (DAY_HOURS[1], DAY_HOURS[0]), None)
"""The day window, the night window (wrapping midnight), all day."""
Verdict = Literal["propose", "needs_data", "harmful", "uncertain", "no_saving"]


@dataclass(frozen=True, slots=True)
class RuleCandidate:
    rule: RoutingRule
    team: str
    model: str
    estimate: Estimate

    def covers(self, t: SegmentTurn) -> bool:
        return t.input_tokens < self.rule.max_input_tokens and self.rule.in_hours(t.local_minute)


@dataclass(frozen=True, slots=True)
class TeamVerdict:
    """What the search found for one team's turns asking for one model."""

    team: str
    model: str
    candidate_model: str
    verdict: Verdict
    chosen: RuleCandidate | None
    """The rule to propose (``propose``), else None."""
    widest: RuleCandidate
    """The rule covering the most turns (all day, under the largest edge): the evidence for the others."""
    more_turns: int = 0
    """``needs_data`` / ``uncertain``: about how many more candidate-side (explored) turns would settle it."""


def rule_name(team: str, model: str, limit: int, hours: tuple[int, int] | None) -> str:
    when = "all-day" if hours is None else ("day" if hours == DAY_HOURS else "night")
    raw = f"suggest-{team}-{model}-under-{limit // 1000}k-{when}"
    clean = "".join(c if c.isalnum() or c in "._-" else "-" for c in raw)
    return clean[:64]


def candidates(team: str, model: str, cheaper: str, timezone: str, turns: Sequence[SegmentTurn],
               price: ModelPrice) -> list[RuleCandidate]:
    out = []
    for limit in SIZE_EDGES:
        for hours in HOUR_CHOICES:
            rule = RoutingRule(name=rule_name(team, model, limit, hours), scope=f"team:{team}",
                               max_input_tokens=limit, model=cheaper, timezone=timezone, hours=hours,
                               models=(model,))
            covered = [t for t in turns if t.input_tokens < limit and rule.in_hours(t.local_minute)]
            out.append(RuleCandidate(rule, team, model, estimate(covered, cheaper, price)))
    return out


def decide(team: str, model: str, cheaper: str, found: Sequence[RuleCandidate], tolerance: float) -> TeamVerdict:
    """The best harmless candidate, or why there is none."""
    widest = max(found, key=lambda c: (c.estimate.turns, c.rule.max_input_tokens, c.rule.hours is None))
    harmless = [c for c in found if isinstance(c.estimate.result, Regression)
                and c.estimate.result.within(tolerance) and c.estimate.saving_micros > 0]
    if harmless:
        best = max(harmless, key=lambda c: (c.estimate.saving_micros, c.estimate.turns))
        return TeamVerdict(team, model, cheaper, "propose", best, widest)
    result = widest.estimate.result
    if isinstance(result, TooFew):
        return TeamVerdict(team, model, cheaper, "needs_data", None, widest, more_turns=result.needed)
    if result.exceeds(tolerance) or result.regression > tolerance:
        return TeamVerdict(team, model, cheaper, "harmful", None, widest)
    if widest.estimate.saving_micros <= 0:
        return TeamVerdict(team, model, cheaper, "no_saving", None, widest)
    return TeamVerdict(team, model, cheaper, "uncertain", None, widest, more_turns=_more_for_bound(result, tolerance))


def _more_for_bound(r: Regression, tolerance: float) -> int:
    """About how many more candidate turns bring the upper bound under ``tolerance``, if the regression
    stays where it is: the bound's distance from the estimate shrinks as one over the square root of n."""
    width, room = r.upper - r.regression, tolerance - r.regression
    if room <= 0 or width <= 0:
        return 0
    return max(1, math.ceil(r.candidate_n * ((width / room) ** 2 - 1)))


def search(groups: Mapping[tuple[str, str], Sequence[SegmentTurn]], cheaper_of: Callable[[str, str], str | None],
           price_of: Callable[[str], ModelPrice | None], timezone_of: Callable[[str], str],
           tolerance: float) -> list[TeamVerdict]:
    """One verdict per (team, requested model) group whose model has a cheaper, priced step."""
    out = []
    for (team, model), turns in sorted(groups.items()):
        cheaper = cheaper_of(team, model)
        price = price_of(cheaper) if cheaper else None
        if cheaper is None or price is None:
            continue
        found = candidates(team, model, cheaper, timezone_of(team), turns, price)
        out.append(decide(team, model, cheaper, found, tolerance))
    return out
