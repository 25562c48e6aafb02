"""``policy suggest``'s deeper search and org-wide check over a real database: the downgrade stage tried 5, 10
and 15 points earlier, the best step kept (retry caps down to 1: test_policy_suggest_knobs); a retry cap that
saves one team's spend but, through the org budget it shares, lets another team run into its own pause is not
proposed; and the shared pass (:func:`spendgate.admin.dryrun.checks`) gives exactly the numbers of a full replay
of every event."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg

from spendgate.admin.dryrun import checks, dry_runs
from spendgate.admin.overlay import Change
from spendgate.admin.policy import live_policy
from spendgate.admin.suggest import suggest
from spendgate.domain.enforcement import Policy
from spendgate.domain.enforcement.policy import Thresholds
from spendgate.domain.enforcement.routing import RoutingTable, parse_rules
from spendgate.domain.events import UsageRecorded
from spendgate.store.usage.store import insert_events
from tests.integration.test_policy_suggest_knobs import DAY, NOW, PRICES, seed_downgrades, use_policy
from tests.support.admin_server import admin_settings
from tests.support.factories import usage_event

A_COST = 30_000
"""One alpha request: 20,000 input and 500 output tokens of gpt-5.1."""


async def seed_shared(pool: asyncpg.Pool) -> list[UsageRecorded]:
    """alpha runs ten retry loops (a request and three retries, 20K tokens: never downgraded), then beta one
    session of 20 small turns. The org budget puts the org at its downgrade stage after 28 of alpha's requests,
    so live, beta's turns run on gpt-5.1-mini ($0.00175 each) and stay far under beta's budget; beta's own
    pause line (100 % of $0.12, downgrade at 99 %) is four alpha requests: 14 of its turns on gpt-5.1."""
    await use_policy(pool, {"budgets": [{"scope": "org", "monthly": f"{28 * A_COST / 0.95 / 1e6:.6f}"},
                                        {"scope": "team:alpha", "monthly": "10000"},
                                        {"scope": "team:beta", "monthly": f"{4 * A_COST / 1e6:.6f}",
                                         "thresholds": [50, 99, 100]}]})
    events = [usage_event(team="alpha", cost_center="cc-alpha", developer="ada", key_id="k-alpha",
                          session_id=f"alpha-{s}", turn_id=f"alpha-{s}", retry=i > 0, input_tokens=20_000,
                          cached_tokens=0, output_tokens=500, occurred_at=DAY + timedelta(minutes=4 * s + i))
              for s in range(10) for i in range(4)]
    assert {e.cost_micros for e in events} == {A_COST}
    events += [usage_event(team="beta", cost_center="cc-beta", developer="bob", key_id="k-beta", session_id="beta-1",
                           turn_id=f"beta-{i}", input_tokens=3_000, cached_tokens=0, output_tokens=500,
                           occurred_at=DAY + timedelta(hours=5, minutes=i)) for i in range(20)]
    await insert_events(pool, events)
    return events


def with_cap(live: Policy, scope: str, cap: int) -> Policy:
    b = live.budgets[scope]
    return live.with_budgets([*(x for s, x in live.budgets.items() if s != scope), replace(b, retry_cap=cap)],
                             live.raises)


def with_stage(live: Policy, scope: str, downgrade_pct: int) -> Policy:
    b = live.budgets[scope]
    t = b.thresholds
    proposed = replace(b, thresholds=Thresholds(t.alert_pct, downgrade_pct, t.pause_pct))
    return live.with_budgets([*(x for s, x in live.budgets.items() if s != scope), proposed], live.raises)


async def test_the_downgrade_stage_is_tried_up_to_15_points_earlier_and_the_best_step_is_kept(
        pool: asyncpg.Pool) -> None:
    """platform's small turns did as well on gpt-5.1-mini: 90 % and 85 % are both checked (80 % is the alert
    stage: not valid) and 85 % saves more, so it is the one proposed, with its own dry-run."""
    await seed_downgrades(pool, explored_good=True)
    live = await live_policy(pool, admin_settings().enforcement, NOW)
    base, (at90, at85) = await checks(pool, live, [(with_stage(live, "team:platform", p), Change(
        scopes=frozenset({"team:platform"}))) for p in (90, 85)], PRICES, days=30, now=NOW)
    assert base.spend_micros - at85.spend_micros > base.spend_micros - at90.spend_micros > 0
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    [stage] = [s for s in found.suggestions if s.kind == "stage_threshold"]
    assert stage.change == {"scope": "team:platform", "thresholds": [80, 85, 110]}
    assert stage.dry_run is not None and stage.dry_run.saved_micros == base.spend_micros - at85.spend_micros
    assert "at 85 % of its budget instead of 95 %" in stage.summary
    assert not [n for n in found.not_proposed if n.kind == "stage_threshold"]


async def test_a_saving_that_pauses_another_team_through_the_org_budget_is_not_proposed(pool: asyncpg.Pool) -> None:
    """A lower retry cap for alpha keeps the org under its downgrade stage, so beta's turns stay on gpt-5.1 and
    run into beta's own pause: replayed on alpha's events alone (as the check used to) that is invisible, and
    the cap would be proposed; replayed org-wide it pauses beta's session, and it is not."""
    await seed_shared(pool)
    live = await live_policy(pool, admin_settings().enforcement, NOW)
    alone = await dry_runs(pool, [live, with_cap(live, "team:alpha", 2)], PRICES, days=30, now=NOW, team="alpha")
    assert alone[1].paused_sessions == alone[0].paused_sessions == 0 and alone[1].spend_micros < alone[0].spend_micros
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    assert [s for s in found.suggestions if s.kind == "retry_cap"] == []
    [cap] = [n for n in found.not_proposed if n.kind == "retry_cap"]
    assert cap.scope == "team:alpha" and cap.verdict == "more_pauses"
    assert "pauses 1 more sessions" in cap.summary, cap.summary
    whole = await dry_runs(pool, [live, with_cap(live, "team:alpha", 2)], PRICES, days=30, now=NOW)
    assert whole[1].paused_sessions - whole[0].paused_sessions == 1
    [beta] = [s for s in whole[1].scopes if s.scope == "team:beta"]
    assert [p.session_id for p in beta.paused_sessions] == ["beta-1"]


