"""The ledger's real crossings drive the alerter: usage events in, actionable Slack messages out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg

from spendgate.core.bus.postgres import PostgresBus
from spendgate.ledger.outbox import publish_pending
from tests.support.alerts import Receivers, running_alerter, settings_for, size
from tests.support.factories import T0, usage_event
from tests.support.ledger import consumed, publish, running_ledger
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:platform-em: {{url: "{slack}"}}
routes:
  - name: platform
    match: {{cost_center: cc-platform, stage: [downgrade, pause]}}
    notify: [slack:platform-em]
"""


async def test_usage_over_a_team_budget_reaches_the_team_channel_with_its_sessions(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Twelve $0.10 requests against a $1 daily team budget: the downgrade and pause reach Slack once each,
    naming the session and its repo; the 80 % alert matches no route and stays in the history only."""
    await pool.execute("INSERT INTO budgets (scope, daily_micros) VALUES ('team:platform', 1000000)")
    events = [usage_event(cost_micros=100_000, occurred_at=T0 + timedelta(seconds=i)) for i in range(12)]
    bus = PostgresBus(pool, db_url)
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack")))
        async with running_ledger(pool, bus), running_alerter(settings, pool, db_url, bus=bus):
            await publish(bus, events)
            await eventually(lambda: consumed(pool), until=lambda n: n == 12, what="usage folded")
            assert await publish_pending(pool, bus, source="test") >= 3
            await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n == 2, what="downgrade and pause")
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM alerts WHERE scope = 'team:platform'"),
                             until=lambda n: n == 3, what="three team alerts in the history")
        texts = sorted(str(r.json()) for r in rx.delivered("slack"))
        assert texts[0].count("[downgrade] team platform") == 1 and "[pause] team platform" in texts[1]
        assert "$1.10 of its $1.00 daily budget (110%)" in texts[1]
        assert all("/home/alice/src/api" in text for text in texts)  # the top session's repo
