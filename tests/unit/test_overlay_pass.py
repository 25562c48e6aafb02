"""The shared pass (:class:`spendgate.admin.overlay.Pass`) against a full replay of each candidate, on a
randomised org of three teams sharing an org budget that reaches its downgrade and pause stages: the totals
are the same to the micro-dollar, while a candidate that changes only its team's budget amount or thresholds
decides only the events where one of their balances is in another stage (``docs/policy.md``, "How a
candidate is checked")."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from spendgate.admin.overlay import Change, Pass, Totals
from spendgate.admin.replay import Replay, Usage
from spendgate.domain.enforcement import Policy, policy_from_document
from spendgate.domain.enforcement.policy import Thresholds
from spendgate.domain.enforcement.routing import RoutingTable, parse_rules
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.pricing import PriceTable, cost_micros

PRICES = PriceTable()
T0 = datetime(2026, 11, 3, tzinfo=UTC)
FLAGSHIP = PRICES.lookup("gpt-5.1").price
TEAMS = ("alpha", "beta", "gamma")


def events(seed: int, n: int = 3_000) -> list[Usage]:
    """``n`` requests over four days: three teams, sessions of a few turns, now and then a retry."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        team = TEAMS[rnd.randrange(3)]
        dev = f"{team}-{rnd.randrange(3)}"
        inp = rnd.choice((2_000, 6_000, 12_000, 30_000))
        cost = cost_micros(FLAGSHIP, input_tokens=inp, cached_tokens=0, output_tokens=800)
        out.append(Usage("", T0 + timedelta(seconds=115 * i), f"vk_{dev}", dev, team, f"{dev}-s{i // 40}",
                         f"{dev}-t{i // 7}", "gpt-5.1", "gpt-5.1", "requested", "ok", "ok", inp, 0, 800, cost,
                         rnd.random() < 0.05, cost_center=f"cc-{team}"))
    return out


def live_policy(total_micros: int) -> Policy:
    """The org budget reaches its downgrade stage late in the window and its pause stage near the end;
    alpha's own budget gets to its downgrade stage late too."""
    return policy_from_document({"retry_cap": 3, "budgets": [
        {"scope": "org", "monthly": f"{total_micros * 100 // 104 / 1e6:.6f}"},
        {"scope": "team:alpha", "monthly": f"{total_micros * 3 // 10 / 1e6:.6f}"},
        {"scope": "team:beta", "monthly": f"{total_micros / 1e6:.6f}", "timezone": "Europe/Berlin"},
    ]}, EnforcementSettings())


def with_budget(live: Policy, scope: str, **fields: object) -> Policy:
    b = replace(live.budgets[scope], **fields)  # type: ignore[arg-type]
    return live.with_budgets([*(x for s, x in live.budgets.items() if s != scope), b], live.raises)


def full(policy: Policy, feed: list[Usage]) -> Totals:
    r = Replay(policy, PRICES)
    for u in feed:
        r.feed(u)
    tallies = r.scopes.values()
    return Totals(events=r.events, spend_micros=r.spend_micros, paused_sessions=len(r.pauses),
                  differences=r.differences, downgrades=sum(t.downgrades for t in tallies),
                  forced_cheapest=sum(t.forced_cheapest for t in tallies), retry_refused=r.retry_refused)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_shared_pass_gives_every_candidates_full_replay_totals(seed: int) -> None:
    """Stage thresholds and budget amounts (decided only where a stage moves), a retry cap, a size limit and a
    routing rule, on the same events: each candidate's totals equal its own full replay's."""
    feed = events(seed)
    live = live_policy(sum(u.cost_micros for u in feed))
    alpha, beta = live.budgets["team:alpha"], live.budgets["team:beta"]
    [rule] = parse_rules([{"name": "small", "scope": "team:gamma", "max_input_tokens": 8_000,
                           "model": "gpt-5.1-mini", "models": ["gpt-5.1"]}], timezone_of=lambda _: "UTC")
    candidates = [
        (with_budget(live, "team:alpha", thresholds=Thresholds(80, 85, 110)), Change(scopes=frozenset({"team:alpha"}))),
        (with_budget(live, "team:alpha", thresholds=Thresholds(70, 75, 100)), Change(scopes=frozenset({"team:alpha"}))),
        (with_budget(live, "team:alpha", monthly_micros=alpha.monthly_micros // 2),  # type: ignore[operator]
         Change(scopes=frozenset({"team:alpha"}))),
        (with_budget(live, "team:beta", monthly_micros=beta.monthly_micros // 4),  # type: ignore[operator]
         Change(scopes=frozenset({"team:beta"}))),
        (with_budget(live, "team:beta", retry_cap=1), Change(scopes=frozenset({"team:beta"}), retry_only=True)),
        (replace(live, downgrade_max_input_tokens=32_000), Change(size_window=(10_000, 32_000))),
        (replace(live, routing=RoutingTable((rule,))), Change(scopes=frozenset({"team:gamma"}), rule=rule)),
    ]
    shared = Pass(live, PRICES, candidates)
    for u in feed:
        shared.feed(u)
    base, overlaid = shared.totals()
    wanted = [full(p, feed) for p, _ in candidates]
    assert base == full(live, feed)
    assert overlaid == wanted
    assert len({t.spend_micros for t in wanted}) == len(wanted)  # every candidate changes something
    assert any(t.paused_sessions != base.paused_sessions for t in wanted)
    stages_only = [o for o in shared.overlays if o.stages_only]
    assert len(stages_only) == 4
    alpha_events = sum(u.team == "alpha" for u in feed)
    assert all(o.diff.decided > 0 for o in stages_only)
    for o in stages_only[:2]:  # the thresholds: only where a stage moved, not every alpha event
        assert o.diff.decided < alpha_events // 2


def test_a_change_beyond_amounts_and_thresholds_decides_every_event_of_its_scope() -> None:
    """A new period (a daily budget where there was none), another at-pause action or retry cap: not a
    stages-only change, so the candidate decides every event of its team."""
    feed = events(4, 600)
    live = live_policy(sum(u.cost_micros for u in feed))
    alpha = frozenset({"team:alpha"})
    for proposal in (with_budget(live, "team:alpha", daily_micros=10**6), with_budget(live, "team:alpha",
                                                                                    at_pause="cheapest"),
                     with_budget(live, "team:alpha", retry_cap=1)):
        shared = Pass(live, PRICES, [(proposal, Change(scopes=alpha))])
        for u in feed:
            shared.feed(u)
        [overlay] = shared.overlays
        assert not overlay.stages_only
        assert overlay.diff.decided >= sum(u.team == "alpha" for u in feed)
        assert shared.totals()[1] == [full(proposal, feed)]
