"""The guard judges every kind of policy change, not only routing rules, on real PostgreSQL: a larger
downgrade size limit, a smaller budget, a lower pause threshold and an exploration block. For each, turns
as good as before leave the version alone, 12 bad turns are too few to act on, and 60 bad ones roll it
back, with the kind and the change in words on the check, the rollback's reason and the event."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from click.testing import CliRunner

from spendgate.admin.guard import check
from spendgate.admin.policy_versions import VersionApplied, apply_version
from spendgate.cli import main
from spendgate.core.config import Settings
from spendgate.core.config_services import GuardSettings, PolicySigningSettings
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.events import PolicyRolledBack
from spendgate.store.policies import store as versions
from spendgate.store.usage.store import insert_events
from tests.support.admin_server import TEST_SIGNING_KEY
from tests.support.factories import usage_event

BUDGET = {"scope": "team:platform", "monthly": "2000", "thresholds": [80, 95, 110]}
EXPLORE = {"share_pct": 10, "teams": ["platform"], "max_input_tokens": 8000}


@dataclass(frozen=True)
class Kind:
    """One kind of change: the two versions' documents (and downgrade size limits, a setting), and the
    turns the change touches since and the same kind of turns it is compared with."""

    kind: str
    summary: str
    before: dict[str, Any]
    after: dict[str, Any]
    candidate: dict[str, Any]
    """What the candidate turns' events carry (beside the version id)."""
    baseline: dict[str, Any]
    limits: tuple[int, int] = (8_000, 8_000)
    baseline_since: bool = False
    """The baseline is turns since under the version (exploration's control arm), not turns before."""


DOWNGRADED = {"route_reason": "downgrade", "model_used": "gpt-5.1-mini"}
KINDS = [
    Kind("downgrade_limit", "downgrade size limit 8,000 → 32,000 input tokens", {}, {},
         candidate={**DOWNGRADED, "input_tokens": 16_000}, baseline={"input_tokens": 16_000}, limits=(8_000, 32_000)),
    Kind("budget", "budget team:platform monthly $2,000 → $1,500", {"budgets": [BUDGET]},
         {"budgets": [{**BUDGET, "monthly": "1500"}]}, candidate=DOWNGRADED, baseline={}),
    Kind("stage_thresholds", "stage thresholds team:platform 80/95/110 % → 80/95/100 %", {"budgets": [BUDGET]},
         {"budgets": [{**BUDGET, "thresholds": [80, 95, 100]}]}, candidate={}, baseline={}),
    Kind("exploration", "exploration 10 % of turns under 8,000 input tokens in teams platform (new)", {},
         {"exploration": EXPLORE}, candidate={"route_reason": "explore", "experiment_arm": "explore",
                                              "model_used": "gpt-5.1-mini"},
         baseline={"experiment_arm": "control"}, baseline_since=True),
]


def guard_settings(db_url: str, tmp_path: Path, limit: int) -> Settings:
    s = Settings(data_dir=tmp_path, database_url=db_url, bus="postgres")
    return s.model_copy(update={
        "policy": PolicySigningSettings.model_validate({"signing_key": TEST_SIGNING_KEY}),
        "guard": GuardSettings(interval_s=1), "enforcement": s.enforcement.model_copy(
            update={"downgrade_max_input_tokens": limit})})


def turn(name: str, i: int, at: datetime, *, good: bool, **fields: Any) -> Any:
    """One single-request turn: good (3 tools fine, a final answer: 1.0, every fifth 0.9) or bad (2 of 3
    tools failed, no final answer: 0.4); 2,000 input tokens unless ``fields`` say otherwise."""
    values: dict[str, Any] = dict(
        turn_id=f"{name}-{i}", session_id=f"s-{name}-{i % 7}", occurred_at=at, input_tokens=2_000, cached_tokens=0,
        tool_outputs=3, tool_failures=(1 if i % 5 == 0 else 0) if good else 2, final_message=good)
    return usage_event(**{**values, **fields})


def since_at(i: int, now: datetime) -> datetime:
    return now - timedelta(hours=20) + timedelta(minutes=15 * i)


async def versions_of(pool: asyncpg.Pool, db_url: str, tmp_path: Path, k: Kind,
                      now: datetime) -> tuple[VersionApplied, VersionApplied, Settings]:
    """V0 live eight days ago, V1 (the change) since a day ago, approved by test:alice."""
    async def apply(doc: dict[str, Any], limit: int, at: datetime) -> tuple[VersionApplied, Settings]:
        settings = guard_settings(db_url, tmp_path, limit)
        done = await apply_version(pool, policy_from_document(doc, settings.enforcement), settings,
                                   settings.pricing.table(), now=at, approver="test:alice", reason=k.kind)
        return done, settings

    v0, _ = await apply(k.before, k.limits[0], now - timedelta(days=8))
    v1, settings = await apply(k.after, k.limits[1], now - timedelta(days=1))
    return v0, v1, settings


