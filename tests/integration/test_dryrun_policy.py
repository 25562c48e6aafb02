"""Policy dry-run over a month of traffic that a proxy enforcing the live policy let through, folded by
the real ledger: the live policy replays to exactly what happened; a stricter one shows its extra pauses."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec
import pytest

from spendgate.admin.dryrun import DryRun, dry_run
from spendgate.admin.policy import apply, live_policy, to_document
from spendgate.admin.policy_cli import describe
from spendgate.admin.replay import Usage, actual_outcome
from spendgate.domain.enforcement import BudgetRaise, Policy, policy_from_document
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import cost_micros
from spendgate.store.budgets import store
from tests.support.admin_enforced import LIVE_POLICY, STRICT_POLICY, enforce, plan_month
from tests.support.admin_server import NOW, admin_client, auth
from tests.support.admin_traffic import PRICES, fold_through_ledger

DEFAULTS = EnforcementSettings()


def policy(doc: dict[str, object]) -> Policy:
    return policy_from_document(doc, DEFAULTS)


def as_usage(e: UsageRecorded) -> Usage:
    return Usage(e.event_id, e.occurred_at, e.key_id, e.developer, e.team, e.session_id, e.turn_id,
                 e.model_requested, e.model_used, e.route_reason, e.stage, e.status, e.input_tokens,
                 e.cached_tokens, e.output_tokens, e.cost_micros, e.retry)


@pytest.fixture
async def live_month(pool: asyncpg.Pool) -> list[UsageRecorded]:
    """The live policy applied to the database, and November's traffic as it enforced it, folded."""
    await apply(pool, policy(LIVE_POLICY), DEFAULTS, now=datetime(2026, 10, 31, tzinfo=UTC), actor="test")
    events = enforce(plan_month(), policy(LIVE_POLICY))
    await fold_through_ledger(pool, events)
    return events


async def test_the_live_policy_replays_to_exactly_what_happened(pool: asyncpg.Pool,
                                                                live_month: list[UsageRecorded]) -> None:
    """Same downgrades, same forced-cheapest requests, same pauses, same retry refusals, same spend."""
    live = await live_policy(pool, DEFAULTS, NOW)
    result, replay = await dry_run(pool, live, PRICES, days=30, now=NOW, trace=True)
    assert replay.trace == {e.event_id: actual_outcome(as_usage(e)) for e in live_month}
    assert result.differences == 0 and result.events == len(live_month)
    assert result.spend_micros == result.actual_micros == sum(e.cost_micros for e in live_month)
    assert result.downgrades == sum(e.route_reason == "downgrade" for e in live_month) > 0
    assert result.forced_cheapest == sum(e.route_reason == "pause_cheapest" for e in live_month) > 0
    assert result.retry_refused == sum(e.status == "refused" and e.stage != "pause" for e in live_month) > 0
    paused = {e.session_id: e.occurred_at for e in live_month if e.status == "refused" and e.stage == "pause"}
    found = {p.session_id: p.paused_at for s in result.scopes for p in s.paused_sessions}
    assert found == paused and len(paused) > 0
    for s in result.scopes:
        assert s.spend_micros == s.actual_micros


async def test_the_live_replay_alerts_when_the_ledger_crossed_thresholds(pool: asyncpg.Pool,
                                                                        live_month: list[UsageRecorded]) -> None:
    """Every alert the replay would send is a threshold crossing the ledger wrote, same time and amounts."""
    result, _ = await dry_run(pool, await live_policy(pool, DEFAULTS, NOW), PRICES, days=30, now=NOW)
    replayed = {(s.scope, a.period, a.period_start, a.threshold_pct, a.stage, a.at, a.spent_micros, a.budget_micros)
                for s in result.scopes for a in s.alerts}
    crossed = {tuple(r) for r in await pool.fetch(
        "SELECT scope, period, period_start, threshold_pct, stage, crossed_at, spent_micros, budget_micros "
        "FROM threshold_crossings")}
    assert replayed == crossed and len(crossed) > 10
    assert any(a[0] == "org" and a[3] == 50 for a in replayed)


def bob_oracle(events: list[UsageRecorded], budget_micros: int) -> dict[str, tuple[datetime, int]]:
    """Bob's daily budget pauses at 100 %: once his day's spend reaches it, each later request is refused."""
    spent: dict[date, int] = defaultdict(int)
    pauses: dict[str, tuple[datetime, int]] = {}
    turns_done: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.developer != "bob" or actual_outcome(as_usage(e)) == "retry_refuse":
            continue
        assert e.session_id is not None and e.turn_id is not None
        day = e.occurred_at.date()
        if spent[day] >= budget_micros:
            pauses.setdefault(e.session_id, (e.occurred_at, len(turns_done[e.session_id])))
        else:
            spent[day] += e.cost_micros
            turns_done[e.session_id].add(e.turn_id)
    return pauses


