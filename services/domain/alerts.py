"""What the alerter moves around: an alert (from an event, with its dedupe key) and the message
people read, which every channel renders in its own format. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from spendgate.domain.enforcement.scopes import scope_kind, split_scope
from spendgate.domain.events import (
    ForecastOverrun,
    PolicyRolledBack,
    ReconciliationGap,
    RetryLoopDetected,
    ThresholdCrossed,
)

AlertKind = Literal["alert", "downgrade", "pause", "forecast_overrun", "retry_loop", "digest", "test",
                    "reconciliation_gap", "policy_rollback"]
Severity = Literal["info", "warning", "error", "critical"]
Action = Literal["trigger", "resolve"]
AlertEvent = ThresholdCrossed | ForecastOverrun | RetryLoopDetected | ReconciliationGap | PolicyRolledBack


class Fact(msgspec.Struct, frozen=True):
    label: str
    value: str


class SessionLine(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    developer: str
    repo: str | None
    cost_micros: int
    requests: int


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A notification people can act on; stored with the alert so a replay re-sends the same text."""

    alert_id: str
    kind: AlertKind
    severity: Severity
    title: str
    summary: str
    """One line: who, how much of what budget, which stage."""
    facts: list[Fact] = msgspec.field(default_factory=list)
    sessions: list[SessionLine] = msgspec.field(default_factory=list)
    lines: list[str] = msgspec.field(default_factory=list)
    """Further paragraphs (the digest body)."""
    scope: str
    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None
    incident_key: str
    """Stable across redeliveries and stages of one scope and period (PagerDuty's dedup_key)."""
    resolves_at: datetime | None = None
    created_at: datetime
    occurred_at: datetime | None = None
    """When what is alerted on happened (a threshold crossing's ``crossed_at``); the alerter's delivery
    latency is measured from it (from ``created_at`` when None)."""


message_encoder = msgspec.json.Encoder()
message_decoder = msgspec.json.Decoder(Message)


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    dedup_key: str
    kind: AlertKind
    scope: str
    event: AlertEvent
    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None
    period: str | None = None

    def facts(self) -> dict[str, str | None]:
        """What routes match on."""
        return route_facts(self.kind, self.scope, developer=self.developer, team=self.team,
                           cost_center=self.cost_center, period=self.period)


def route_facts(stage: str, scope: str, *, developer: str | None, team: str | None, cost_center: str | None,
                period: str | None) -> dict[str, str | None]:
    """What alert routes match on, for an alert of ``stage`` about ``scope``: the alerter's routing and
    the proxy's pause message (who was alerted) build them here, so both name the same recipients."""
    return {"stage": stage, "scope": scope_kind(scope), "cost_center": cost_center, "team": team,
            "developer": developer, "period": period}


def scope_name(scope: str) -> tuple[str, str | None]:
    """``team:platform`` → ("team", "platform"); ``org`` → ("org", None); a per-model scope → its scope's."""
    kind, _, name = split_scope(scope)[0].partition(":")
    return kind, (name or None)


def alert_from_event(data: object) -> Alert | None:
    """The alert an event raises, or None for events that raise none (forecast updates, stage ok)."""
    if isinstance(data, ThresholdCrossed):
        if data.stage == "ok":
            return None
        kind, name = scope_name(data.scope)
        developer = data.developer or (name if kind == "developer" else None)
        team = data.team or (name if kind == "team" else None)
        return Alert(
            alert_id=data.crossing_id,
            dedup_key=f"crossing:{data.scope}:{data.period}:{data.period_start}:{data.threshold_pct}",
            kind=data.stage, scope=data.scope, event=data, developer=developer, team=team,
            cost_center=data.cost_center, period=data.period,
        )
    if isinstance(data, ForecastOverrun):
        kind, name = scope_name(data.scope)
        return Alert(
            alert_id=data.overrun_id, dedup_key=f"forecast_overrun:{data.scope}:{data.month}",
            kind="forecast_overrun", scope=data.scope, event=data,
            team=data.team or (name if kind == "team" else None), cost_center=data.cost_center,
            developer=name if kind == "developer" else None, period="month",
        )
    if isinstance(data, RetryLoopDetected):
        return Alert(
            alert_id=data.detection_id, dedup_key=f"retry_loop:{data.detection_id}", kind="retry_loop",
            scope=f"key:{data.key_id}", event=data, developer=data.developer, team=data.team,
            cost_center=data.cost_center,
        )
    if isinstance(data, ReconciliationGap):
        return Alert(
            alert_id=data.gap_id, dedup_key=f"reconciliation_gap:{data.provider}:{data.day}",
            kind="reconciliation_gap", scope="org", event=data, period="day",
        )
    if isinstance(data, PolicyRolledBack):
        kind, name = scope_name(data.scope)
        return Alert(
            alert_id=data.rollback_id, dedup_key=f"policy_rollback:{data.version_id}", kind="policy_rollback",
            scope=data.scope, event=data, developer=approver_name(data.approver),
            team=name if kind == "team" else None, cost_center=name if kind == "cost_center" else None,
        )
    return None


def approver_name(approver: str) -> str:
    """The person behind a version's approver (``oidc:ann`` → ``ann``): a route's ``developer`` target
    mails them (``developer_email``), and ``match: {developer: ann}`` picks their rollbacks."""
    return approver.rpartition(":")[2] or approver
