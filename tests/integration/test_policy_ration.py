"""Forecast-driven rationing on real PostgreSQL with a stored forecast: team platform's month-end P50 crosses
its monthly budget; the proposals (an earlier downgrade stage, a daily cap, a routing rule) are estimated
from dry-runs of the last 14 days and ordered least disruptive first; ``auto_ration`` applies the first
sufficient one as a signed version once, and ``policy rollback`` undoes it; the CLI lists them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from click.testing import CliRunner

from spendgate.admin.policy_versions import apply_version, rollback
from spendgate.admin.ration import RATION_APPROVER, auto_ration, proposals
from spendgate.cli import main
from spendgate.core.config import Settings
from spendgate.core.config_services import GuardSettings
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.forecast import Forecast
from spendgate.domain.money import usd_str
from spendgate.store.forecasts import store as forecasts
from spendgate.store.policies import store as versions
from spendgate.store.usage.store import insert_events
from tests.support.admin_server import TEST_SIGNING_KEY, admin_client, admin_settings, auth
from tests.support.factories import usage_event

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
BUDGET = {"scope": "team:platform", "monthly": "60", "timezone": "UTC", "thresholds": [80, 95, 110]}


def settings(tmp_path: Path, db_url: str, **guard: Any) -> Settings:
    return Settings(data_dir=tmp_path, database_url=db_url, bus="postgres", policy={"signing_key": TEST_SIGNING_KEY},
                    guard=GuardSettings(**guard))  # type: ignore[arg-type]


async def seed(pool: asyncpg.Pool, s: Settings) -> None:
    """The budget as a version; 100 small gpt-5.1 turns a day since the 1st (~$2.75 a day, $42.6 by now);
    the forecast of today: P50 $82 against the $60 budget."""
    await apply_version(pool, policy_from_document({"budgets": [BUDGET]}, s.enforcement), s, s.pricing.table(),
                        now=NOW - timedelta(days=16), approver="cli:ann", reason="platform budget")
    events = []
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for day in range(16):
        for i in range(100):
            at = start + timedelta(days=day, minutes=7 * i)
            if at >= NOW:
                break
            events.append(usage_event(occurred_at=at, turn_id=f"t-{day}-{i}", session_id=f"s-{day}-{i // 10}",
                                      input_tokens=6_000, cached_tokens=0, output_tokens=2_000))
    await insert_events(pool, events)
    spent = sum(e.cost_micros for e in events)
    await pool.execute("INSERT INTO balances (scope, period, period_start, spent_micros) VALUES ($1, 'month', $2, $3)",
                       "team:platform", date(2026, 11, 1), spent)
    async with pool.acquire() as conn:
        await forecasts.save_pass(conn, [("team:platform", replace(FORECAST, actual_micros=spent))], NOW)


FORECAST = Forecast(month=date(2026, 11, 1), as_of=NOW.date(), actual_micros=0, p10_micros=75_000_000,
                    p50_micros=82_000_000, p90_micros=90_000_000, budget_micros=60_000_000, p10_crosses_on=None,
                    p50_crosses_on=date(2026, 11, 25), p90_crosses_on=None, model="test", band=())


async def test_proposals_bring_p50_under_least_disruptive_first(db_url: str, pool: asyncpg.Pool,
                                                                tmp_path: Path) -> None:
    """Three proposals with the math; those that suffice come first, the first pauses nobody; the daily cap
    pauses sessions; each document is a whole policy that parses."""
    s = settings(tmp_path, db_url)
    await seed(pool, s)
    found = await proposals(pool, s, s.pricing.table(), now=NOW)
    [scope] = found.scopes
    assert (scope.scope, scope.p50_micros, scope.budget_micros) == ("team:platform", 82_000_000, 60_000_000)
    assert scope.days_left == 14.5
    kinds = [p.kind for p in scope.proposals]
    assert sorted(kinds) == ["daily_cap", "downgrade_earlier", "routing_rule"], kinds
    first = scope.proposals[0]
    assert first.sufficient and first.p50_after_micros <= 60_000_000 and first.dry_run.paused_sessions == 0
    assert first.kind in ("downgrade_earlier", "routing_rule")
    sufficient = [p.sufficient for p in scope.proposals]
    assert sufficient == sorted(sufficient, reverse=True)  # sufficient first
    for p in scope.proposals:
        assert p.saved_micros > 0 and p.dry_run.days == 14
        assert p.saved_micros == int(p.dry_run.saved_micros * 14.5 / 14)
        assert p.p50_after_micros == 82_000_000 - p.saved_micros
        assert "P50 $82.00" in p.summary and "14.5 days left" in p.summary, p.summary
        policy_from_document(p.document, s.enforcement)  # a whole, valid policy
    cap = next(p for p in scope.proposals if p.kind == "daily_cap")
    [budget] = cap.document["budgets"]
    assert budget["daily"] == usd_str((60_000_000 - scope.actual_micros) // 15)  # what is left over 15 days
    assert cap.dry_run.paused_sessions > 0
    other = await proposals(pool, s, s.pricing.table(), now=NOW, scope="team:payments")
    assert other.scopes == [] and other.note.startswith("team:payments has no forecast yet")
    async with pool.acquire() as conn:  # under its budget: says so, with the figures
        await forecasts.save_pass(conn, [("team:web", replace(FORECAST, p50_micros=50_000_000))], NOW)
    under = await proposals(pool, s, s.pricing.table(), now=NOW, scope="team:web")
    assert under.scopes == [] and under.note == ("team:web's month-end P50 $50.00 is within its $60.00 monthly "
                                                 "budget (forecast of 2026-11-16): nothing to ration")


async def test_auto_ration_applies_once_and_rolls_back(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """auto_ration makes the first sufficient proposal a signed version by spendgate-ration with the math in
    its reason; a second pass on the same forecast changes nothing; ``policy rollback`` restores the budget."""
    s = settings(tmp_path, db_url, auto_ration=True)
    await seed(pool, s)
    before = await versions.active_version(pool)
    expected = (await proposals(pool, s, s.pricing.table(), now=NOW)).scopes[0].proposals[0]
    tried: set[tuple[str, date]] = set()
    version = await auto_ration(pool, s, s.pricing.table(), now=NOW, tried=tried)
    assert tried == {("team:platform", NOW.date())}  # the worker weighs this forecast once
    active = await versions.active_version(pool)
    assert active is not None and before is not None and version == active.version_id
    assert active.approver == RATION_APPROVER and active.reason.startswith("ration team:platform: ")
    assert "P50 $82.00" in active.reason
    assert active.document["routing_rules"] == expected.document["routing_rules"]
    assert await auto_ration(pool, s, s.pricing.table(), now=NOW + timedelta(minutes=5)) is None
    undone = await rollback(pool, s, s.pricing.table(), now=NOW + timedelta(minutes=6), approver="cli:ann",
                            reason="too strict")
    restored = await versions.get_version(pool, undone.version_id)
    assert restored is not None and restored.document == before.document


async def test_ration_cli(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """``policy ration --format json`` lists the overrun scope; a malformed --scope is a one-line usage error."""
    s = settings(tmp_path, db_url)
    await seed(pool, s)
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
           "SPENDGATE_POLICY__SIGNING_KEY": TEST_SIGNING_KEY}
    done = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "ration", "--format", "json"], env=env)
    assert done.exit_code == 0, done.output
    assert [x["scope"] for x in json.loads(done.output)["scopes"]] == ["team:platform"]
    bad = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "ration", "--scope", "galaxy:x"], env=env)
    assert bad.exit_code == 2 and "--scope" in bad.output and "Traceback" not in bad.output, bad.output
    unknown = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "ration", "--scope", "team:nobody"], env=env)
    assert unknown.exit_code == 0 and unknown.output.startswith("team:nobody has no forecast yet"), unknown.output


async def test_ration_and_guard_api(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """``GET /v1/policy/ration`` answers what the function does, one scope when asked; a malformed or
    oversized scope is a 400 in OpenAI's error shape; ``GET /v1/policy/guard`` judges the active version
    (16 days old: no longer watched)."""
    s = settings(tmp_path, db_url)
    await seed(pool, s)
    async with admin_client(pool, admin_settings(data_dir=tmp_path, guard=GuardSettings()), now=NOW) as client:
        resp = await client.get("/v1/policy/ration", headers=auth(), params={"scope": "team:platform"})
        assert resp.status == 200, await resp.text()
        [scope] = (await resp.json())["scopes"]
        assert scope["scope"] == "team:platform" and len(scope["proposals"]) == 3
        for bad in ("galaxy:x", "team:" + "x" * 400):
            resp = await client.get("/v1/policy/ration", headers=auth(), params={"scope": bad})
            assert resp.status == 400 and (await resp.json())["error"]["message"], bad
        resp = await client.get("/v1/policy/guard", headers=auth())
        assert resp.status == 200, await resp.text()
        guard = await resp.json()
        assert guard["approver"] == "cli:ann" and "older than guard.watch_days (14)" in guard["note"]
