"""The guard on real PostgreSQL, the Postgres bus and the alerter: a version whose routing rule made its turns
clearly worse is rolled back automatically within the documented detection time (one ``guard.interval_s``
once the minimum sample is there), with the ``PolicyRolledBack`` event and the alert delivered to a webhook;
a harmless version is not; too few turns means no action; ``spendgate policy guard`` reports the same."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from spendgate.admin.guard import check, serve
from spendgate.admin.policy_versions import VersionApplied, apply_version, rollback
from spendgate.cli import main
from spendgate.core.config import Settings
from spendgate.core.config_services import GuardSettings, PolicySigningSettings
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.errors import StoreError
from spendgate.store.policies import store as versions
from spendgate.store.usage.store import insert_events
from tests.support.admin_server import TEST_SIGNING_KEY
from tests.support.alerts import Receivers, running_alerter, settings_for
from tests.support.cli import spendgate
from tests.support.factories import usage_event
from tests.support.waiting import eventually

RULE = {"name": "platform-small", "scope": "team:platform", "max_input_tokens": 8000, "model": "gpt-5.1-mini"}
ROUTES = """
targets:
  webhook:eng: {{url: "{url}", signing_secret: s3cret}}
routes:
  - name: policy-changes
    match: {{stage: policy_rollback}}
    notify: [webhook:eng]
