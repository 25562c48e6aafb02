"""A month of Codex traffic as a proxy enforcing a live policy would have let it happen.

Planned requests (what the developers' agents try to send) go, in time order, through the
enforcement decision the proxy runs (:func:`spendgate.domain.enforcement.decide`) against the spend
settled so far: downgraded requests are served (and priced) by the cascade model, a pause refusal
is recorded as a refused event and Codex stops the session there, and a session's retry run is
refused at the retry cap (the turn ends). The events are what the ledger then folds.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spendgate.domain.enforcement import Policy, Principal, RequestFacts, decide
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.events import UsageRecorded
from tests.support.admin_traffic import DEVELOPERS, REPOS, usage

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)

LIVE_POLICY = {
    "budgets": [
        {"scope": "developer:alice", "daily": "0.40", "thresholds": [80, 95, 110]},
        {"scope": "team:payments", "daily": "0.80", "thresholds": [80, 95, 110], "at_pause": "cheapest"},
        {"scope": "org", "monthly": "60", "thresholds": [50, 95, 110]},
    ],
    "retry_cap": 3,
}
STRICT_POLICY = {
    "budgets": [
        *LIVE_POLICY["budgets"],
        {"scope": "developer:bob", "daily": "0.30", "thresholds": [50, 100, 100]},
    ],
    "retry_cap": 3,
}


@dataclass(frozen=True)
class Planned:
    developer: str
    session_id: str
    turn_id: str
    repo: str
    at: datetime
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    retry: bool


def plan_month(seed: int = 11) -> list[Planned]:
    """What the agents try to send in November 2026, in time order."""
    rnd = random.Random(seed)
    plan: list[Planned] = []
    n = 0
    for day in range(30):
        for developer in DEVELOPERS:
            for _ in range(rnd.randrange(0, 4)):
                n += 1
                session_id = f"s{n:04d}-{developer}"
                at = MONTH_START + timedelta(days=day, hours=8 + rnd.randrange(10), minutes=rnd.randrange(60))
                context = 1_500
                for turn in range(1 + rnd.randrange(4)):
                    retrying = rnd.random() < 0.15
                    for step in range(1 + rnd.randrange(5)):
                        at += timedelta(seconds=3 + rnd.randrange(40))
                        context += rnd.randrange(400, 5_000)
                        plan.append(Planned(
                            developer, session_id, f"{session_id}-t{turn}", REPOS[n % len(REPOS)], at, context,
                            context * rnd.randrange(30, 90) // 100, rnd.randrange(80, 2_500),
                            retrying and step > 0))
    plan.sort(key=lambda p: p.at)
    return plan


def enforce(plan: list[Planned], policy: Policy) -> list[UsageRecorded]:
    """The usage events a proxy running ``policy`` would have emitted for ``plan``."""
    spend: dict[BalanceKey, int] = defaultdict(int)
    stopped: set[str] = set()
    ended_turns: set[str] = set()
    streak: dict[str, int] = defaultdict(int)
    events: list[UsageRecorded] = []
    for p in plan:
        if p.session_id in stopped or p.turn_id in ended_turns:
            continue
        team = DEVELOPERS[p.developer][0]
        principal = Principal(f"vk_{p.developer}", p.developer, team)
        common = dict(developer=p.developer, session_id=p.session_id, turn_id=p.turn_id, repo=p.repo, at=p.at,
                      model_requested="gpt-5.1-codex", retry=p.retry)
        streak[p.session_id] = streak[p.session_id] + 1 if p.retry else 0
        if streak[p.session_id] >= policy.retry_cap_for(principal.scopes()):
            events.append(usage(**common, status="refused", input_tokens=0, cached_tokens=0,  # type: ignore[arg-type]
                                output_tokens=0))
            ended_turns.add(p.turn_id)
            continue
        d = decide(RequestFacts(principal, "gpt-5.1-codex", p.input_tokens, p.session_id), policy,
                   lambda k: spend[k], p.at)
        if d.refused:
            events.append(usage(**common, stage="pause", status="refused", input_tokens=0,  # type: ignore[arg-type]
                                cached_tokens=0, output_tokens=0))
            stopped.add(p.session_id)
            continue
        event = usage(**common, model_used=d.model_used, route_reason=d.route_reason,  # type: ignore[arg-type]
                      stage=d.stage.label, input_tokens=p.input_tokens, cached_tokens=p.cached_tokens,
                      output_tokens=p.output_tokens, reasoning_tokens=p.output_tokens // 4)
        for key in d.keys:
            spend[key] += event.cost_micros
        events.append(event)
    return events
