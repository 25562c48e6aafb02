"""The nightly forecast report: what goes in it (teams by risk, charts, drivers) and the email.

``build_report`` reads (forecasts and the usage behind them); ``report_html``, ``report_text`` and
``report_message`` only render.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from spendgate.core.config import Settings
from spendgate.core.db import Conn
from spendgate.domain.periods import PeriodKind, period_of
from spendgate.forecaster.engine import ScopeForecast, forecast_all
from spendgate.forecaster.render import report_html, report_text
from spendgate.store.usage import store as usage

DRIVER_WINDOW_DAYS = 7


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


@dataclass(frozen=True, slots=True)
class TeamSection:
    team: str
    result: ScopeForecast
    chart_png: bytes
    developers: list[DeveloperDriver]
    sessions: list[SessionDriver]

    @property
    def risk(self) -> float:
        """P50 of month-end spend as a share of the budget."""
        budget = self.result.forecast.budget_micros or 1
        return self.result.forecast.p50_micros / budget


@dataclass(frozen=True, slots=True)
class Report:
    generated_at: datetime
    month: date
    teams: list[TeamSection]
    """Highest risk first."""


async def _drivers(conn: Conn, team: str, window_end: datetime, top: int) -> tuple[list[DeveloperDriver],
                                                                                   list[SessionDriver]]:
    split = window_end - timedelta(days=DRIVER_WINDOW_DAYS)
    begin = split - timedelta(days=DRIVER_WINDOW_DAYS)
    devs = await usage.developer_trends(conn, team, begin=begin, split=split, end=window_end, limit=top)
    sessions = await usage.team_sessions(conn, team, start=split, end=window_end, limit=top)
    return [DeveloperDriver(*d) for d in devs], [SessionDriver(*s) for s in sessions]


async def build_report(conn: Conn, settings: Settings, now: datetime, *, audit_day: date | None = None) -> Report:
    """Forecast every team with a monthly budget and gather what drives each; charts included."""
    results = await forecast_all(conn, settings.forecast, now, audit_day=audit_day)
    teams = [r for r in results if r.scope.scope.startswith("team:")]
    sections: list[TeamSection] = []
    for r in teams:
        name = r.scope.scope.removeprefix("team:")
        window_end = period_of(PeriodKind.DAY, r.forecast.as_of, r.scope.timezone).ends_at
        window_end = min(window_end, now) if audit_day is None else window_end
        devs, sessions = await _drivers(conn, name, window_end, settings.forecast.report_top)
        from spendgate.forecaster.chart import (
            burndown_png,  # matplotlib costs a second to import: only when a report is drawn
        )

        png = await asyncio.to_thread(burndown_png, f"team {name}", r.series, r.forecast)
        sections.append(TeamSection(name, r, png, devs, sessions))
    sections.sort(key=lambda s: (-s.risk, -s.result.forecast.p90_micros, s.team))
    month = teams[0].forecast.month if teams else (audit_day or now.date()).replace(day=1)
    return Report(now, month, sections)


def report_message(report: Report, recipients: list[str], sender: str) -> EmailMessage:
    """The email: a text part and an HTML part whose charts are inline PNG images (cid)."""
    msg = EmailMessage()
    at_risk = sum(1 for t in report.teams if t.risk >= 1.0)
    msg["Subject"] = (f"spendgate forecast {report.month:%B %Y}: "
                      f"{at_risk} of {len(report.teams)} teams over budget at P50")
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    cids = {t.team: make_msgid(domain="spendgate.forecast") for t in report.teams}
    msg.set_content(report_text(report))
    msg.add_alternative(report_html(report, {k: f"cid:{v[1:-1]}" for k, v in cids.items()}), subtype="html")
    html_part = msg.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    for team in report.teams:
        html_part.add_related(team.chart_png, maintype="image", subtype="png", cid=cids[team.team],
                              filename=f"{team.team}.png")
    return msg
