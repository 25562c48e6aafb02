"""Messages people can act on: who, how much of what budget, the stage and what it does to requests
now, when it resets, the top sessions of the period with their repos, and the forecast if any."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import msgspec

from spendgate.alerter.forecasts import FreshForecast, fresh_forecast, latest_forecast
from spendgate.alerter.links import console_link
from spendgate.core.db import Conn
from spendgate.domain.alerts import Alert, Fact, Message, SessionLine, Severity, scope_name
from spendgate.domain.events import (
    ForecastOverrun,
    PolicyRolledBack,
    ReconciliationGap,
    RetryLoopDetected,
    ThresholdCrossed,
)
from spendgate.domain.money import format_usd
from spendgate.domain.periods import PeriodKind, local_date, period_containing, period_of
from spendgate.store.balances import store as balances
from spendgate.store.budgets.store import budgets_of
from spendgate.store.usage import store as usage

SEVERITY: dict[str, Severity] = {
    "alert": "warning", "downgrade": "error", "pause": "critical", "forecast_overrun": "warning",
    "retry_loop": "error", "digest": "info", "test": "info", "reconciliation_gap": "warning",
    "policy_rollback": "error",
}


def who(scope: str, developer: str | None, team: str | None, cost_center: str | None) -> str:
    kind, name = scope_name(scope)
    if kind == "org":
        return "the whole organisation"
    label = {"key": f"key {name}", "developer": f"developer {name}", "team": f"team {name}"}.get(kind, scope)
    extra = []
    if developer and kind == "key":
        extra.append(f"developer {developer}")
    if team and kind != "team":
        extra.append(f"team {team}")
    if cost_center:
        extra.append(f"cost center {cost_center}")
    return f"{label} ({', '.join(extra)})" if extra else label


def when(instant: datetime, now: datetime) -> str:
    left = instant - now
    hours = int(left.total_seconds() // 3600)
    rel = f"in {hours // 24} days" if hours >= 48 else f"in {max(hours, 0)} hours"
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({rel})"


def effect(stage: str, *, at_pause: str, small_turn_tokens: int) -> str:
    if stage == "alert":
        return "Nothing yet: requests pass unchanged. This is the early warning."
    if stage == "downgrade":
        return (f"Turns under {small_turn_tokens:,} input tokens now go to a cheaper model; larger turns "
                "keep the requested model until the pause threshold.")
    if at_pause == "cheapest":
        return "Every request is now forced onto the cheapest model until the budget resets."
    if at_pause == "step_down":
        return ("Every request, large turns included, now goes one step down its model's cascade until the "
                "budget resets; models with no cheaper step are refused.")
    return "Requests are refused (HTTP 429, budget exhausted) until the budget resets or is raised."


def forecast_fact(f: FreshForecast) -> Fact:
    """The message's forecast line (see :mod:`spendgate.alerter.forecasts`): what it says and on what basis."""
    spent = format_usd(f.spent_micros)
    if f.basis == "pace" and f.spent_micros == 0:
        return Fact("Forecast", "nothing spent this month yet, and no forecast of it")
    if f.basis == "pace":
        return Fact("Forecast", f"month end about {format_usd(f.p50_micros)} at this month's pace so far "
                                f"({spent} spent); no forecast includes this spend yet")
    assert f.p10_micros is not None and f.p90_micros is not None
    band = (f"month end P50 {format_usd(f.p50_micros)} (P10 {format_usd(f.p10_micros)} – "
            f"P90 {format_usd(f.p90_micros)})")
    if f.basis == "rebased":
        return Fact("Forecast", f"{band}: the forecast of {f.as_of} re-based on the {spent} spent so far this month")
    text = f"{band}, as of {f.as_of}"
    if f.p50_crosses_on is not None:
        text += f"; P50 crosses the budget on {f.p50_crosses_on}"
    return Fact("Forecast", text)


async def month_forecast(conn: Conn, scope: str, tz: str, now: datetime, *, spent_at_least: int = 0) -> FreshForecast:
    """The fresh month-end forecast of ``scope`` at ``now``: from the month's balance (or ``spent_at_least``,
    what the event itself says was spent, should the balance lag) and the latest forecast."""
    month = period_containing(PeriodKind.MONTH, now, tz)
    spent = max(await balances.spent_micros(conn, scope, PeriodKind.MONTH, month.start), spent_at_least)
    return fresh_forecast(await latest_forecast(conn, scope), spent_micros=spent, month=month, now=now)


def _console_fact(console_url: str, alert: Alert, first_day: date, ends_at: datetime, tz: str) -> Fact:
    last_day = local_date(ends_at - timedelta(microseconds=1), tz)
    return Fact("Console", console_link(console_url, alert.scope, developer=alert.developer, first_day=first_day,
                                        last_day=last_day, timezone=tz))


