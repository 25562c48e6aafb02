"""Stages of a budget: ok < alert < downgrade < pause, by spent / budget. Pure: integer arithmetic only.

The budget's three thresholds map to stages by position: the first (80 % by default) is ``alert``,
the second (95 %) ``downgrade``, the third (110 %) ``pause``. A balance's stage is the number of
thresholds it has reached; a threshold crossing is the balance reaching one. The proxy's decision
(:func:`stage_for`), the ledger's crossings and the dry-run's alerts (:func:`crossed`) all use
these, so they cannot disagree on which stage a threshold means.
"""

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


def stage_for(spent_micros: int, budget_micros: int, thresholds: Thresholds) -> StageLevel:
    """The stage a period is in when ``spent_micros`` of ``budget_micros`` is used: how many of its
    (rising) thresholds the spend has reached: ``spent / budget >= pct %`` compared in integers as
    ``spent * 100 >= budget * pct``, so no float touches a balance."""
    spent = spent_micros * 100  # lowest threshold first: most balances are below it
    if spent < budget_micros * thresholds.alert_pct:
        return StageLevel.OK
    if spent < budget_micros * thresholds.downgrade_pct:
        return StageLevel.ALERT
    if spent < budget_micros * thresholds.pause_pct:
        return StageLevel.DOWNGRADE
    return StageLevel.PAUSE


def crossed(before: StageLevel, after: StageLevel, thresholds: Thresholds) -> list[tuple[int, StageLevel]]:
    """The threshold crossings of a balance going from stage ``before`` to stage ``after``: each
    ``(threshold_pct, stage)``, in rising order; none when ``after <= before``.

    Equal thresholds are one crossing, at the most severe of their stages: with ``100, 100, 100``
    (a hard cap) reaching 100 % is one crossing, ``pause``, the stage :func:`stage_for` then reports.
    """
    pcts = (thresholds.alert_pct, thresholds.downgrade_pct, thresholds.pause_pct)
    return [(pcts[i], StageLevel(i + 1)) for i in range(before, after) if i + 1 == after or pcts[i + 1] != pcts[i]]
