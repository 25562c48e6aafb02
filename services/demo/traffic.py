"""A month of coding-agent traffic for ``spendgate demo``, made up but shaped like the real thing. Pure: no I/O.

Five teams in three cost centers, sixteen developers, a repo or two per team; Codex and Claude Code
sessions of several turns whose context grows turn by turn, mostly with good prompt-cache hits and now
and then a session that keeps missing the cache; retry loops (the same request sent again and again);
and, in the last days, the story the budgets tell: ``payments`` running into its downgrade stage (small
turns sent to the mini model) and ``data`` paused (its requests sent to the cheapest model, a few
refused). Deterministic for a seed and an end time; every event is priced as the proxy prices it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from spendgate.domain.events import RouteReason, Stage, UnitPrices, UsageRecorded, UsageStatus
from spendgate.domain.ids import uuid7
from spendgate.domain.pricing import PriceTable, cost_micros


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    cost_center: str
    developers: tuple[str, ...]
    repos: tuple[str, ...]
    intensity: float
    """Sessions per developer and working day, on average."""


TEAMS: tuple[Team, ...] = (
    Team("platform", "CC-ENG", ("alice", "bob", "chen", "dmitri"), ("platform-api", "infra"), 1.6),
    Team("payments", "CC-ENG", ("erin", "farah", "gus"), ("payments-core",), 2.2),
    Team("data", "CC-DATA", ("hana", "ivan", "jo"), ("pipelines", "warehouse"), 2.0),
    Team("mobile", "CC-PRODUCT", ("kai", "lena", "mo"), ("ios-app", "android-app"), 1.0),
    Team("search", "CC-PRODUCT", ("nadia", "omar", "pia"), ("search-ranker",), 0.8),
)
DOWNGRADING_TEAM = "payments"
PAUSED_TEAM = "data"
STORY_DAYS = 4
"""The last days of the month, in which ``payments`` is downgraded and ``data`` paused."""
DAYS = 30
PROXY = "demo-proxy"

_CLIENTS = (("codex_exec", "gpt-5.1-codex", "/v1/responses"), ("codex_cli", "gpt-5.1-codex", "/v1/responses"),
            ("claude_code", "claude-sonnet-4-5", "/v1/messages"))
_CHEAPER = {"gpt-5.1-codex": "gpt-5.1-codex-mini", "claude-sonnet-4-5": "claude-haiku-4-5"}
_CHEAPEST = {"gpt-5.1-codex": "gpt-4.1-mini", "claude-sonnet-4-5": "claude-3-5-haiku"}


def developers() -> list[tuple[str, Team]]:
    return [(d, t) for t in TEAMS for d in t.developers]


@dataclass
class _Request:
    at: datetime
    developer: str
    team: Team
    session_id: str
    turn_id: str
    repo: str
    client: str
    endpoint: str
    model: str
    context: int
    cache_pct: int
    retry: bool = False


def month_of_traffic(end: datetime, key_ids: Mapping[str, str], prices: PriceTable, *,
                     seed: int = 14) -> list[UsageRecorded]:
    """The :data:`DAYS` days before ``end`` (UTC), events in time order; ``key_ids``: each developer's key."""
    rnd = random.Random(seed)
    start = (end - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    story_from = end - timedelta(days=STORY_DAYS)
    requests: list[_Request] = []
    n = 0
    for day in range(DAYS + 1):
        midnight = start + timedelta(days=day)
        weekend = midnight.weekday() >= 5
        for developer, team in developers():
            sessions = _poisson(rnd, team.intensity * (0.25 if weekend else 1.0))
            for _ in range(sessions):
                n += 1
                at = midnight + timedelta(hours=8 + rnd.random() * 10)
                if midnight + timedelta(hours=8) >= end:  # early on the last day: its sessions so far
                    at = midnight + (end - midnight) * rnd.random()
                if at >= end:
                    continue
                requests.extend(_session(rnd, at, developer, team, f"s-{midnight:%m%d}-{developer}-{n:04d}", end))
    events = [_event(r, key_ids[r.developer], prices, story_from) for r in requests]
    events.sort(key=lambda e: (e.occurred_at, e.event_id))
    return events


def _poisson(rnd: random.Random, mean: float) -> int:
    count, threshold, product = 0, pow(2.718281828459045, -mean), rnd.random()
    while product > threshold:
        count += 1
        product *= rnd.random()
    return count


def _session(rnd: random.Random, at: datetime, developer: str, team: Team, session_id: str,
             end: datetime) -> list[_Request]:
    client, model, endpoint = _CLIENTS[0 if rnd.random() < 0.55 else 1 if rnd.random() < 0.6 else 2]
    repo = rnd.choice(team.repos)
    poor_cache = rnd.random() < 0.15
    out: list[_Request] = []
    context = rnd.randrange(3_000, 9_000)
    for turn in range(1 + min(7, _poisson(rnd, 2.5))):
        turn_id = f"{session_id}-t{turn + 1}"
        for _ in range(1 + rnd.randrange(4)):
            at += timedelta(seconds=4 + rnd.randrange(60))
            if at >= end:
                return out
            context += rnd.randrange(800, 7_000)
            cache_pct = rnd.randrange(0, 25) if poor_cache else rnd.randrange(55, 92)
            out.append(_Request(at, developer, team, session_id, turn_id, repo, client, endpoint, model,
                                min(context, 190_000), cache_pct))
        if rnd.random() < 0.05:  # a retry loop: the same failing step sent again and again
            last = out[-1]
            for _ in range(4 + rnd.randrange(6)):
                at += timedelta(seconds=3 + rnd.randrange(8))
                if at >= end:
                    return out
                out.append(_Request(at, developer, team, session_id, turn_id, repo, client, endpoint, model,
                                    last.context, last.cache_pct, retry=True))
        at += timedelta(minutes=1 + rnd.randrange(15))
    return out


def _event(r: _Request, key_id: str, prices: PriceTable, story_from: datetime) -> UsageRecorded:
    used, reason, stage, status = r.model, "requested", "ok", "ok"
    late = r.at >= story_from
    if late and r.team.name == DOWNGRADING_TEAM and r.context < 40_000:
        used, reason, stage = _CHEAPER[r.model], "downgrade", "downgrade"
    elif late and r.team.name == PAUSED_TEAM:
        used, reason, stage = _CHEAPEST[r.model], "pause_cheapest", "pause"
        if r.retry:
            status = "refused"
    price = prices.lookup(used).price
    cached = r.context * r.cache_pct // 100
    output = 0 if status == "refused" else 200 + (r.context // 40) % 2_800
    input_tokens = 0 if status == "refused" else r.context
    cached = 0 if status == "refused" else cached
    return UsageRecorded(
        event_id=uuid7(), occurred_at=r.at, proxy_instance=PROXY, key_id=key_id, developer=r.developer,
        team=r.team.name, cost_center=r.team.cost_center, session_id=r.session_id, turn_id=r.turn_id,
        repo=r.repo, client=r.client, endpoint=r.endpoint, stream=True, model_requested=r.model, model_used=used,
        route_reason=_reason(reason), stage=_stage(stage), status=_status(status),
        http_status=429 if status == "refused" else 200, input_tokens=input_tokens, cached_tokens=cached,
        output_tokens=output, reasoning_tokens=output // 3, usage_source="none" if status == "refused" else "reported",
        prices=UnitPrices(input_micros=price.input_micros, cached_input_micros=price.cached_input_micros,
                          output_micros=price.output_micros),
        cost_micros=cost_micros(price, input_tokens=input_tokens, cached_tokens=cached, output_tokens=output),
        retry=r.retry, latency_ms=0 if status == "refused" else 1_500 + output * 4,
        refusal_reason="retry_budget" if status == "refused" else None,
    )


def _reason(value: str) -> RouteReason:
    return "downgrade" if value == "downgrade" else "pause_cheapest" if value == "pause_cheapest" else "requested"


def _stage(value: str) -> Stage:
    return "downgrade" if value == "downgrade" else "pause" if value == "pause" else "ok"


def _status(value: str) -> UsageStatus:
    return "refused" if value == "refused" else "ok"