async def build_message(conn: Conn, alert: Alert, *, now: datetime, top_n: int,
                        small_turn_tokens: int, default_timezone: str, console_url: str | None = None) -> Message:
    """The message of ``alert``; with ``console_url`` (``console_links.public_url``) a crossing or a forecast
    overrun links to its scope's console page for the period concerned."""
    budget = next(iter(await budgets_of(conn, [alert.scope])), None)
    tz = budget.timezone if budget else default_timezone
    at_pause = budget.at_pause if budget else "refuse"
    base = Message(alert_id=alert.alert_id, kind=alert.kind, severity=SEVERITY[alert.kind], title="",
                   summary="", scope=alert.scope, developer=alert.developer, team=alert.team,
                   cost_center=alert.cost_center, incident_key="", created_at=now)
    subject = who(alert.scope, alert.developer, alert.team, alert.cost_center)
    ev = alert.event
    if isinstance(ev, ThresholdCrossed):
        period = period_of(PeriodKind(ev.period), ev.period_start, tz)
        pct = ev.spent_micros * 100 // ev.budget_micros if ev.budget_micros else 0
        noun = {"day": "daily", "week": "weekly"}.get(ev.period, "monthly")
        facts = [
            Fact("Who", subject),
            Fact("Budget", f"{format_usd(ev.budget_micros)} {noun} (period from {ev.period_start})"),
            Fact("Spent", f"{format_usd(ev.spent_micros)} ({pct}%)"),
            Fact("Stage", f"{ev.stage} (threshold {ev.threshold_pct}%)"),
            Fact("Effect now", effect(ev.stage, at_pause=at_pause, small_turn_tokens=small_turn_tokens)),
            Fact("Resets", when(ev.resets_at, now)),
        ]
        if ev.cause == "budget_change":
            facts.insert(4, Fact("Why now", f"its {noun} budget was lowered to {format_usd(ev.budget_micros)} "
                                            "below what it had already spent (no request crossed it)"))
        in_month = ev.period == "month" and ev.period_start == period_containing(PeriodKind.MONTH, now, tz).start
        facts.append(forecast_fact(await month_forecast(conn, alert.scope, tz, now,
                                                        spent_at_least=ev.spent_micros if in_month else 0)))
        sessions = await usage.top_sessions(conn, alert.scope, period.starts_at, ev.resets_at, top_n)
        if console_url:
            facts.append(_console_fact(console_url, alert, period.start, period.ends_at, tz))
        return msgspec.structs.replace(
            base, title=f"[{ev.stage}] {subject}: {pct}% of its {noun} budget",
            summary=(f"{subject} has spent {format_usd(ev.spent_micros)} of its "
                     f"{format_usd(ev.budget_micros)} {noun} budget ({pct}%): {ev.stage} stage."),
            facts=facts, sessions=sessions,
            incident_key=f"spendgate:{ev.scope}:{ev.period}:{ev.period_start}", resolves_at=ev.resets_at,
            occurred_at=ev.crossed_at,
        )
    if isinstance(ev, ForecastOverrun):
        month = period_of(PeriodKind.MONTH, ev.month, tz)
        crosses = f"; P50 crosses it on {ev.p50_crosses_on}" if ev.p50_crosses_on else ""
        facts = [
            Fact("Who", subject),
            Fact("Budget", f"{format_usd(ev.budget_micros)} monthly ({ev.month:%B %Y})"),
            Fact("Forecast", f"P50 {format_usd(ev.p50_micros)} (P10 {format_usd(ev.p10_micros)} – "
                             f"P90 {format_usd(ev.p90_micros)}), as of {ev.as_of}{crosses}"),
            Fact("Effect now", "Nothing yet: requests pass; stages apply once actual spend crosses them."),
            Fact("Resets", when(month.ends_at, now)),
        ]
        sessions = await usage.top_sessions(conn, alert.scope, month.starts_at, now + timedelta(seconds=1), top_n)
        if console_url:
            facts.append(_console_fact(console_url, alert, month.start, month.ends_at, tz))
        return msgspec.structs.replace(
            base, title=f"[forecast] {subject} is on course to overrun its monthly budget",
            summary=(f"At the current pace {subject} ends {ev.month:%B} at {format_usd(ev.p50_micros)} "
                     f"against a {format_usd(ev.budget_micros)} budget{crosses}."),
            facts=facts, sessions=sessions, incident_key=f"spendgate:forecast:{ev.scope}:{ev.month}",
            resolves_at=month.ends_at,
        )
    if isinstance(ev, ReconciliationGap):
        return reconciliation_message(base, ev)
    if isinstance(ev, PolicyRolledBack):
        return rollback_message(base, ev)
    assert isinstance(ev, RetryLoopDetected)
    session = await usage.session_totals(conn, ev.developer, ev.session_id)
    command = ev.command if len(ev.command) <= 200 else ev.command[:199] + "…"
    facts = [
        Fact("Who", subject),
        Fact("Session", f"{ev.session_id}" + (f" in {session.repo}" if session and session.repo else "")),
        Fact("Loop", f"{ev.tool_name} `{command}` failed the same way {ev.retries} times"),
        Fact("Retry spend", format_usd(ev.retry_cost_micros)),
        Fact("Effect now", "Further identical retries in this session are refused (retry budget exhausted)."),
    ]
    sessions = [SessionLine(session_id=ev.session_id, developer=ev.developer,
                            repo=session.repo if session else None,
                            cost_micros=session.cost_micros if session else ev.retry_cost_micros,
                            requests=session.requests if session else ev.retries)]
    return msgspec.structs.replace(
        base, title=f"[retry loop] {ev.developer}'s agent was stopped after {ev.retries} failing retries",
        summary=(f"Session {ev.session_id} of {subject} kept re-running the same failing {ev.tool_name} call; "
                 f"the retries cost {format_usd(ev.retry_cost_micros)}."),
        facts=facts, sessions=sessions, incident_key=f"spendgate:retry:{ev.session_id}",
    )


