"""Segments of turns, and what a cheaper model would do to each: the saving and the quality regression. Pure.

A segment is the turns of one team, asking for one model, in one input-size bucket, one hour window of
the team's day, one repo and one tool-use pattern (``docs/policy.md``, "Segments"):

- input size (the turn's first request's input tokens): under 2K, 2K-8K, 8K-32K, 32K and more;
- hours, local time in the team's budget's time zone (UTC without one): ``day`` 09:00-17:00, ``night``
  17:00-09:00, by the turn's start;
- tool use: ``none`` (no tool output came back), ``ok`` (tools ran, none failed, no retries), ``failing``
  (a tool failed or a request repeated a failing call).

For a segment and its candidate model (the next cheaper step of the requested model's cascade), the
**saving** is what the segment's requests that ran on the requested model cost, minus what the same
tokens cost at the candidate's prices (:func:`spendgate.domain.pricing.cost_micros`). The **regression**
is :func:`spendgate.domain.learning.regression` with, as the baseline, the turns that ran on the requested
model (the exploration's control arm alone when it has enough turns) and, as the candidate, the turns the
exploration sent to the candidate at random; with no explored turns, the turns budget downgrades sent
there, marked biased (a downgrade happens when a budget runs out, so those turns are not a fair draw).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from spendgate.domain.learning import MIN_SAMPLE, Regression, TooFew, regression
from spendgate.domain.outcomes import ExternalScore, TurnFacts, quality
from spendgate.domain.pricing import ModelPrice, cost_micros

SIZE_EDGES = (2_000, 8_000, 32_000)
"""Input-size bucket edges in tokens: under 2K, 2K-8K, 8K-32K, 32K and more."""
DAY_HOURS = (9 * 60, 17 * 60)
"""The ``day`` window in minutes of the local day (09:00-17:00); ``night`` is the rest."""
ToolPattern = Literal["none", "ok", "failing"]
Role = Literal["control", "baseline", "explored", "downgraded"]
BIASED = "biased: from budget downgrades"


@dataclass(frozen=True, slots=True)
class OwnModelUsage:
    """A turn's requests that ran on the model they asked for: what a cheaper route would reprice."""

    requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One turn as the outcomes store reads it for segments."""

    facts: TurnFacts
    external: ExternalScore | None
    route_reason: str
    """The first request's route reason (``requested``, ``explore``, ``downgrade``, ``routing_rule``, …)."""
    own: OwnModelUsage


@dataclass(frozen=True, slots=True)
class SegmentTurn:
    """One turn with everything a segment needs, its quality scored and its start in local time."""

    team: str
    repo: str
    model_requested: str
    model_used: str
    input_tokens: int
    local_minute: int
    tools: ToolPattern
    route_reason: str
    arm: str | None
    score: float
    own: OwnModelUsage

    @property
    def size(self) -> str:
        return size_bucket(self.input_tokens)

    @property
    def hours(self) -> str:
        return "day" if DAY_HOURS[0] <= self.local_minute < DAY_HOURS[1] else "night"

    def role(self, candidate: str) -> Role | None:
        """Which side of the comparison with ``candidate`` this turn is on, if any."""
        if self.model_used == candidate and self.model_requested != candidate:
            if self.arm == "explore" or self.route_reason == "explore":
                return "explored"
            return "downgraded" if self.route_reason == "downgrade" else None
        if self.model_used == self.model_requested and self.route_reason == "requested":
            return "control" if self.arm == "control" else "baseline"
        return None


def size_bucket(tokens: int) -> str:
    low = 0
    for edge in SIZE_EDGES:
        if tokens < edge:
            return f"<{edge // 1000}K" if low == 0 else f"{low // 1000}K-{edge // 1000}K"
        low = edge
    return f">={low // 1000}K"


def tool_pattern(f: TurnFacts) -> ToolPattern:
    if f.tool_failures > 0 or f.retry_requests > 0:
        return "failing"
    return "ok" if f.tool_calls > 0 else "none"


