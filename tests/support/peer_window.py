"""Measure the peer-visibility window between two proxy processes from the outside.

Each sample uses a team of its own with two keys: a writer that spends through proxy A and a reader
that probes proxy B, one request at a time. The team's daily budget is the tightest budget either key
falls under, so every probe's ``x-spendgate-budget-remaining-usd`` header is ``budget − what B counts
for the team``, taken before the probe's own reservation. What B counts is the writer's spend plus the
reader's own earlier probes (B's own book holds each completed probe's exact cost), so the writer's
spend as B sees it is ``budget − remaining − the reader's probes so far``, every cost read from what the
fake upstream served. The team is new, so nothing else is in flight or half-folded on it.

A sample: the writer sends one request through A; from the moment its client has the whole answer
(A completed it: the proxy settles before the last chunk), the reader probes until B's view holds that
request's real cost. The window is from completion to the response headers of the first probe that
saw it: an upper bound, over by at most one probe's round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp

from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.proxy.fake_upstream import FakeUpstream, Served
from tests.support.waiting import eventually

REMAINING_HEADER = "x-spendgate-budget-remaining-usd"


def served_cost(table: PriceTable, s: Served) -> int:
    """What one request the fake answered costs, priced as the shipped table prices it."""
    price = table.lookup(s.model).price
    return cost_micros(price, input_tokens=s.input_tokens, cached_tokens=s.cached_tokens,
                       output_tokens=s.output_tokens)


@dataclass(frozen=True)
class Pair:
    """The writer's and the reader's virtual keys of one sample's team."""

    writer_secret: str
    reader_secret: str


@dataclass
class PeerWindow:
    fake: FakeUpstream
    budget_micros: int
    """Each sample team's daily budget."""
    pairs: list[Pair]
    writer_url: Callable[[], str]
    """Proxy A's ``/v1`` base URL (a callable: A is restarted during the run)."""
    reader_url: str
    table: PriceTable = field(default_factory=PriceTable)
    samples_s: list[float] = field(default_factory=list)
    probes: int = 0
    skipped: list[str] = field(default_factory=list)

    def _spend(self, prefix: str) -> int:
        return sum(served_cost(self.table, s) for s in self.fake.served if (s.session_id or "").startswith(prefix))

    async def _probe(self, http: aiohttp.ClientSession, k: int) -> tuple[int, float]:
        """(the writer's spend as proxy B counts it, when the probe's answer arrived)."""
        own = self._spend(f"reader-{k}-")
        self.probes += 1
        body = {"model": "gpt-5.1", "input": "probe", "stream": False}
        headers = {"Authorization": f"Bearer {self.pairs[k].reader_secret}", "session-id": f"reader-{k}-{self.probes}"}
        async with http.post(f"{self.reader_url}/responses", json=body, headers=headers) as resp:
            arrived = time.monotonic()
            remaining = resp.headers.get(REMAINING_HEADER)
            await resp.read()
        assert resp.status == 200 and remaining is not None, (resp.status, dict(resp.headers))
        return self.budget_micros - int(Decimal(remaining) * 1_000_000) - own, arrived

    async def _sees(self, http: aiohttp.ClientSession, k: int, expected: set[int]) -> float | None:
        seen, at = await self._probe(http, k)
        return at if seen in expected else None

    @property
    def unused(self) -> int:
        return len(self.pairs) - len(self.samples_s) - len(self.skipped)

    async def sample(self, http: aiohttp.ClientSession, timeout_s: float = 20.0) -> None:
        """One writer request through A and the time until B's view holds its real cost."""
        k = len(self.samples_s) + len(self.skipped)
        session = f"writer-{k}-request"
        body = {"model": "gpt-5.1", "stream": True, "input": f"sample {k} " + "w" * 2_000}
        headers = {"Authorization": f"Bearer {self.pairs[k].writer_secret}", "session-id": session}
        try:
            async with aiohttp.ClientSession() as own, own.post(f"{self.writer_url()}/responses", json=body,
                                                                 headers=headers) as resp:
                await resp.read()
        except aiohttp.ClientError as exc:
            self.skipped.append(type(exc).__name__)  # proxy A is stopping: no sample
            return
        completed = time.monotonic()
        if resp.status != 200:
            self.skipped.append(str(resp.status))
            return
        cost = self._spend(session)
        # Visible: A's completed cost in its pending sum, or already folded and (until A's next refresh)
        # counted twice; never the reservation alone.
        at = await eventually(lambda: self._sees(http, k, {cost, 2 * cost}), until=lambda at: at is not None,
                              timeout_s=timeout_s, interval_s=0.0, what="proxy B to see the writer's completed request")
        assert at is not None
        self.samples_s.append(at - completed)

    def summary(self) -> dict[str, object]:
        w = self.samples_s
        return {"samples": len(w), "probes": self.probes, "skipped": len(self.skipped),
                "p50_ms": round(percentile(w, 50) * 1000, 1), "p99_ms": round(percentile(w, 99) * 1000, 1),
                "max_ms": round(max(w) * 1000, 1), "samples_ms": [round(v * 1000, 1) for v in w]}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