async def test_the_shared_pass_gives_the_numbers_of_a_full_replay(pool: asyncpg.Pool) -> None:
    """Every candidate kind, through the shared pass (the live replay plus each candidate's differences) and
    through a full replay of every event: spend, pauses, downgrades, refusals and differences are equal, with
    the org budget and the downgrade and pause stages in play."""
    await seed_shared(pool)
    shared = await live_policy(pool, admin_settings().enforcement, NOW)
    await seed_downgrades(pool, explored_good=True)
    platform = await live_policy(pool, admin_settings().enforcement, NOW)
    async with pool.acquire() as conn:
        total = await conn.fetchval("SELECT sum(cost_micros) FROM usage_events")
    org = replace(shared.budgets["org"], monthly_micros=total * 97 // 100)  # the org's stages come late
    budgets = [*platform.budgets.values(), *(b for s, b in shared.budgets.items() if s != "org"), org]
    live = platform.with_budgets(budgets, platform.raises)
    team = frozenset({"team:platform"})
    [rule] = parse_rules([{"name": "small", "scope": "team:platform", "max_input_tokens": 20_000,
                           "model": "gpt-5.1-mini", "models": ["gpt-5.1"]}], timezone_of=lambda _: "UTC")
    candidates = [
        (replace(live, downgrade_max_input_tokens=32_000), Change(size_window=(10_000, 32_000))),
        (with_stage(live, "team:platform", 85), Change(scopes=team)),
        (with_stage(live, "team:platform", 90), Change(scopes=team)),
        (with_cap(live, "team:alpha", 1), Change(scopes=frozenset({"team:alpha"}), retry_only=True)),
        (with_cap(live, "team:alpha", 2), Change(scopes=frozenset({"team:alpha"}))),
        (with_stage(live, "team:beta", 85), Change(scopes=frozenset({"team:beta"}))),
        (replace(live, routing=RoutingTable((rule, *live.routing.rules))), Change(scopes=team, rule=rule)),
    ]
    base, overlaid = await checks(pool, live, candidates, PRICES, days=30, now=NOW)
    full = await dry_runs(pool, [live, *(p for p, _ in candidates)], PRICES, days=30, now=NOW)
    fields = ("events", "spend_micros", "paused_sessions", "differences", "downgrades", "forced_cheapest",
              "retry_refused")
    for got, want in zip([base, *overlaid], full, strict=True):
        assert {f: getattr(got, f) for f in fields} == {f: getattr(want, f) for f in fields}
    assert full[-1].spend_micros < full[0].spend_micros  # the rule routes (only its requests are decided)
    assert len({r.spend_micros for r in full}) >= 4  # the candidates really change spend, and pauses:
    assert any(r.paused_sessions != full[0].paused_sessions for r in full[1:])
    assert any(r.downgrades != full[0].downgrades for r in full[1:])