def segment_turn(row: SegmentRow, timezone_of: Callable[[str], object]) -> SegmentTurn:
    """``row`` as a segment turn: its quality (the external score where present), its local start minute
    in ``timezone_of(team)`` (a ``ZoneInfo``)."""
    f = row.facts
    local = f.started_at.astimezone(timezone_of(f.team))  # type: ignore[arg-type]
    score, _ = quality(f, row.external)
    return SegmentTurn(team=f.team, repo=f.repo or "", model_requested=f.model_requested, model_used=f.model_used,
                       input_tokens=f.input_tokens, local_minute=local.hour * 60 + local.minute,
                       tools=tool_pattern(f), route_reason=row.route_reason, arm=f.experiment_arm, score=score,
                       own=row.own)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What moving a set of turns to ``candidate`` would save, and do to their quality."""

    candidate: str
    turns: int
    """Turns in the set (every role)."""
    baseline_n: int
    explored_n: int
    downgraded_n: int
    control_only: bool
    """The baseline is the exploration's control arm alone (it had enough turns)."""
    saving_micros: int
    """The set's requests on the requested model, repriced at the candidate's prices: cost minus new cost."""
    cost_micros: int
    """What those requests cost."""
    result: Regression | TooFew
    saving_error_micros: int = 0
    """The saving's 95 % sampling error: 1.96 × √(Σ per-turn saving²). Turns arrive as a Poisson process,
    so a window as long as this one, under the same traffic, saves ``saving_micros`` give or take this
    (``docs/policy.md``, "The saving and its error"). It says nothing about traffic that changes."""

    @property
    def biased(self) -> bool:
        """The candidate side comes from budget downgrades, not exploration."""
        return self.explored_n == 0 and self.downgraded_n > 0

    @property
    def candidate_n(self) -> int:
        return self.downgraded_n if self.biased else self.explored_n


def estimate(turns: Iterable[SegmentTurn], candidate: str, price: ModelPrice, *, rounds: int = 2_000) -> Estimate:
    """The saving and the regression of moving ``turns`` to ``candidate`` (priced ``price``)."""
    control: list[float] = []
    baseline: list[float] = []
    explored: list[float] = []
    downgraded: list[float] = []
    sides = {"control": control, "baseline": baseline, "explored": explored, "downgraded": downgraded}
    n = saving = cost = squares = 0
    for t in turns:
        n += 1
        role = t.role(candidate)
        if role is not None:
            sides[role].append(t.score)
        if t.own.requests and t.model_requested != candidate:
            o = t.own
            cost += o.cost_micros
            turn_saving = o.cost_micros - cost_micros(
                price, input_tokens=o.input_tokens, cached_tokens=o.cached_tokens, output_tokens=o.output_tokens,
                cache_write_5m_tokens=o.cache_write_5m_tokens, cache_write_1h_tokens=o.cache_write_1h_tokens)
            saving += turn_saving
            squares += turn_saving * turn_saving
    control_only = len(control) >= MIN_SAMPLE
    base = control if control_only else control + baseline
    cand = explored or downgraded
    result = regression(base, cand, rounds=rounds) if cand else TooFew(len(base), 0)
    return Estimate(candidate=candidate, turns=n, baseline_n=len(base), explored_n=len(explored),
                    downgraded_n=len(downgraded), control_only=control_only, saving_micros=saving, cost_micros=cost,
                    result=result, saving_error_micros=math.isqrt(squares) * 196 // 100)


@dataclass(frozen=True, slots=True)
class SegmentKey:
    team: str
    model: str
    size: str
    hours: str
    repo: str
    tools: str


def segment_keys(turns: Sequence[SegmentTurn]) -> dict[SegmentKey, list[SegmentTurn]]:
    """The turns grouped by segment."""
    groups: dict[SegmentKey, list[SegmentTurn]] = {}
    for t in turns:
        key = SegmentKey(t.team, t.model_requested, t.size, t.hours, t.repo, t.tools)
        groups.setdefault(key, []).append(t)
    return groups
