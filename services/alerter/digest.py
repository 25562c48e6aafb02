"""Digest routes: one message per period summarising the alerts matched since the last digest, with
spend vs budget per team. The schedule is computed from an injected clock, never from sleeps."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from spendgate.core.alert_routes import DEVELOPER, DigestSpec, Route
from spendgate.core.db import Conn
from spendgate.domain.alerts import Fact, Message
from spendgate.domain.ids import uuid7
from spendgate.domain.money import format_usd
from spendgate.domain.periods import PeriodKind, period_containing, zone
from spendgate.store.alerts import store
from spendgate.store.alerts.store import Job, Planned
from spendgate.store.balances.store import spent_micros
from spendgate.store.budgets.store import budgets_of
from spendgate.store.keys.store import team_cost_centers


def last_due(spec: DigestSpec, now: datetime) -> datetime:
    """The latest scheduled digest instant at or before ``now``."""

    tz = zone(spec.timezone)
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), spec.at, tzinfo=tz)
    if spec.every == "week":
        candidate -= timedelta(days=(local.weekday() - spec.weekday) % 7)
    step = timedelta(days=7 if spec.every == "week" else 1)
    while candidate.astimezone(UTC) > now:
        candidate -= step
    return candidate.astimezone(UTC)


def _in_scope(route: Route, team: str, cost_center: str | None) -> bool:
    for key, value in (("team", team), ("cost_center", cost_center)):
        allowed = route.match.get(key)
        if allowed is not None and "*" not in allowed and value not in allowed:
            return False
    return True


async def team_spend(conn: Conn, route: Route, now: datetime) -> list[str]:
    """``team X: month $a of $b (n%), today $c of $d`` for every team budget in the route's scope."""
    centers = await team_cost_centers(conn)
    lines = []
    for b in await budgets_of(conn):
        if not b.scope.startswith("team:"):
            continue
        team = b.scope.removeprefix("team:")
        if not _in_scope(route, team, centers.get(team)):
            continue
        parts = []
        for kind, label, budget in ((PeriodKind.MONTH, "month", b.monthly_micros),
                                    (PeriodKind.DAY, "today", b.daily_micros)):
            start = period_containing(kind, now, b.timezone).start
            spent = await spent_micros(conn, b.scope, kind, start)
            if budget:
                parts.append(f"{label} {format_usd(spent)} of {format_usd(budget)} ({spent * 100 // budget}%)")
            elif kind is PeriodKind.MONTH:
                parts.append(f"{label} {format_usd(spent)} (no monthly budget)")
        lines.append(f"• team {team}: " + ", ".join(parts))
    return lines


async def run_digest(pool: asyncpg.Pool, route: Route, now: datetime, *, console_url: str | None = None) -> list[Job]:
    """Send the route's digest when a scheduled instant has passed since the last one; the jobs to deliver.

    The first run only records where the first period starts. Two alerters cannot both send a period:
    the state row is locked while the digest is built.
    """
    assert route.digest is not None
    due = last_due(route.digest, now)
    async with pool.acquire() as conn, conn.transaction():
        since = await store.lock_digest(conn, route.name)
        if since is None:
            await store.start_digest(conn, route.name, due)
            return []
        if since >= due:
            return []
        items = await store.digest_items(conn, route.name)
        message = render(route, items, await team_spend(conn, route, now), since=since, until=due, now=now,
                         console_url=console_url)
        await store.insert_alert(conn, message.alert_id, f"digest:{route.name}:{due.isoformat()}", message)
        await store.close_digest(conn, route.name, message.alert_id, due)
        targets = [Planned(route.name, t) for t in route.notify if t != DEVELOPER]
        return await store.insert_jobs(conn, message.alert_id, targets, message)


def render(route: Route, items: list[Message], spend_lines: list[str], *, since: datetime, until: datetime,
           now: datetime, console_url: str | None = None) -> Message:
    counts = Counter(m.kind for m in items)
    tally = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"
    window = f"{since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} UTC"
    lines = ["Alerts in this period:"] if items else ["No alerts in this period."]
    lines += [f"• {m.created_at:%Y-%m-%d %H:%M} UTC {m.title}" for m in items]
    lines += ["Spend vs budget per team:", *(spend_lines or ["• no team budgets in scope"])]
    return Message(
        alert_id=uuid7(), kind="digest", severity="info", scope=f"digest:{route.name}",
        title=f"spendgate digest ({route.name}): {len(items)} alerts, {window}",
        summary=(f"{counts['pause']} pauses, {counts['downgrade']} downgrades and {counts['alert']} "
                 f"80% alerts since the last digest."),
        facts=[Fact("Period", window), Fact("Alerts", tally),
               *([Fact("Console", f"{console_url}/")] if console_url else [])], lines=lines,
        incident_key=f"spendgate:digest:{route.name}:{until.isoformat()}", created_at=now,
    )