async def seed_baseline(pool: asyncpg.Pool, k: Kind, now: datetime, v1: str) -> None:
    """60 good turns of the kind the change touched (before V1, or its control arm since), and 40 bad turns
    the segment must leave out: another team's, and (for a size band) smaller ones."""
    if k.baseline_since:
        same = [turn("base", i, since_at(i, now), good=True, policy_version=v1, **k.baseline) for i in range(60)]
    else:
        same = [turn("base", i, since_at(i, now) - timedelta(days=1 + i % 5), good=True, **k.baseline)
                for i in range(60)]
    others = [turn("payments", i, now - timedelta(days=2, hours=i), good=False, team="payments")
              for i in range(40)]
    small = [turn("small", i, since_at(i, now) - timedelta(days=2), good=False) for i in range(40)]
    await insert_events(pool, [*same, *others, *(small if k.kind == "downgrade_limit" else [])])


async def seed_candidates(pool: asyncpg.Pool, k: Kind, now: datetime, v1: str, *, good: bool, first: int,
                          last: int) -> None:
    await insert_events(pool, [turn(f"cand-{good}", i, since_at(i, now), good=good, policy_version=v1,
                                    **k.candidate) for i in range(first, last)])


@pytest.mark.parametrize("k", KINDS, ids=lambda k: k.kind)
async def test_each_kind_of_change_is_judged_and_a_harmful_one_rolled_back(db_url: str, pool: asyncpg.Pool,
                                                                           tmp_path: Path, k: Kind) -> None:
    """Harmless (the touched turns score as before): V1 stays, and `policy guard` shows the change and its
    kind (table and JSON). 12 bad touched turns: too few, V1 stays.
    60 bad ones: V1 is rolled back to V0 by spendgate-guard; the check, the reason and the event name the
    kind and the change."""
    now = datetime.now(UTC)
    v0, v1, settings = await versions_of(pool, db_url, tmp_path, k, now)
    prices = settings.pricing.table()
    await seed_baseline(pool, k, now, v1.version_id)
    await seed_candidates(pool, k, now, v1.version_id, good=True, first=0, last=60)
    result = await check(pool, settings, prices, now=now, act=True)
    [seg] = result.segments
    assert (seg.kind, seg.summary, seg.verdict) == (k.kind, k.summary, "harmless")
    assert (seg.baseline_n, seg.candidate_n) == (60, 60) and result.rolled_back_to is None
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
           "SPENDGATE_POLICY__SIGNING_KEY": TEST_SIGNING_KEY}
    shown = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "guard"], env=env)
    assert f"  {k.summary} ({k.kind}, {seg.change}): baseline 60 turns, candidate 60 turns" in shown.output
    as_json = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "guard", "--format", "json"], env=env)
    assert {f: json.loads(as_json.output)["segments"][0][f] for f in ("kind", "summary", "verdict")} == {
        "kind": k.kind, "summary": k.summary, "verdict": "harmless"}

    await pool.execute("DELETE FROM usage_events WHERE turn_id LIKE 'cand-%'")
    await seed_candidates(pool, k, now, v1.version_id, good=False, first=0, last=12)
    result = await check(pool, settings, prices, now=now, act=True)
    [seg] = result.segments
    assert (seg.verdict, seg.candidate_n, seg.regression) == ("too_few", 12, None) and seg.needed >= 18
    assert (await versions.active_version(pool)).version_id == v1.version_id  # type: ignore[union-attr]

    await seed_candidates(pool, k, now, v1.version_id, good=False, first=12, last=60)
    result = await check(pool, settings, prices, now=now, act=True)
    [seg] = result.segments
    assert (seg.verdict, seg.candidate_n, round(seg.candidate_mean or 0, 3)) == ("regressed", 60, 0.4)
    assert seg.lower is not None and seg.lower > 0.02 and result.rolled_back_to == v0.version_id
    active = await versions.active_version(pool)
    assert active is not None and active.approver == "spendgate-guard" and active.source == v0.version_id
    assert k.summary in active.reason and "past the 2 % tolerance" in active.reason
    row = await pool.fetchrow("SELECT event FROM policy_rollbacks WHERE version_id = $1", v1.version_id)
    assert row is not None
    event = msgspec.json.decode(row["event"], type=PolicyRolledBack)
    assert (event.kind, event.summary, event.baseline_n, event.candidate_n) == (k.kind, k.summary, 60, 60)
