"""Stages of a budget: ok < alert < downgrade < pause, by spent / budget. Pure: integer arithmetic only."""

from __future__ import annotations

from enum import IntEnum

from spendgate.domain.enforcement.policy import Thresholds
from spendgate.domain.events import Stage


class StageLevel(IntEnum):
    """Stages ordered by severity, so the most severe of several is ``max(...)``."""

    OK = 0
    ALERT = 1
    DOWNGRADE = 2
    PAUSE = 3

    @property
    def label(self) -> Stage:
        return _LABELS[self]


_LABELS: dict[StageLevel, Stage] = {
    StageLevel.OK: "ok", StageLevel.ALERT: "alert", StageLevel.DOWNGRADE: "downgrade", StageLevel.PAUSE: "pause",
}


def reached(spent_micros: int, budget_micros: int, pct: int) -> bool:
    """``spent / budget >= pct %`` without a float: ``spent * 100 >= budget * pct``."""
    return spent_micros * 100 >= budget_micros * pct


def stage_for(spent_micros: int, budget_micros: int, thresholds: Thresholds) -> StageLevel:
    """The stage a period is in when ``spent_micros`` of ``budget_micros`` is used."""
    if reached(spent_micros, budget_micros, thresholds.pause_pct):
        return StageLevel.PAUSE
    if reached(spent_micros, budget_micros, thresholds.downgrade_pct):
        return StageLevel.DOWNGRADE
    if reached(spent_micros, budget_micros, thresholds.alert_pct):
        return StageLevel.ALERT
    return StageLevel.OK


def crossed(before: StageLevel, after: StageLevel, thresholds: Thresholds) -> list[tuple[int, StageLevel]]:
    """The threshold crossings of a balance going from stage ``before`` to stage ``after``: each
    ``(threshold_pct, stage)``, in rising order; none when ``after <= before``.

    Equal thresholds are one crossing, at the most severe of their stages: with ``100, 100, 100``
    (a hard cap) reaching 100 % is one crossing, ``pause``, the stage :func:`stage_for` then reports.
    """
    pcts = (thresholds.alert_pct, thresholds.downgrade_pct, thresholds.pause_pct)
    return [(pcts[i], StageLevel(i + 1)) for i in range(before, after) if i + 1 == after or pcts[i + 1] != pcts[i]]


def headroom_micros(spent_micros: int, budget_micros: int, pct: int) -> int:
    """How much more can be spent before ``pct`` % of the budget is reached (never negative)."""
    limit = -(-budget_micros * pct // 100)  # ceil: the first spend that reaches pct
    return max(0, limit - spent_micros)