"""
INTERVAL_S = 1.0


def settings_with_guard(db_url: str, tmp_path: Path, url: str = "http://127.0.0.1:9/none", **guard: Any) -> Settings:
    s = settings_for(db_url, tmp_path, ROUTES.format(url=url))
    return s.model_copy(update={"policy": PolicySigningSettings.model_validate({"signing_key": TEST_SIGNING_KEY}),
                                "guard": GuardSettings(interval_s=INTERVAL_S, **guard)})


def turn(i: int, at: datetime, *, score: str, team: str = "platform", version: str | None = None,
         rule: str | None = None) -> Any:
    """One single-request turn: ``good`` (3 tools fine, final answer: 1.0, every fifth 0.9) or ``bad``
    (2 of 3 tools failed, no final answer: 0.4)."""
    good = score == "good"
    return usage_event(
        turn_id=f"{score}-{team}-{rule}-{i}", session_id=f"s-{team}-{i % 7}", team=team, occurred_at=at,
        input_tokens=2_000, cached_tokens=0, tool_outputs=3, tool_failures=(1 if i % 5 == 0 else 0) if good else 2,
        final_message=good, policy_version=version, routing_rule=rule,
        model_used="gpt-5.1-mini" if rule else "gpt-5.1", route_reason="routing_rule" if rule else "requested")


async def two_versions(pool: asyncpg.Pool, settings: Settings, now: datetime) -> tuple[VersionApplied, VersionApplied]:
    """V0 (no rules) live eight days ago, V1 (the rule) live since a day ago, approved by test:alice."""
    async def apply(doc: dict[str, Any], at: datetime, reason: str) -> VersionApplied:
        return await apply_version(pool, policy_from_document(doc, settings.enforcement), settings,
                                   settings.pricing.table(), now=at, approver="test:alice", reason=reason)

    v0 = await apply({}, now - timedelta(days=8), "baseline")
    v1 = await apply({"routing_rules": [RULE]}, now - timedelta(days=1), "cheaper small turns for platform")
    return v0, v1


async def seed(pool: asyncpg.Pool, now: datetime, v1: str, *, candidate: str, candidates: int = 60,
               first: int = 0) -> None:
    """60 good platform turns in the days before V1 (and 40 bad payments turns, out of the rule's scope),
    then ``candidates`` platform turns the rule routed under V1 (``first`` > 0: only those from it on)."""
    before = [turn(i, now - timedelta(hours=20, days=1 + i % 5) + timedelta(minutes=15 * i), score="good")
              for i in range(60)]  # at the candidates' times of day, 1 to 5 days before V1
    noise = [turn(i, now - timedelta(days=2, hours=i), score="bad", team="payments") for i in range(40)]
    since = [turn(i, now - timedelta(hours=20) + timedelta(minutes=15 * i), score=candidate, version=v1,
                  rule="platform-small") for i in range(first, candidates)]
    await insert_events(pool, since if first else [*before, *noise, *since])


async def test_a_harmful_version_is_rolled_back_with_the_event_and_the_alert(db_url: str, pool: asyncpg.Pool,
                                                                             tmp_path: Path) -> None:
    """The rule's turns score 0.4 against 0.98 before. The guard runs while only 20 of them exist (too few:
    V1 stays); once the other 40 arrive it rolls V1 back to V0 within one interval (approver
    spendgate-guard, the reason with the math), the event is on the bus and the alerter delivers the alert
    naming the version, the approver, the segment and the numbers."""
    now = datetime.now(UTC)
    async with Receivers() as receivers:
        settings = settings_with_guard(db_url, tmp_path, receivers.url("eng"))
        v0, v1 = await two_versions(pool, settings, now)
        await seed(pool, now, v1.version_id, candidate="bad", candidates=20)
        async with running_alerter(settings, pool, db_url) as alerter:
            stop = asyncio.Event()
            guard = asyncio.create_task(serve(alerter.runtime, stop))
            try:
                too_few = await check(pool, settings, settings.pricing.table(), now=datetime.now(UTC))
                assert too_few.segments[0].verdict == "too_few"
                assert (await versions.active_version(pool)).version_id == v1.version_id  # type: ignore[union-attr]
                await seed(pool, now, v1.version_id, candidate="bad", first=20)
                started = time.monotonic()
                active = await eventually(lambda: versions.active_version(pool),
                                          until=lambda v: v is not None and v.approver == "spendgate-guard",
                                          timeout_s=INTERVAL_S + 20, what="the guard's rollback")
                detected_s = time.monotonic() - started
                [hook] = await eventually(lambda: asyncio.sleep(0, receivers.delivered("eng")),
                                          timeout_s=20, what="the rollback alert at the webhook")
            finally:
                stop.set()
                await asyncio.wait_for(guard, 30)
    assert active is not None and active.action == "rollback" and active.source == v0.version_id
    assert active.parent == v1.version_id and active.document["routing_rules"] == []
    assert "platform-small" in active.reason and "past the 2 % tolerance" in active.reason
    print(f"guard detection after the 30th turn: {detected_s:.2f} s (interval {INTERVAL_S} s)")
    assert detected_s < INTERVAL_S + 10  # the next pass acts (10 s: slack for a loaded 2-core machine)
    row = await pool.fetchrow("SELECT event, published_at FROM policy_rollbacks WHERE version_id = $1", v1.version_id)
    assert row is not None and row["published_at"] is not None
    event = json.loads(row["event"])
    assert (event["baseline_n"], event["candidate_n"]) == (60, 60)
    assert round(event["candidate_mean"], 3) == 0.4 and event["lower"] > 0.02
    body = json.dumps(hook.json())
    numbers = (f"{event['regression']:.1%}", f"{event['lower']:.1%}", "0.400 over 60 turns", "0.980 over 60 turns")
    for words in (v1.version_id, "test:alice", "platform-small", "team:platform", v0.version_id, *numbers):
        assert words in body, words
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'policy_rollback'") == 1


async def test_a_harmless_version_stays_and_too_few_turns_mean_no_action(db_url: str, pool: asyncpg.Pool,
                                                                         tmp_path: Path) -> None:
    """A rollback expecting another active version is refused. Turns as good as before: harmless, V1 stays.
    Then only 12 bad routed turns: too few (the verdict says how many more), V1 stays; the CLI prints the
    same check."""
    now = datetime.now(UTC)
    settings = settings_with_guard(db_url, tmp_path)
    v0, v1 = await two_versions(pool, settings, now)
    with pytest.raises(StoreError, match=f"now {v1.version_id}, not {v0.version_id}"):  # judged V0, V1 came since
        await rollback(pool, settings, settings.pricing.table(), now=now, approver="spendgate-guard", reason="r",
                       expected_active=v0.version_id)
    await seed(pool, now, v1.version_id, candidate="good")
    result = await check(pool, settings, settings.pricing.table(), now=now, act=True)
    [seg] = result.segments
    assert (seg.rule, seg.change, seg.verdict, seg.baseline_n, seg.candidate_n) == (
        "platform-small", "added", "harmless", 60, 60)
    assert seg.upper is not None and seg.upper <= 0.02 and result.rolled_back_to is None
    assert (await versions.active_version(pool)).version_id == v1.version_id  # type: ignore[union-attr]

    await pool.execute("DELETE FROM usage_events WHERE routing_rule IS NOT NULL")
    await seed(pool, now, v1.version_id, candidate="bad", candidates=12)
    result = await check(pool, settings, settings.pricing.table(), now=now, act=True)
    [seg] = result.segments
    # the baseline keeps the turns of the hours of the day the 12 routed turns started in (12 to 15)
    assert (seg.verdict, seg.candidate_n, seg.regression) == ("too_few", 12, None) and 12 <= seg.baseline_n <= 15
    assert seg.needed == 18 + 30 - seg.baseline_n
    assert (await versions.active_version(pool)).version_id == v1.version_id  # type: ignore[union-attr]
    assert await pool.fetchval("SELECT count(*) FROM policy_rollbacks") == 0

    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
           "SPENDGATE_POLICY__SIGNING_KEY": TEST_SIGNING_KEY}
    done = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "guard"], env=env)
    assert done.exit_code == 0, done.output
    assert f"version {v1.version_id} (approved by test:alice" in done.output
    assert (f"platform-small (team:platform, added): baseline {seg.baseline_n} turns, candidate 12 turns; too few "
            f"turns ({seg.needed} more") in done.output
    as_json = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "guard", "--format", "json"], env=env)
    assert json.loads(as_json.output)["segments"][0]["verdict"] == "too_few"
    both = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "guard", "--act", "--api",
                                                              "http://127.0.0.1:9"], env=env)
    assert both.exit_code == 2 and "leave out --api or --act" in both.output, both.output


@pytest.mark.parametrize(("env", "message"), [
    ({"SPENDGATE_GUARD__MIN_TURNS": "5"}, "guard.min_turns: Input should be greater than or equal to 30"),
    ({"SPENDGATE_GUARD__TOLERANCE_PCT": "-1"}, "guard.tolerance_pct: Input should be greater than 0"),
])
async def test_bad_guard_settings_are_refused_in_a_line(env: dict[str, str], message: str, tmp_path: Path) -> None:
    """A minimum sample under the bootstrap's 30 or a negative tolerance: exit 2, the setting named, no
    traceback (before any database is reached)."""
    done = await spendgate("policy", "guard", db_url="postgresql://nobody@127.0.0.1:9/none", data_dir=tmp_path, **env)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
