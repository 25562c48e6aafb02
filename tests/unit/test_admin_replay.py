"""The replay engine on hand-built events: stages, alerts, pauses, retries, seeds and raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spendgate.admin.replay import Replay, Usage, actual_outcome
from spendgate.domain.enforcement import Policy, policy_from_document
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.money import usd_str
from spendgate.domain.pricing import PriceTable, cost_micros

PRICES = PriceTable()
T0 = datetime(2026, 11, 10, 9, tzinfo=UTC)
CODEX = PRICES.lookup("gpt-5.1-codex").price
MINI = PRICES.lookup("gpt-5.1-codex-mini").price


def policy(**budget: object) -> Policy:
    return policy_from_document({"budgets": [{"scope": "developer:alice", **budget}], "retry_cap": 2},
                                EnforcementSettings())


def request(n: int, *, session: str = "s1", turn: str = "t1", inp: int = 5_000, cost: int | None = None,
            retry: bool = False, status: str = "ok", stage: str = "ok", route: str = "requested",
            at: datetime | None = None) -> Usage:
    price_cost = cost_micros(CODEX, input_tokens=inp, cached_tokens=0, output_tokens=1_000)
    return Usage(f"e{n}", at or T0 + timedelta(minutes=n), "vk_a", "alice", "platform", session, turn,
                 "gpt-5.1-codex", "gpt-5.1-codex", route, stage, status, inp, 0, 1_000,
                 price_cost if cost is None else cost, retry)


def test_requests_walk_through_the_stages_in_order() -> None:
    """Below 80 % pass, at 95 % small turns downgrade (repriced at the cascade model), at 110 % refuse."""
    one = request(0).cost_micros
    r = Replay(policy(daily=usd_str(one * 10)), PRICES, trace=True)
    outcomes = [r.feed(request(n)) for n in range(20)]
    assert outcomes[:10] == ["pass"] * 10
    assert "downgrade" in outcomes and outcomes[-1] == "refuse"
    saved = sum(one - cost_micros(MINI, input_tokens=5_000, cached_tokens=0, output_tokens=1_000)
                for o in outcomes if o == "downgrade")
    (tally,) = r.scopes.values()
    assert tally.downgrade_saved_micros == saved > 0
    assert [a.threshold_pct for a in r.alerts] == [80, 95, 110]


def test_large_turns_keep_the_flagship_at_the_downgrade_stage() -> None:
    """A turn estimated at 10,000 input tokens or more is not downgraded; it passes until the pause."""
    big = request(0, inp=20_000).cost_micros
    r = Replay(policy(daily=usd_str(big * 10)), PRICES)
    outcomes = [r.feed(request(n, inp=20_000)) for n in range(13)]
    assert "downgrade" not in outcomes and outcomes[-1] == "refuse"


def test_a_pause_records_the_session_its_turns_and_what_it_cut() -> None:
    """The paused session: when, after how many turns, how many requests and how much money were cut."""
    r = Replay(policy(daily="0.01", thresholds=[100, 100, 100]), PRICES)
    feed = [request(n, turn=f"t{n // 2}", inp=4_000) for n in range(8)]
    for u in feed:
        r.feed(u)
    (pause,) = r.pauses
    spent_before = 0
    passed = 0
    for u in feed:
        if spent_before >= 10_000:
            break
        spent_before += u.cost_micros
        passed += 1
    assert pause.requests_before == passed and pause.paused_at == feed[passed].occurred_at
    assert pause.turns_before == len({u.turn_id for u in feed[:passed]})
    assert pause.refused_requests == len(feed) - passed
    assert pause.remaining_cost_micros == sum(u.cost_micros for u in feed[passed:])
    assert pause.resumed_at is None


def test_a_paused_session_resumes_when_the_day_resets() -> None:
    """A daily pause ends at local midnight: the session's next request the following day passes again."""
    r = Replay(policy(daily="0.01", thresholds=[100, 100, 100]), PRICES)
    for n in range(6):
        r.feed(request(n, inp=4_000))
    tomorrow = T0 + timedelta(days=1)
    assert r.feed(request(9, at=tomorrow)) == "pass"
    assert r.pauses[0].resumed_at == tomorrow


def test_a_run_of_retries_is_refused_at_the_retry_cap() -> None:
    """With a cap of 2 the second consecutive retry is refused; a normal request ends the run."""
    r = Replay(policy(daily="100"), PRICES)
    assert [r.feed(request(n, retry=n in (1, 2, 3))) for n in range(5)] == [
        "pass", "pass", "retry_refuse", "retry_refuse", "pass"]
    assert r.retry_refused == 2