async def test_a_stricter_proposal_shows_the_extra_pauses_it_would_cause(pool: asyncpg.Pool,
                                                                        live_month: list[UsageRecorded]) -> None:
    """Adding a tight daily budget for bob pauses exactly the sessions a plain day-by-day tally predicts."""
    live, _ = await dry_run(pool, await live_policy(pool, DEFAULTS, NOW), PRICES, days=30, now=NOW)
    strict, _ = await dry_run(pool, policy(STRICT_POLICY), PRICES, days=30, now=NOW)
    bob = {p.session_id: (p.paused_at, p.turns_before)
           for s in strict.scopes if s.scope == "developer:bob" for p in s.paused_sessions}
    assert bob == bob_oracle(live_month, 300_000) and len(bob) >= 5
    assert strict.paused_sessions == live.paused_sessions + len(bob)
    assert strict.spend_micros < strict.actual_micros == live.actual_micros
    bob_scope = next(s for s in strict.scopes if s.scope == "developer:bob")
    cut = sum(p.remaining_cost_micros for p in bob_scope.paused_sessions)
    assert bob_scope.actual_micros - bob_scope.spend_micros == cut > 0
    assert [a.threshold_pct for a in bob_scope.alerts if a.period_start == bob_scope.alerts[0].period_start][:2] == [
        50, 100]


async def test_a_live_raise_counts_in_the_replay_only_from_when_it_was_made(pool: asyncpg.Pool,
                                                                          live_month: list[UsageRecorded]) -> None:
    """`policy show` writes a stored raise's creation time as its `from`; the dry-run of that document pauses
    bob as without the raise until then, and not after."""
    await apply(pool, policy(STRICT_POLICY), DEFAULTS, now=NOW, actor="test")
    made = datetime(2026, 11, 20, tzinfo=UTC)
    await store.raise_budget(pool, BudgetRaise("developer:bob", 100_000_000, datetime(2027, 1, 1, tzinfo=UTC),
                                               "release week"), actor="test")
    await pool.execute("UPDATE budget_raises SET created_at = $1", made)  # as if made that day
    live = await live_policy(pool, DEFAULTS, NOW)
    doc = to_document(live)
    assert doc["raises"][0]["from"] == made.isoformat()
    result, _ = await dry_run(pool, policy(doc), PRICES, days=30, now=NOW)
    paused = {p.session_id: (p.paused_at, p.turns_before)
              for s in result.scopes if s.scope == "developer:bob" for p in s.paused_sessions}
    without_raise = bob_oracle(live_month, 300_000)
    assert paused == {sid: p for sid, p in without_raise.items() if p[0] < made}
    assert 0 < len(paused) < len(without_raise)  # pauses before the raise stay; the ones after it go
    assert (await dry_run(pool, live, PRICES, days=30, now=NOW))[0].paused_sessions == result.paused_sessions


async def test_downgrade_savings_are_repriced_at_the_cascade_model(pool: asyncpg.Pool,
                                                                  live_month: list[UsageRecorded]) -> None:
    """Money saved is, request by request, the requested model's price minus the cascade model's."""
    eager = {"budgets": [{"scope": "team:platform", "daily": "0.50", "thresholds": [10, 20, 1000]}]}
    result, replay = await dry_run(pool, policy(eager), PRICES, days=30, now=NOW, trace=True)
    assert replay.trace is not None
    downgraded = [e for e in live_month if replay.trace[e.event_id] == "downgrade"]
    expected = 0
    for e in downgraded:
        full = cost_micros(PRICES.lookup("gpt-5.1-codex").price, input_tokens=e.input_tokens,
                           cached_tokens=e.cached_tokens, output_tokens=e.output_tokens)
        mini = cost_micros(PRICES.lookup("gpt-5.1-codex-mini").price, input_tokens=e.input_tokens,
                           cached_tokens=e.cached_tokens, output_tokens=e.output_tokens)
        expected += full - mini
        assert e.team == "platform" and e.input_tokens < 10_000
    (platform,) = result.scopes
    assert platform.downgrades == len(downgraded) > 20
    assert platform.downgrade_saved_micros == result.downgrade_saved_micros == expected > 0


async def test_apply_makes_the_live_policy_the_proposal_and_show_round_trips(pool: asyncpg.Pool) -> None:
    """After `policy apply`, the live policy equals the proposal; its document parses back to the same policy."""
    await apply(pool, policy(LIVE_POLICY), DEFAULTS, now=NOW, actor="test")
    done = await apply(pool, policy(STRICT_POLICY), DEFAULTS, now=NOW, actor="test")
    assert done.set_budgets == ["developer:bob"] and done.deleted_budgets == [] and done.settings_differences == []
    live = await live_policy(pool, DEFAULTS, NOW)
    assert live == policy(STRICT_POLICY)
    assert policy(to_document(live)) == live
    back = await apply(pool, policy(LIVE_POLICY), DEFAULTS, now=NOW, actor="test")
    assert back.deleted_budgets == ["developer:bob"] and len(back.unchanged_budgets) == 3


