"""A known month of Codex traffic for the report tests, and a plain-Python oracle of what every report
must say about it.

November 2026, five developers in three teams, three repos, Codex sessions of several turns each, with
prompt-cache hits, downgrades, a pause-to-cheapest stretch and retry loops. Deterministic (seeded).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from spendgate.core.bus import Record
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UnitPrices, UsageRecorded, encode
from spendgate.domain.ids import uuid7
from spendgate.domain.pricing import PriceTable, cost_micros

PRICES = PriceTable()
MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)

DEVELOPERS: dict[str, tuple[str, str]] = {
    "alice": ("platform", "CC-100"),
    "bob": ("platform", "CC-100"),
    "carol": ("payments", "CC-200"),
    "dave": ("payments", "CC-200"),
    "erin": ("data", "CC-300"),
}
REPOS = ("api", "web", "pipeline")


def usage(*, developer: str, session_id: str | None, turn_id: str | None, repo: str | None,
          at: datetime, model_requested: str, model_used: str | None = None, route_reason: str = "requested",
          stage: str = "ok", input_tokens: int, cached_tokens: int, output_tokens: int,
          reasoning_tokens: int = 0, retry: bool = False, status: str = "ok") -> UsageRecorded:
    """One priced usage event, as the proxy would emit it."""
    team, cost_center = DEVELOPERS[developer]
    used = model_used or model_requested
    price = PRICES.lookup(used).price
    return UsageRecorded(
        event_id=uuid7(), occurred_at=at, proxy_instance="test", key_id=f"vk_{developer}",
        developer=developer, team=team, cost_center=cost_center, session_id=session_id, turn_id=turn_id,
        repo=repo, client="codex_exec", endpoint="/v1/responses", model_requested=model_requested,
        model_used=used, route_reason=route_reason, stage=stage, status=status,  # type: ignore[arg-type]
        http_status=200, input_tokens=input_tokens, cached_tokens=cached_tokens, output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens, usage_source="reported",
        prices=UnitPrices(input_micros=price.input_micros, cached_input_micros=price.cached_input_micros,
                          output_micros=price.output_micros),
        cost_micros=cost_micros(price, input_tokens=input_tokens, cached_tokens=cached_tokens,
                                output_tokens=output_tokens),
        retry=retry, latency_ms=900,
    )


def known_month(seed: int = 7) -> list[UsageRecorded]:
    """About 600 events over November 2026, in time order."""
    rnd = random.Random(seed)
    events: list[UsageRecorded] = []
    n_session = 0
    for day in range(30):
        for developer in DEVELOPERS:
            if rnd.random() < 0.35:
                continue
            n_session += 1
            session_id = f"sess-{n_session:03d}-{developer}"
            repo = REPOS[(n_session + len(developer)) % len(REPOS)]
            at = MONTH_START + timedelta(days=day, hours=9 + rnd.randrange(8), minutes=rnd.randrange(60))
            poor_cache = rnd.random() < 0.25
            for turn in range(1 + rnd.randrange(4)):
                turn_id = f"{session_id}-t{turn}"
                context = 2_000
                for _ in range(1 + rnd.randrange(4)):
                    at += timedelta(seconds=5 + rnd.randrange(50))
                    context += rnd.randrange(500, 6_000)
                    cached = context * (rnd.randrange(0, 20) if poor_cache else rnd.randrange(40, 95)) // 100
                    output = rnd.randrange(50, 3_000)
                    retry = rnd.random() < 0.06
                    downgraded = context < 10_000 and rnd.random() < 0.2
                    cheapest = not downgraded and rnd.random() < 0.03
                    model = "gpt-5.1-codex"
                    used, reason, stage = model, "requested", "ok"
                    if downgraded:
                        used, reason, stage = "gpt-5.1-codex-mini", "downgrade", "downgrade"
                    elif cheapest:
                        used, reason, stage = "gpt-4.1-mini", "pause_cheapest", "pause"
                    events.append(usage(
                        developer=developer, session_id=session_id, turn_id=turn_id, repo=repo, at=at,
                        model_requested=model, model_used=used, route_reason=reason, stage=stage,
                        input_tokens=context, cached_tokens=cached, output_tokens=output,
                        reasoning_tokens=output // 3, retry=retry))
    # A request outside any Codex session (a plain API client), and one refused at zero cost.
    events.append(usage(developer="erin", session_id=None, turn_id=None, repo=None,
                        at=MONTH_START + timedelta(days=12, hours=3), model_requested="gpt-4.1",
                        input_tokens=1_200, cached_tokens=0, output_tokens=300))
    events.append(usage(developer="bob", session_id="sess-refused", turn_id="sess-refused-t0", repo="api",
                        at=MONTH_START + timedelta(days=20, hours=3), model_requested="gpt-5.1-codex",
                        input_tokens=0, cached_tokens=0, output_tokens=0, status="refused"))
    events.sort(key=lambda e: (e.occurred_at, e.event_id))
    return events


@dataclass
class Expected:
    requests: int = 0
    refused: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    turns: set[tuple[str, str]] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    retries: int = 0
    retry_cost_micros: int = 0
    downgraded: int = 0
    downgrade_saved_micros: int = 0
    cache_saved_numerator: int = 0
    miss_cost_numerator: int = 0


GROUP_OF: dict[str, Callable[[UsageRecorded], str | None]] = {
    "session": lambda e: e.session_id,
    "developer": lambda e: e.developer,
    "team": lambda e: e.team,
    "cost_center": lambda e: e.cost_center,
    "repo": lambda e: e.repo,
}


def expected_by(events: Iterable[UsageRecorded], by: str) -> dict[str | None, Expected]:
    """The oracle: every report figure per group, summed event by event in plain Python."""
    out: dict[str | None, Expected] = defaultdict(Expected)
    for e in events:
        x = out[GROUP_OF[by](e)]
        x.requests += e.status != "refused"
        x.refused += e.status == "refused"
        x.first_at = min(x.first_at or e.occurred_at, e.occurred_at)
        x.last_at = max(x.last_at or e.occurred_at, e.occurred_at)
        if e.session_id is not None:
            x.sessions.add(e.session_id)
            if e.turn_id is not None:
                x.turns.add((e.session_id, e.turn_id))
        x.input_tokens += e.input_tokens
        x.cached_tokens += e.cached_tokens
        x.output_tokens += e.output_tokens
        x.reasoning_tokens += e.reasoning_tokens
        x.cost_micros += e.cost_micros
        x.retries += e.retry
        x.retry_cost_micros += e.cost_micros if e.retry else 0
        if e.route_reason != "requested":
            x.downgraded += 1
            at_requested = cost_micros(PRICES.lookup(e.model_requested).price, input_tokens=e.input_tokens,
                                       cached_tokens=e.cached_tokens, output_tokens=e.output_tokens)
            x.downgrade_saved_micros += at_requested - e.cost_micros
        spread = e.prices.input_micros - e.prices.cached_input_micros
        x.cache_saved_numerator += e.cached_tokens * spread
        x.miss_cost_numerator += (e.input_tokens - e.cached_tokens) * spread
    return dict(out)


def round_micros(numerator: int) -> int:
    """Half-up division by 1M tokens, as the reports round each line."""
    return (numerator + 500_000) // 1_000_000


async def fold_through_ledger(pool: asyncpg.Pool, events: list[UsageRecorded], *, batch: int = 250) -> None:
    """Publish-shaped records through the real ledger fold (decode, idempotent insert, balances, sessions)."""
    from spendgate.ledger.consumer import fold_batch

    records = [Record(TOPIC_USAGE, 0, i, e.key_id, encode(e, source="spendgate/test"))
               for i, e in enumerate(events)]
    for start in range(0, len(records), batch):
        async with pool.acquire() as conn, conn.transaction():
            await fold_batch(conn, records[start:start + batch], consumer="test-ledger", default_timezone="UTC")
