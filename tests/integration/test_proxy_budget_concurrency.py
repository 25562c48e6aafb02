"""64 concurrent streaming clients on one $1.00 key through one or two real enforcing proxies, the fake
upstream, Apache Kafka and the real ledger folding: no false blocks, and settled spend
within the documented overshoot bound (docs/enforcement.md, "Reservations, estimates and the overshoot bound")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from spendgate.proxy.fake_upstream import FakeConfig
from tests.support.enforced_proxy import USD, Enforced, Trace, balance_micros, enforced_proxies, folded_cost
from tests.support.kafka import KafkaForTest
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka

BUDGET = USD
PAUSE = BUDGET * 110 // 100
OVERSHOOT_CEILING = 100_000
"""A fixed ceiling on spend past the pause line on a $1.00 budget, one proxy or two (issue 11): the
bound computed from a run's own trace ($0.55-0.68 for two proxies) would let a regression several times
worse pass."""
NO_FALSE_BLOCK_BELOW = BUDGET * 95 // 100
CLIENTS = 64
PEER_WINDOW_S = 0.25
"""What a peer admits within this window before a request may be invisible to the admitting proxy
(W in the docs: measured idle 29-34 ms; generous here for a loaded 2-core machine)."""
# Streams of 8 chunks after 10-160 ms; 1,150 input tokens (half cached) and 200-1,800 output tokens
# each: an agent's turns vary widely in output, which is what the reservation cannot know in advance.
WORKLOAD = FakeConfig(chunks=8, chunk_interval_ms=5, latency_ms=10, latency_jitter_ms=150,
                      output_tokens=[200, 1_800], seed=11)


async def client(n: int, e: Enforced, http: aiohttp.ClientSession) -> None:
    """One agent session: turn after turn, alternating between the proxies, until refused."""
    for turn in range(1_000):
        body = {"model": "gpt-5.1", "stream": True,
                "input": [{"type": "message", "role": "user", "content": f"{n}/{turn} " + "x" * 4_600}]}
        async with http.post(e.url((n + turn) % len(e.servers)), json=body,
                             headers=e.headers(**{"session-id": f"session-{n}"})) as resp:
            data = await resp.read()
        if resp.status == 429:
            assert b'"usage_limit_reached"' in data
            return
        assert resp.status == 200 and b"response.completed" in data, (resp.status, data[:300])
    raise AssertionError(f"client {n} was never refused")


def bound_micros(traces: list[Trace]) -> int:
    """The documented bound for this run: over admitted requests r, the largest
    c_r + sum of under-estimates in flight at r's admission + what other proxies admitted within W before it."""
    admitted = [t for t in traces if not t.refused]
    worst = 0
    for r in admitted:
        assert r.cost_micros is not None and r.completed_at is not None
        under = sum(max(0, (i.cost_micros or 0) - i.reserved_micros) for i in admitted
                    if i is not r and i.decided_at <= r.decided_at < (i.completed_at or 0))
        peers = sum(i.cost_micros or 0 for i in admitted
                    if i.proxy != r.proxy and r.decided_at - PEER_WINDOW_S < i.decided_at <= r.decided_at)
        worst = max(worst, r.cost_micros + under + peers)
    return worst


def real_spend_at(traces: list[Trace], moment: float) -> int:
    """Settled + in-flight real spend at ``moment``: the real cost of everything admitted before it."""
    return sum(t.cost_micros or 0 for t in traces if not t.refused and t.decided_at < moment)


@pytest.mark.parametrize("proxies", [1, 2])
async def test_64_streaming_clients_on_one_key_stay_within_the_bound(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path, kafka: KafkaForTest, proxies: int
) -> None:
    """No refusal below 95 % real spend; the ledger's settled spend ends ≤ $1.10 + the documented bound."""
    async with enforced_proxies(db_url, tmp_path, proxies=proxies, bus=kafka.settings(),
                                fake_config=WORKLOAD, budgets={"key": {"usd": 1.0, "at_pause": "refuse"}}) as e:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await asyncio.gather(*(client(n, e, http) for n in range(CLIENTS)))
        traces = list(e.traces)
        total = sum(t.cost_micros or 0 for t in traces)
        await eventually(lambda: folded_cost(pool), until=lambda r: r == (len(traces), total), timeout_s=30,
                         what="every usage event folded by the ledger")
        settled = await balance_micros(pool, f"key:{e.key.key_id}")
    refusals = [t for t in traces if t.refused]
    admitted = [t for t in traces if not t.refused]
    spend_at_refusal = sorted(real_spend_at(traces, t.decided_at) for t in refusals)
    bound = bound_micros(traces)
    overshoot = settled - PAUSE
    print(f"\n{proxies} proxies: {len(admitted)} admitted ({sum(t.model_used != t.model_requested for t in admitted)} "
          f"downgraded), {len(refusals)} refused; settled ${settled / USD:.4f} (pause ${PAUSE / USD:.2f}); "
          f"overshoot ${overshoot / USD:.4f}; bound ${bound / USD:.4f}; real spend at refusals "
          f"${spend_at_refusal[0] / USD:.4f}-${spend_at_refusal[-1] / USD:.4f}")
    assert settled == total
    assert len(refusals) == CLIENTS
    assert settled <= PAUSE + bound
    assert overshoot <= OVERSHOOT_CEILING, "past the pause line by more than the fixed ceiling"
    if proxies == 2 and spend_at_refusal[0] < NO_FALSE_BLOCK_BELOW:
        # Known regression, open (docs/enforcement.md, "False pauses with two proxies on Kafka"): a peer's
        # published pending sum still holds its events the ledger has just folded, so near the line they
        # count twice. On Apache Kafka (folds in larger batches than on Tansu) it refuses at 84-95 % real
        # spend in most runs. Every other assertion above still holds it.
        pytest.xfail(f"refused at {spend_at_refusal[0] / USD:.4f} real spend with two proxies (known double count)")
    assert spend_at_refusal[0] >= NO_FALSE_BLOCK_BELOW, "a request was refused below 95 % real spend"