async def test_apply_starts_a_new_raise_now_and_refuses_one_that_starts_later(pool: asyncpg.Pool) -> None:
    """A proposal's raise that started already is stored (starting when applied); one still to start is refused."""
    def with_raise(start: datetime) -> Policy:
        return policy({**LIVE_POLICY, "raises": [{"scope": "org", "by": "5", "from": start.isoformat(),
                                                   "until": "2027-01-01T00:00:00Z", "reason": "launch"}]})

    with pytest.raises(ConfigError, match="starts when it is applied"):
        await apply(pool, with_raise(NOW + timedelta(days=1)), DEFAULTS, now=NOW, actor="test")
    done = await apply(pool, with_raise(NOW - timedelta(days=1)), DEFAULTS, now=NOW, actor="test")
    assert done.added_raises == ["org +5.000000 until 2027-01-01T00:00:00+00:00"] and done.ended_raises == []


async def test_apply_names_a_raise_that_ended_before_now_instead_of_dropping_it_silently(pool: asyncpg.Pool) -> None:
    """A proposal's raise that already ended (a mistyped year) is not stored, and apply says so (it said nothing)."""
    ended = policy({**LIVE_POLICY, "raises": [{"scope": "org", "by": "5", "from": "2020-01-01T00:00:00Z",
                                                "until": "2020-02-01T00:00:00Z", "reason": "launch"}]})
    done = await apply(pool, ended, DEFAULTS, now=NOW, actor="test")
    assert done.added_raises == [] and done.ended_raises == ["org +5.000000 until 2020-02-01T00:00:00+00:00"]


async def test_the_api_dry_run_and_apply_are_the_same_functions(pool: asyncpg.Pool,
                                                               live_month: list[UsageRecorded]) -> None:
    """POST /v1/policy/dry-run returns what dry_run computes; POST /v1/policy/apply makes the proposal live."""
    direct, _ = await dry_run(pool, policy(STRICT_POLICY), PRICES, days=30, now=NOW)
    async with admin_client(pool) as client:
        resp = await client.post("/v1/policy/dry-run", headers=auth(), json={"proposal": STRICT_POLICY, "days": 30})
        assert resp.status == 200
        via_api = msgspec.json.decode(await resp.read(), type=DryRun)
        assert msgspec.structs.replace(via_api, elapsed_ms=0) == msgspec.structs.replace(direct, elapsed_ms=0)
        bad = await client.post("/v1/policy/dry-run", headers=auth(), json={"proposal": {"budgets": [{"scope": "x"}]}})
        assert bad.status == 400 and "needs a daily, weekly or monthly" in (await bad.json())["error"]["message"]
        deep = '{"proposal": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}"  # was a 500 (RecursionError)
        for body in (deep, '{"proposal": {"budgets": [{"scope": "team:a", "monthly": "1e30"}]}}'):
            bad = await client.post("/v1/policy/dry-run", headers=auth(), data=body)
            assert bad.status == 400 and len((await bad.json())["error"]["message"]) < 200, await bad.text()
        applied = await client.post("/v1/policy/apply", headers=auth(), json={"proposal": STRICT_POLICY})
        assert (await applied.json())["set_budgets"] == ["developer:bob"]
        shown = await (await client.get("/v1/policy", headers=auth())).json()
    assert policy(shown["policy"]) == await live_policy(pool, DEFAULTS, NOW) == policy(STRICT_POLICY)


async def test_a_proposal_that_explores_says_how_many_turns_and_what_it_saves(
        pool: asyncpg.Pool, live_month: list[UsageRecorded]) -> None:
    """The replay draws each turn's arm with the proxy's own keyed hash: exactly the eligible turns the
    hash puts in the explore arm go to the next cheaper model, and the saving is theirs, repriced."""
    block = {"share_pct": 20, "teams": ["platform"], "max_input_tokens": 10_000}
    exploring = policy({"exploration": block})
    result, _ = await dry_run(pool, exploring, PRICES, days=30, now=NOW)
    assert exploring.exploration is not None
    eligible = [e for e in live_month if e.team == "platform" and e.turn_id is not None and e.status != "refused"
                and e.input_tokens < 10_000 and e.model_requested == "gpt-5.1-codex"]
    explored = [e for e in eligible if exploring.exploration.arm(e.turn_id or "") == "explore"]
    assert 0 < len(explored) < len(eligible)
    saved = sum(cost_micros(PRICES.lookup("gpt-5.1-codex").price, input_tokens=e.input_tokens,
                            cached_tokens=e.cached_tokens, output_tokens=e.output_tokens)
                - cost_micros(PRICES.lookup("gpt-5.1-codex-mini").price, input_tokens=e.input_tokens,
                              cached_tokens=e.cached_tokens, output_tokens=e.output_tokens) for e in explored)
    assert result.exploration and result.explore_requests == len(explored)
    assert result.explored_turns == len({e.turn_id for e in explored})
    assert result.explore_saved_micros == saved > 0
    assert "exploration: " in describe(result) and f"{result.explored_turns} turns" in describe(result)
    plain, _ = await dry_run(pool, policy({}), PRICES, days=30, now=NOW)
    assert (plain.exploration, plain.explore_requests, plain.explore_saved_micros) == (False, 0, 0)