def test_spend_from_before_the_window_counts_in_its_period() -> None:
    """Seeded spend from earlier the same day makes the first replayed request already paused."""
    r = Replay(policy(daily="1"), PRICES)
    r.seed("vk_a", "alice", "platform", T0 - timedelta(hours=2), 1_100_000)
    assert r.feed(request(0)) == "refuse"
    r2 = Replay(policy(daily="1"), PRICES)
    r2.seed("vk_a", "alice", "platform", T0 - timedelta(days=1), 1_100_000)
    assert r2.feed(request(0)) == "pass"


def raised(start: datetime, until: datetime) -> Policy:
    """Alice's daily budget of $1, raised by $1 from ``start`` until ``until``."""
    doc = {"budgets": [{"scope": "developer:alice", "daily": "1"}],
           "raises": [{"scope": "developer:alice", "by": "1", "from": start.isoformat(), "until": until.isoformat(),
                       "reason": "demo day"}]}
    return policy_from_document(doc, EnforcementSettings())


def test_an_active_raise_lifts_the_limit_until_it_expires() -> None:
    """With a raise, the same spend stays below the pause; once the raise expires it pauses."""
    r = Replay(raised(T0 - timedelta(days=1), T0 + timedelta(minutes=30)), PRICES)
    r.seed("vk_a", "alice", "platform", T0 - timedelta(hours=1), 1_150_000)
    assert r.feed(request(1)) == "pass"
    assert r.feed(request(40)) == "refuse"


def test_a_raise_counts_only_from_its_start() -> None:
    """Before a raise's start the replay pauses as without it; from the start on the raise lifts the limit."""
    r = Replay(raised(T0 + timedelta(minutes=30), T0 + timedelta(days=1)), PRICES)
    r.seed("vk_a", "alice", "platform", T0 - timedelta(hours=1), 1_150_000)
    assert r.feed(request(1)) == "refuse"
    assert r.feed(request(31)) == "pass"


def test_live_outcomes_are_read_back_from_the_event() -> None:
    """Route reason and refusal stage on the stored event tell what the live policy did."""
    assert actual_outcome(request(0)) == "pass"
    assert actual_outcome(request(0, route="downgrade")) == "downgrade"
    assert actual_outcome(request(0, route="pause_cheapest")) == "pause_cheapest"
    assert actual_outcome(request(0, status="refused", stage="pause")) == "refuse"
    assert actual_outcome(request(0, status="refused", retry=True)) == "retry_refuse"
    assert actual_outcome(request(0, status="refused")) == "refused_other"


def test_a_request_refused_for_another_reason_stays_refused() -> None:
    """A live refusal that is neither a pause nor a retry (an unpriced model) is refused again, at no cost."""
    r = Replay(policy(daily="100"), PRICES, trace=True)
    assert r.feed(request(0, status="refused", cost=0)) == "refused_other"
    assert (r.differences, r.spend_micros) == (0, 0)


def test_a_hard_cap_alerts_once_as_a_pause() -> None:
    """Thresholds 100,100,100 give one alert at 100 %, stage pause, as the ledger's crossing (was three alerts)."""
    r = Replay(policy(daily="0.01", thresholds=[100, 100, 100]), PRICES)
    for n in range(6):
        r.feed(request(n, inp=4_000))
    assert [(a.threshold_pct, a.stage) for a in r.alerts] == [(100, "pause")]


def test_an_expired_raise_alerts_the_thresholds_it_leaves_the_balance_past() -> None:
    """$1.50 under $1 + $1 raise alerts nothing; after the raise expires the next request is refused and
    80/95/110 % are alerted then, as the ledger records them (the replay used to alert none)."""
    doc = {"budgets": [{"scope": "developer:alice", "daily": "1"}],
           "raises": [{"scope": "developer:alice", "by": "1", "from": (T0 - timedelta(hours=1)).isoformat(),
                       "until": (T0 + timedelta(minutes=30)).isoformat(), "reason": "demo day"}]}
    r = Replay(policy_from_document(doc, EnforcementSettings()), PRICES)
    assert r.feed(request(0, cost=1_500_000)) == "pass" and r.alerts == []
    assert r.feed(request(40)) == "refuse"
    assert [(a.threshold_pct, a.stage, a.at) for a in r.alerts] == [
        (80, "alert", T0 + timedelta(minutes=40)), (95, "downgrade", T0 + timedelta(minutes=40)),
        (110, "pause", T0 + timedelta(minutes=40))]


