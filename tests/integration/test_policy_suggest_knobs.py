"""``policy suggest``'s other knobs over a real database: a larger downgrade size limit and an earlier
downgrade stage where the cheaper model did as well (and not where it did worse), a budget for an unbudgeted
team from its stored P90 (and not where its daily part would pause sessions), a lower retry cap where retry
loops ran, and rationing's proposals listed as suggestions of kind ``ration`` (library, API, and the
unchanged ``policy ration``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from itertools import zip_longest
from pathlib import Path

import asyncpg
import msgspec
from click.testing import CliRunner

from spendgate.admin.policy_versions import apply_version
from spendgate.admin.suggest import suggest
from spendgate.admin.suggest_knobs import BUDGET_STEP_MICROS, lower_caps, round_up, working_days
from spendgate.cli import main
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.enforcement.routing import NAME_PATTERN
from spendgate.domain.events import UsageRecorded
from spendgate.domain.forecast import Forecast
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.store.forecasts import store as forecasts
from spendgate.store.usage.store import insert_events
from tests.integration.test_policy_ration import NOW as RATION_NOW
from tests.integration.test_policy_ration import seed as seed_ration
from tests.integration.test_policy_ration import settings as ration_settings
from tests.integration.test_policy_suggest import turn
from tests.support.admin_server import TEST_SIGNING_KEY, admin_client, admin_settings, auth
from tests.support.factories import usage_event

NOW = datetime(2026, 11, 16, 18, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 13, 10, 0, tzinfo=UTC)
PRICES = PriceTable()
FLAGSHIP = PRICES.lookup("gpt-5.1").price


def at_flagship(e: UsageRecorded) -> int:
    return cost_micros(FLAGSHIP, input_tokens=e.input_tokens, cached_tokens=e.cached_tokens,
                       output_tokens=e.output_tokens)


async def use_policy(pool: asyncpg.Pool, document: dict[str, object]) -> None:
    s = admin_settings()
    await apply_version(pool, policy_from_document(document, s.enforcement), s, PRICES, now=NOW - timedelta(days=20),
                        approver="cli:ann", reason="test policy")


async def seed_downgrades(pool: asyncpg.Pool, *, explored_good: bool) -> None:
    """platform, asking for gpt-5.1: control and explored turns of 3K and of 12K tokens (explored ones as good
    as the control arm, or far worse), plain turns of both sizes, and a few budget-downgraded ones; interleaved
    over one day, with a monthly budget 2 % above what the live replay spends, so the downgrade stage (95 %)
    comes near the end and the pause (110 %) never."""
    def plain(i: int, size: int) -> UsageRecorded:
        return turn(i, "platform", arm=None, good=True, input_tokens=size)

    kinds = [
        [turn(i, "platform", arm="control", good=True) for i in range(0, 60)],
        [turn(i, "platform", arm="explore", good=explored_good) for i in range(100, 140)],
        [turn(i, "platform", arm="control", good=True, input_tokens=12_000) for i in range(200, 260)],
        [turn(i, "platform", arm="explore", good=explored_good, input_tokens=12_000) for i in range(300, 340)],
        [plain(i, 3_000) for i in range(400, 600)],
        [plain(i, 12_000) for i in range(600, 800)],
        [msgspec.structs.replace(plain(i, 3_000), model_used="gpt-5.1-mini", route_reason="downgrade",
                                 stage="downgrade") for i in range(800, 810)],
    ]
    mixed = [e for row in zip_longest(*kinds) for e in row if e is not None]
    events = [msgspec.structs.replace(e, occurred_at=DAY + timedelta(minutes=i)) for i, e in enumerate(mixed)]
    total = sum(at_flagship(e) for e in events)
    await use_policy(pool, {"budgets": [{"scope": "team:platform", "monthly": f"{total * 1.02 / 1e6:.2f}",
                                         "thresholds": [80, 95, 110]}]})
    await insert_events(pool, events)


async def test_a_larger_downgrade_limit_and_an_earlier_stage_are_proposed_where_the_cheaper_model_did_as_well(
        pool: asyncpg.Pool) -> None:
    """The 12K-token turns explored on gpt-5.1-mini scored as well: the limit goes to 32K, with the dry-run's
    saving and extra downgrades and no extra pause; the small turns too: the downgrade stage moves to 85 % (of 90
    and 85, the one that saves more)."""
    await seed_downgrades(pool, explored_good=True)
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    by_kind = {s.kind: s for s in found.suggestions}
    limit = by_kind["downgrade_limit"]
    assert limit.scope == "org" and limit.change == {"downgrade_max_input_tokens": 32_000}
    assert limit.document["downgrade_max_input_tokens"] == 32_000 and "+downgrade_max_input_tokens: 32000" in limit.diff
    assert limit.dry_run is not None and limit.dry_run.team == "" and limit.dry_run.extra_pauses <= 0
    assert limit.dry_run.saved_micros > 0 and limit.extra_downgrades > 0
    assert limit.evidence is not None and limit.evidence.explored_n == 40 and limit.evidence.baseline_n == 60
    assert limit.evidence.upper is not None and limit.evidence.upper <= 0.02
    assert "let turns under 32,000 input tokens (today 10,000) downgrade" in limit.summary
    assert "40 explored" in limit.summary and "0 extra pauses" in limit.summary
    stage = by_kind["stage_threshold"]
    assert stage.scope == "team:platform" and stage.change == {"scope": "team:platform", "thresholds": [80, 85, 110]}
    assert stage.dry_run is not None and stage.dry_run.team == "platform" and stage.dry_run.saved_micros > 0
    assert stage.dry_run.extra_pauses <= 0 and "at 85 % of its budget instead of 95 %" in stage.summary
    [doc_budget] = stage.document["budgets"]
    assert doc_budget["thresholds"] == [80, 85, 110]
    assert all(NAME_PATTERN.fullmatch(s.id) for s in found.suggestions)


async def test_neither_is_proposed_where_the_cheaper_model_did_worse(pool: asyncpg.Pool) -> None:
    """The same traffic with the explored turns failing: no larger limit (harmful, with the numbers) and no
    earlier stage."""
    await seed_downgrades(pool, explored_good=False)
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    assert {s.kind for s in found.suggestions} & {"downgrade_limit", "stage_threshold"} == set()
    [limit] = [n for n in found.not_proposed if n.kind == "downgrade_limit"]
    assert limit.verdict == "harmful" and limit.scope == "org" and "above the tolerance" in limit.summary
    assert limit.evidence is not None and limit.evidence.lower is not None and limit.evidence.lower > 0.02


async def test_no_downgrade_in_the_window_means_no_larger_limit(pool: asyncpg.Pool) -> None:
    """Nobody reached a downgrade stage: a larger limit would change nothing, and it says so."""
    await insert_events(pool, [turn(i, "platform", arm="control", good=True) for i in range(40)])
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    [limit] = [n for n in found.not_proposed if n.kind == "downgrade_limit"]
    assert limit.verdict == "no_saving" and "no turn reached a downgrade stage" in limit.summary


async def save_forecast(pool: asyncpg.Pool, scope: str, p90: int) -> None:
    f = Forecast(month=date(2026, 11, 1), as_of=NOW.date(), actual_micros=p90 // 2, p10_micros=p90 // 3,
                 p50_micros=p90 * 2 // 3, p90_micros=p90, budget_micros=None, p10_crosses_on=None,
                 p50_crosses_on=None, p90_crosses_on=None, model="test", band=())
    async with pool.acquire() as conn:
        await forecasts.save_pass(conn, [(scope, f)], NOW)


async def test_an_unbudgeted_team_gets_a_budget_from_its_p90_unless_its_daily_part_would_pause_sessions(
        pool: asyncpg.Pool) -> None:
    """growth spends evenly: monthly = P90 $123.40 rounded up to $130, daily = $130 / 21 working days, no
    pause. spiky spent $6 in one day: its daily part (~$0.95) would pause that day's session: not proposed. A