def reconciliation_message(base: Message, ev: ReconciliationGap) -> Message:
    """A provider billed more for a day than the ledger counted: traffic bypassed the gateway, or the
    ledger missed events."""
    from spendgate.domain.reconcile import format_rate

    models = ", ".join(ev.models[:5]) + (" …" if len(ev.models) > 5 else "")
    facts = [
        Fact("Provider", ev.provider),
        Fact("Day", f"{ev.day} (UTC)"),
        Fact("Provider billed", format_usd(ev.provider_micros)),
        Fact("Ledger counted", format_usd(ev.ledger_micros)),
        Fact("Capture rate", format_rate(ev.capture_ppm)),
        Fact("Models", models or "-"),
        Fact("Effect now", "Nothing: requests pass. Look for keys used outside the gateway "
                           "(spendgate reconcile --from/--to shows each model and key)."),
    ]
    return msgspec.structs.replace(
        base,
        title=f"[reconciliation] {ev.provider} billed {format_usd(ev.gap_micros)} more than the ledger on {ev.day}",
        summary=(f"{ev.provider} billed {format_usd(ev.provider_micros)} for {ev.day}; the ledger counted "
                 f"{format_usd(ev.ledger_micros)} (capture rate {format_rate(ev.capture_ppm)})."),
        facts=facts, incident_key=f"spendgate:reconciliation:{ev.provider}:{ev.day}", occurred_at=ev.detected_at,
    )


def rollback_message(base: Message, ev: PolicyRolledBack) -> Message:
    """The guard rolled a version back: which, whose, which change's turns got worse, and by how much."""
    routing = ev.kind == "routing_rule"
    segment = f"routing rule {ev.segment} ({ev.scope})" if routing else f"{ev.summary} ({ev.kind})"
    touched = f"Turns routed by {ev.segment} ({ev.scope})" if routing else f"Turns touched by the change ({ev.summary})"
    facts = [
        Fact("Version", f"{ev.version_id} (approved by {ev.approver})"),
        Fact("Segment", segment),
        Fact("Quality", f"mean score {ev.candidate_mean:.3f} over {ev.candidate_n} turns since the version, against "
                        f"{ev.baseline_mean:.3f} over {ev.baseline_n} turns of the same kind before it"),
        Fact("Regression", f"{ev.regression:.1%} (95 % bounds {ev.lower:.1%} to {ev.upper:.1%}); tolerance "
                           f"{ev.tolerance_pct:g} %"),
        Fact("Effect now", f"Version {ev.restored_version} is active again (rollback version "
                           f"{ev.rollback_version}); re-apply with `spendgate policy rollback --to {ev.version_id}` "
                           "if the guard was wrong."),
    ]
    return msgspec.structs.replace(
        base, title=f"[policy rollback] version {ev.version_id} by {ev.approver} was rolled back",
        summary=(f"{touched} scored {ev.regression:.1%} worse than before version "
                 f"{ev.version_id} (at least {ev.lower:.1%} with 95 % confidence; tolerance "
                 f"{ev.tolerance_pct:g} %), so the guard restored {ev.restored_version}."),
        facts=facts, incident_key=f"spendgate:policy_rollback:{ev.version_id}", occurred_at=ev.detected_at,
    )