def test_seeded_spend_past_a_threshold_is_not_alerted_in_the_window() -> None:
    """Spend from before the window that already passed 80 % was alerted before it: only 95 % is new."""
    r = Replay(policy(daily="1"), PRICES)
    r.seed("vk_a", "alice", "platform", T0 - timedelta(hours=2), 900_000)
    r.feed(request(0, cost=60_000))
    assert [a.threshold_pct for a in r.alerts] == [95]


def test_a_downgraded_claude_request_is_repriced_with_its_cache_writes() -> None:
    """Replayed on a Claude cascade, a downgraded request costs the cheaper model's price for its cache
    writes too (5 minutes 1.25x, 1 hour 2x input), and the saving is the difference of both full costs."""
    opus, sonnet = PRICES.lookup("claude-opus-4-5").price, PRICES.lookup("claude-sonnet-4-5").price
    tokens = {"input_tokens": 5_000, "cached_tokens": 1_000, "output_tokens": 1_000,
              "cache_write_5m_tokens": 2_000, "cache_write_1h_tokens": 1_000}
    one = cost_micros(opus, **tokens)
    settings = EnforcementSettings(cascades={"claude-opus-4-5": ["claude-sonnet-4-5"]})
    p = policy_from_document({"budgets": [{"scope": "developer:alice", "daily": usd_str(one * 10)}]}, settings)
    r = Replay(p, PRICES)
    feed = [Usage(f"e{n}", T0 + timedelta(minutes=n), "vk_a", "alice", "platform", "s1", "t1", "claude-opus-4-5",
                  "claude-opus-4-5", "requested", "ok", "ok", 5_000, 1_000, 1_000, one, False, 2_000, 1_000)
            for n in range(12)]
    outcomes = [r.feed(u) for u in feed]
    downgrades = outcomes.count("downgrade")
    (tally,) = r.scopes.values()
    assert downgrades > 0
    assert tally.downgrade_saved_micros == downgrades * (one - cost_micros(sonnet, **tokens))
    # by hand, micro-dollars: plain 1,000, read 1,000, written 2,000 (5 m) + 1,000 (1 h), output 1,000
    assert (one, cost_micros(sonnet, **tokens)) == (5_000 + 500 + 12_500 + 10_000 + 25_000,
                                                    3_000 + 300 + 7_500 + 6_000 + 15_000)


def test_a_per_model_cap_and_step_down_replay_as_the_proxy_decides() -> None:
    """A gpt-5.1-codex-only cap with step_down: past its pause, every turn (large ones too) is served one step down
    at the cheaper price, the cap's tally counts only its model's spend, and the org's counts all."""
    one = request(0, inp=20_000).cost_micros
    p = policy_from_document({"budgets": [
        {"scope": "org", "model": "gpt-5.1-codex", "daily": usd_str(one * 3), "at_pause": "step_down"},
        {"scope": "org", "daily": "1000"}]}, EnforcementSettings())
    r = Replay(p, PRICES, trace=True)
    outcomes = [r.feed(request(n, inp=20_000)) for n in range(6)]
    assert outcomes[:3] == ["pass"] * 3 and outcomes[-1] == "pause_step_down"
    cap, org = r.scopes["org|model:gpt-5.1-codex"], r.scopes["org"]
    stepped = outcomes.count("pause_step_down")
    assert cap.downgrades == stepped and cap.downgrade_saved_micros > 0
    assert cap.spend_micros == one * (len(outcomes) - stepped)  # the stepped-down turns ran on another model
    assert org.spend_micros == r.spend_micros and org.actual_micros == cap.actual_micros == one * len(outcomes)
    assert actual_outcome(request(9, route="pause_step_down")) == "pause_step_down"


def test_a_dry_run_routes_small_turns_by_the_proposals_rules() -> None:
    """A proposal's routing rule reprices the small turns of its team in its hours at the rule's model; large
    turns and turns outside the hours keep the model they asked for."""
    rule = {"name": "small-mornings", "scope": "team:platform", "max_input_tokens": 8_000, "hours": "08:00-12:00",
            "timezone": "UTC", "model": "gpt-5.1-codex-mini"}
    r = Replay(policy_from_document({"routing_rules": [rule]}, EnforcementSettings()), PRICES)
    small, large = request(0, inp=5_000), request(1, inp=20_000)
    late = request(2, inp=5_000, at=T0 + timedelta(hours=4))
    for u in (small, large, late):
        r.feed(u)
    routed = cost_micros(MINI, input_tokens=5_000, cached_tokens=0, output_tokens=1_000)
    assert r.spend_micros == routed + large.cost_micros + late.cost_micros
    assert r.actual_micros - r.spend_micros == small.cost_micros - routed > 0
