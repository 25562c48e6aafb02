"""Routing per cost center and the FinOps digest, with the schedule driven by an injected clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg

from spendgate.domain.constants import GROUP_ALERTER, TOPIC_BUDGET
from tests.support.alerts import (
    Receivers,
    count,
    crossing,
    running_alerter,
    seed_budget,
    settings_for,
    size,
    smtp_server,
)
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:platform-em: {{url: "{platform}"}}
  slack:payments-em: {{url: "{payments}"}}
  email:finops: {{to: [finops@corp.example]}}
developer_email: "{{developer}}@corp.example"
routes:
  - name: platform
    match: {{cost_center: platform, stage: [downgrade, pause]}}
    notify: [slack:platform-em]
  - name: payments
    match: {{cost_center: payments}}
    notify: [slack:payments-em]
  - name: own-breach
    match: {{scope: [developer, key]}}
    notify: [developer]
  - name: finops
    match: {{cost_center: "*"}}
    digest: {{every: day, at: "17:00", timezone: UTC}}
    notify: [email:finops]
"""


async def test_a_platform_crossing_reaches_only_the_platform_route_and_finops_only_in_the_digest(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Platform pause → platform Slack only; alice's own breach → alice; FinOps gets one digest per day."""
    await seed_budget(pool, "platform", "platform", monthly_micros=1_000_000_000, spent_micros=1_120_000_000)
    await seed_budget(pool, "payments", "payments", monthly_micros=500_000_000, spent_micros=100_000_000)
    with smtp_server() as (inbox, smtp_port):
        async with Receivers() as rx:
            settings = settings_for(db_url, tmp_path, ROUTES.format(platform=rx.url("platform"),
                                                                    payments=rx.url("payments")),
                                    smtp_port=smtp_port)
            async with running_alerter(settings, pool, db_url) as alerter:
                await eventually(lambda: count(pool, "SELECT count(*) FROM alert_digest_state"),
                                 what="the digest baseline at 12:00")
                pause = crossing()
                early = crossing(threshold_pct=80, stage="alert", spent_micros=810_000_000)
                own = crossing(scope="developer:alice", developer="alice", threshold_pct=80, stage="alert",
                               period="day", period_start=date(2026, 11, 26),
                               resets_at=datetime(2026, 11, 27, tzinfo=UTC), spent_micros=41_000_000,
                               budget_micros=50_000_000)
                await alerter.publish(pause, early, own)
                await eventually(lambda: count(pool, "SELECT coalesce(sum(next_offset), 0) FROM bus_group_offsets "
                                                     "WHERE group_id = $1 AND topic = $2", GROUP_ALERTER, TOPIC_BUDGET),
                                 until=lambda n: n == 3, what="all three consumed")
                await eventually(lambda: count(pool, "SELECT count(*) FROM alert_jobs WHERE status = 'delivered'"),
                                 until=lambda n: n == 2, what="platform slack and alice's email delivered")

                (platform,) = rx.delivered("platform")
                assert platform.json()["blocks"][0]["text"]["text"].startswith("[pause] team platform")
                assert rx.requests["payments"] == []
                (mine,) = inbox.to("alice@corp.example")
                assert "developer alice" in mine["Subject"]
                assert inbox.to("finops@corp.example") == []  # not a firehose: only the digest

                alerter.clock.now = datetime(2026, 11, 26, 17, 0, 1, tzinfo=UTC)
                await eventually(lambda: size(inbox.to("finops@corp.example")), what="the 17:00 digest")
                (digest,) = inbox.to("finops@corp.example")
                text = digest.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
                assert "1 pauses, 0 downgrades and 2 80% alerts" in text
                assert "[pause] team platform (cost center platform): 112% of its monthly budget" in text
                assert "[alert] developer alice" in text
                assert "team platform: month $1,120.00 of $1,000.00 (112%)" in text
                assert "team payments: month $100.00 of $500.00 (20%)" in text

                alerter.clock.now = datetime(2026, 11, 27, 17, 0, 1, tzinfo=UTC)
                await eventually(lambda: size(inbox.to("finops@corp.example")), until=lambda n: n == 2,
                                 what="the next day's digest")
                second = inbox.to("finops@corp.example")[1].get_body(preferencelist=("plain",))
                assert "No alerts in this period." in second.get_content()  # type: ignore[union-attr]
            assert await count(pool, "SELECT count(*) FROM alerts WHERE kind = 'digest'") == 2
            assert len(inbox.to("finops@corp.example")) == 2

