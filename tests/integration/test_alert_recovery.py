"""Jobs survive crashes and are never sent twice by two alerters: claims with leases on the job rows."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from spendgate.domain.alerts import Message
from spendgate.domain.ids import uuid7
from spendgate.store.alerts import store
from spendgate.store.alerts.store import Planned
from tests.support.alerts import NOW, Receivers, count, running_alerter, settings_for, size
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:a: {{url: "{url}"}}
routes:
  - name: r
    match: {{team: nobody}}
    notify: [slack:a]
"""


async def job_claimed_by(pool: asyncpg.Pool, owner: str, lease: str) -> str:
    """An alert with one pending Slack job, claimed by ``owner`` until now() + ``lease``."""
    message = Message(alert_id=uuid7(), kind="alert", severity="warning", title=f"left by {owner} {lease}",
                      summary="s", scope="team:x", incident_key="k", created_at=NOW)
    async with pool.acquire() as conn:
        await store.insert_alert(conn, message.alert_id, f"test:{message.alert_id}", message)
        (job,) = await store.insert_jobs(conn, message.alert_id, [Planned("r", "slack:a")], message)
    await pool.execute(
        "UPDATE alert_jobs SET claimed_by = $2, claimed_until = now() + $3::text::interval WHERE job_id = $1",
        job.job_id, owner, lease)
    return message.title


async def test_pending_jobs_of_a_previous_run_or_a_dead_peer_are_delivered_but_a_live_claim_is_respected(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Own leftovers go out at start, a dead peer's expired claim is taken over, a live peer's is left alone."""
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(url=rx.url("slack")), instance="alerter-1")
        mine = await job_claimed_by(pool, "alerter-1", "1 hour")
        dead_peer = await job_claimed_by(pool, "alerter-2", "-1 second")
        live_peer = await job_claimed_by(pool, "alerter-3", "1 hour")
        async with running_alerter(settings, pool, db_url):
            await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n == 2, what="two leftovers")
            titles = {r.json()["blocks"][0]["text"]["text"] for r in rx.delivered("slack")}
            assert titles == {mine, dead_peer}
        assert live_peer not in {r.json()["blocks"][0]["text"]["text"] for r in rx.delivered("slack")}
        assert await count(pool, "SELECT count(*) FROM alert_jobs WHERE status = 'pending'") == 1