forecast for a team name no policy document can hold (a newline in it) is skipped."""
    events = [usage_event(team="growth", developer="gina", key_id="k-growth", turn_id=f"g-{d}-{i}",
                          session_id=f"g-{d}", occurred_at=NOW - timedelta(days=d, hours=i), input_tokens=100_000,
                          cached_tokens=0, output_tokens=100) for d in range(1, 11) for i in range(3)]
    events += [usage_event(team="spiky", developer="sam", key_id="k-spiky", turn_id=f"s-{i}", session_id="s-1",
                           occurred_at=NOW - timedelta(days=2, minutes=60 - i), input_tokens=400_000,
                           cached_tokens=0, output_tokens=100) for i in range(12)]
    await insert_events(pool, events)
    await save_forecast(pool, "team:growth", 123_400_000)
    await save_forecast(pool, "team:spiky", 20_000_000)
    await save_forecast(pool, "team:evil\nname", 50_000_000)  # no document could hold it: skipped, no error
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    [budget] = [s for s in found.suggestions if s.kind == "budget"]
    assert working_days(2026, 11) == 21
    assert budget.scope == "team:growth" and budget.change == {"scope": "team:growth", "monthly": "130.000000",
                                                                "daily": "6.190476"}
    assert budget.dry_run is not None and budget.dry_run.extra_pauses == 0 and budget.dry_run.events == 42
    assert "P90 $123.40 rounded up to the next $10.00" in budget.summary and "21 working days" in budget.summary
    [doc] = [b for b in budget.document["budgets"] if b["scope"] == "team:growth"]
    assert doc["monthly"] == "130.000000" and doc["daily"] == "6.190476", doc
    assert all("evil" not in x.scope for x in [*found.suggestions, *found.not_proposed])
    [spiky] = [n for n in found.not_proposed if n.kind == "budget"]
    assert spiky.scope == "team:spiky" and spiky.verdict == "more_pauses" and "pauses 1 more sessions" in spiky.summary
    assert round_up(1) == BUDGET_STEP_MICROS and round_up(20_000_001) == 30_000_000


async def test_a_lower_retry_cap_is_proposed_where_retry_loops_ran(pool: asyncpg.Pool) -> None:
    """ops' sessions each ran a loop of three retries: with the cap at 1 instead of 3 (the best of 2 and 1) the
    dry-run refuses two more retries a loop and saves their cost, pausing nobody; calm ran none: nothing for it."""
    await use_policy(pool, {"budgets": [{"scope": "team:ops", "monthly": "10000"},
                                        {"scope": "team:calm", "monthly": "10000"}]})
    events = []
    for s in range(5):
        for i in range(4):
            events.append(usage_event(team="ops", developer="olga", key_id="k-ops", turn_id=f"o-{s}",
                                      session_id=f"ops-{s}", retry=i > 0,
                                      occurred_at=NOW - timedelta(days=1, hours=s, minutes=-i)))
    events += [usage_event(team="calm", developer="carl", key_id="k-calm", turn_id=f"c-{i}", session_id=f"calm-{i}",
                           occurred_at=NOW - timedelta(days=1, minutes=i)) for i in range(5)]
    await insert_events(pool, events)
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    [cap] = [s for s in found.suggestions if s.kind == "retry_cap"]
    assert cap.scope == "team:ops" and cap.change == {"scope": "team:ops", "retry_cap": 1}
    assert cap.retry_refusals == 10 and cap.dry_run is not None and cap.dry_run.extra_pauses == 0
    one_retry = events[3].cost_micros
    assert cap.dry_run.saved_micros == 10 * one_retry and cap.estimated_saving_micros == 10 * one_retry
    assert "from 3 to 1 (15 retry requests" in cap.summary and "10 more retry requests refused" in cap.summary
    [doc] = [b for b in cap.document["budgets"] if b["scope"] == "team:ops"]
    assert doc["retry_cap"] == 1
    assert lower_caps(3) == [2, 1] and lower_caps(1) == []  # a hostile cap of 1,000: 10 candidates, not 999
    assert lower_caps(1_000) == [999, 500, 250, 125, 62, 31, 15, 7, 3, 1]


async def test_rationing_proposals_are_listed_as_suggestions_filtered_by_team(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """platform's P50 crosses its budget: its three rationing proposals are suggestions of kind ``ration``, with
    the team filter too; another team's suggestions do not list them; the CLI's JSON has them."""
    s = ration_settings(tmp_path, db_url)
    await seed_ration(pool, s)
    await insert_events(pool, [usage_event(team="other", developer="otto", key_id="k-other", turn_id="x",
                                           occurred_at=RATION_NOW - timedelta(hours=1))])
    for team in (None, "platform"):
        found = await suggest(pool, s, PRICES, now=RATION_NOW, team=team)
        rations = [x for x in found.suggestions if x.kind == "ration"]
        assert sorted(x.change["ration"] for x in rations) == ["daily_cap", "downgrade_earlier", "routing_rule"]
        for x in rations:
            assert x.scope == "team:platform" and x.ration is not None and x.dry_run is None
            assert x.summary.startswith("ration team:platform: ") and "month-end P50 $82.00" in x.summary
            assert x.diff and NAME_PATTERN.fullmatch(x.id)
            policy_from_document(x.document, s.enforcement)
    other = await suggest(pool, s, PRICES, now=RATION_NOW, team="other")
    assert [x for x in other.suggestions if x.kind == "ration"] == []
    async with admin_client(pool, now=RATION_NOW) as client:
        resp = await client.get("/v1/policy/suggestions", headers=auth(), params={"team": "platform"})
        assert resp.status == 200, await resp.text()
        body = json.loads(await resp.text())
        kinds = [x["kind"] for x in body["suggestions"]]
        assert kinds.count("ration") == 3 and all(x["ration"]["p50_after_micros"] > 0 for x in body["suggestions"]
                                                  if x["kind"] == "ration")
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error",
           "SPENDGATE_ADMIN_URL": "", "SPENDGATE_POLICY__SIGNING_KEY": TEST_SIGNING_KEY}
    result = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "ration"], env=env)
    assert result.exit_code == 0 and "team:platform" in result.output, result.output
