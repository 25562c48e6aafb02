"""The nightly forecast report: what goes in it and the email. Every scope the forecaster forecasts (every
scope with a monthly budget) gets a section with its burndown chart, grouped by kind: teams by risk
first, with the developers and sessions that drive them, then the org, developers and virtual keys.

``build_report`` reads (forecasts and the usage behind them); ``report_html``, ``report_text`` and
``report_message`` only render.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from spendgate.core.config import Settings
from spendgate.core.db import Conn
from spendgate.domain.enforcement.scopes import scope_kind, scope_label, split_scope
from spendgate.domain.periods import PeriodKind, period_of
from spendgate.forecaster.chart import Chart, ChartFormat, burndown, chart_id
from spendgate.forecaster.engine import ScopeForecast, forecast_all
from spendgate.forecaster.render import report_html, report_text
from spendgate.store.usage import store as usage

DRIVER_WINDOW_DAYS = 7
FOR_MAIL: tuple[ChartFormat, ...] = ("png",)
"""Chart formats :func:`report_message` needs."""


@dataclass(frozen=True, slots=True)
class DeveloperDriver:
    developer: str
    recent_micros: int
    before_micros: int

    @property
    def change_micros(self) -> int:
        return self.recent_micros - self.before_micros


@dataclass(frozen=True, slots=True)
class SessionDriver:
    session_id: str
    developer: str
    repo: str | None
    cost_micros: int
    requests: int


GROUPS: tuple[tuple[str, str], ...] = (("team", "Teams"), ("org", "The organisation"),
                                      ("cost_center", "Cost centers"), ("developer", "Developers"),
                                      ("key", "Virtual keys"))
"""Report order: kind of scope, heading. Teams first, with what drives them."""


@dataclass(frozen=True, slots=True)
class ScopeSection:
    result: ScopeForecast
    chart: Chart
    developers: list[DeveloperDriver] = field(default_factory=list)
    """Teams only: the developers whose spend changed most in the last week."""
    sessions: list[SessionDriver] = field(default_factory=list)
    """Teams only: the costliest sessions of the last week."""

    @property
    def scope(self) -> str:
        return self.result.scope.scope

    @property
    def kind(self) -> str:
        """``team``, ``cost_center``, ``developer``, ``key`` or ``org`` (a per-model budget's: its scope's)."""
        return scope_kind(self.scope)

    @property
    def name(self) -> str:
        base, model = split_scope(self.scope)
        name = base.partition(":")[2] or base
        return name if model is None else f"{name} on {model}"

    @property
    def title(self) -> str:
        return scope_label(self.scope)

    @property
    def risk(self) -> float:
        """P50 of month-end spend as a share of the budget."""
        budget = self.result.forecast.budget_micros or 1
        return self.result.forecast.p50_micros / budget


@dataclass(frozen=True, slots=True)
class Report:
    generated_at: datetime
    month: date
    sections: list[ScopeSection]
    """In :data:`GROUPS` order, highest risk first within each group."""

    def groups(self) -> list[tuple[str, str, list[ScopeSection]]]:
        """(kind, heading, sections) of every group that has a section."""
        out = [(kind, heading, [s for s in self.sections if s.kind == kind]) for kind, heading in GROUPS]
        return [g for g in out if g[2]]


def report_order(s: ScopeSection) -> tuple[int, float, int, str]:
    kinds = [k for k, _ in GROUPS]
    return (kinds.index(s.kind) if s.kind in kinds else len(kinds), -s.risk, -s.result.forecast.p90_micros, s.scope)


async def _drivers(conn: Conn, team: str, window_end: datetime, top: int) -> tuple[list[DeveloperDriver],
                                                                                   list[SessionDriver]]:
    split = window_end - timedelta(days=DRIVER_WINDOW_DAYS)
    begin = split - timedelta(days=DRIVER_WINDOW_DAYS)
    devs = await usage.developer_trends(conn, team, begin=begin, split=split, end=window_end, limit=top)
    sessions = await usage.team_sessions(conn, team, start=split, end=window_end, limit=top)
    return [DeveloperDriver(*d) for d in devs], [SessionDriver(*s) for s in sessions]


async def build_report(conn: Conn, settings: Settings, now: datetime, *, formats: Collection[ChartFormat],
                       audit_day: date | None = None) -> Report:
    """Forecast every scope with a monthly budget, with a chart each (in ``formats``: png for mail, svg for
    a page, none for text) and, for teams, what drives them."""
    every = await forecast_all(conn, settings.forecast, now, audit_day=audit_day,
                               default_timezone=settings.default_timezone)
    results = [r for r in every if r.forecast.budget_micros is not None]  # the report is about budgets
    sections: list[ScopeSection] = []
    for r in results:
        devs: list[DeveloperDriver] = []
        sessions: list[SessionDriver] = []
        if r.scope.scope.startswith("team:"):
            window_end = period_of(PeriodKind.DAY, r.forecast.as_of, r.scope.timezone).ends_at
            window_end = min(window_end, now) if audit_day is None else window_end
            devs, sessions = await _drivers(conn, r.scope.scope.removeprefix("team:"), window_end,
                                            settings.forecast.report_top)
        chart = Chart()
        if formats:
            chart = await asyncio.to_thread(burndown, r.scope.scope, scope_label(r.scope.scope), r.series,
                                            r.forecast, formats=formats)
        sections.append(ScopeSection(r, chart, devs, sessions))
    sections.sort(key=report_order)
    month = results[0].forecast.month if results else (audit_day or now.date()).replace(day=1)
    return Report(now, month, sections)


def report_message(report: Report, recipients: list[str], sender: str) -> EmailMessage:
    """The email: a text part and an HTML part whose charts are inline PNG images (cid).

    PNG, not SVG: most mail clients (Gmail, Outlook) do not show SVG images.
    """
    msg = EmailMessage()
    at_risk = sum(1 for s in report.sections if s.risk >= 1.0)
    msg["Subject"] = (f"spendgate forecast {report.month:%B %Y}: "
                      f"{at_risk} of {len(report.sections)} budgets over at P50")
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    cids = {s.scope: make_msgid(domain="spendgate.forecast") for s in report.sections}
    msg.set_content(report_text(report))
    msg.add_alternative(report_html(report, {k: f"cid:{v[1:-1]}" for k, v in cids.items()}), subtype="html")
    html_part = msg.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    for s in report.sections:
        if s.chart.png is None:
            raise ValueError("the mail needs PNG charts: build the report with formats including 'png'")
        html_part.add_related(s.chart.png, maintype="image", subtype="png", cid=cids[s.scope],
                              filename=f"{chart_id(s.scope)}.png")
    return msg
