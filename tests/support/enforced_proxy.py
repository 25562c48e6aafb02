"""Enforcing proxies in this process over real PostgreSQL and a real bus, with the real ledger folding.

``enforced_proxies(db_url, data_dir, proxies=2, bus=kafka.settings())`` starts the fake upstream, one
``ProxyServer`` per proxy (each with its own runtime and the production enforcement stack from
:func:`spendgate.proxy.service.enforcing_decider`, budget periods by ``clock``) and the ledger service
on a runtime of its own. Every decision is recorded (:class:`Trace`): when a request was admitted or
refused, what was reserved and what it really cost, for bounds and no-false-block checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from spendgate.domain.enforcement.policy import budget_of
from spendgate.domain.events import UsageRecorded
from spendgate.ledger.service import serve as serve_ledger
from spendgate.proxy.decision import Decision, Refuse, RequestFacts
from spendgate.proxy.enforcing import EnforcingDecider
from spendgate.proxy.fake_upstream import FakeConfig
from spendgate.proxy.ratelimits import RateLimitingDecider
from spendgate.proxy.service import ProxyServer, enforcing_decider, rate_limiting
from spendgate.runtime import Runtime, open_runtime
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as vkeys
from tests.support.proxy_harness import FakeServer, fake_upstream, proxy_settings

USD = 1_000_000


@dataclass
class Trace:
    """One request's enforcement, as the test sees it (monotonic seconds)."""

    proxy: int
    model_requested: str
    decided_at: float
    refused: bool
    reserved_micros: int = 0
    model_used: str | None = None
    cost_micros: int | None = None
    completed_at: float | None = None


class RecordingDecider:
    """The production :class:`EnforcingDecider`, with every decision and settlement recorded."""

    def __init__(self, inner: EnforcingDecider, index: int, traces: list[Trace]) -> None:
        self.inner, self.index, self.traces = inner, index, traces
        self._open: dict[int, Trace] = {}

    async def decide(self, facts: RequestFacts) -> Decision:
        decision = await self.inner.decide(facts)
        trace = Trace(self.index, facts.model or "", time.monotonic(), isinstance(decision, Refuse))
        adm = self.inner._admissions.get(id(facts))
        if adm is not None:
            trace.reserved_micros = adm.reservation.amount_micros if adm.reservation else 0
            trace.model_used = adm.model
            self._open[id(facts)] = trace
        self.traces.append(trace)
        return decision

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        trace = self._open.pop(id(facts), None)
        if trace is not None:
            trace.cost_micros, trace.completed_at = event.cost_micros, time.monotonic()
        self.inner.settled(facts, event)


@dataclass
class Enforced:
    upstream: FakeServer
    runtimes: list[Runtime]
    servers: list[ProxyServer]
    deciders: list[RecordingDecider]
    key: vkeys.VirtualKey
    secret: str
    ledger_runtime: Runtime
    traces: list[Trace] = field(default_factory=list)
    limited: list[RateLimitingDecider] = field(default_factory=list)
    """Each proxy's rate-limiting decider (with ``rate_limit_clock``)."""

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ledger_runtime.pool

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}", **extra}

    def url(self, proxy: int = 0) -> str:
        return f"{self.servers[proxy].base_url}/responses"


async def set_daily_budget(pool: asyncpg.Pool, scope: str, usd: float, **kw: Any) -> None:
    await budgets_store.set_budget(pool, budget_of(scope, daily_micros=round(usd * USD), monthly_micros=None, **kw),
                                   actor="test")


@contextlib.asynccontextmanager
async def enforced_proxies(db_url: str, data_dir: Path, *, proxies: int = 1, bus: Mapping[str, Any] | None = None,
                           fake_config: FakeConfig | None = None, clock: Callable[[], datetime] | None = None,
                           budgets: dict[str, dict[str, Any]] | None = None,
                           developer: str = "alice", team: str = "platform",
                           rate_limit_clock: Callable[[], float] | None = None,
                           settings: Mapping[str, Any] | Callable[[FakeServer], Mapping[str, Any]] | None = None,
                           ) -> AsyncIterator[Enforced]:
    """``bus``: the bus settings (``KafkaForTest.settings()``), else the embedded Postgres bus. ``budgets``:
    ``{"key": {"usd": 1.0, ...budget_of kwargs}}`` ("key" names the created key's scope).
    ``rate_limit_clock``: the proxies also enforce the rate limits, their windows placed by this clock (as
    ``serve`` does). ``settings``: more settings for every process, or a function of the fake upstream
    giving them (``lambda fake: {"bedrock": {...}}``)."""
    extra = dict(bus or {})
    async with fake_upstream(fake_config) as upstream, contextlib.AsyncExitStack() as stack:
        extra.update((settings(upstream) if callable(settings) else settings) if settings else {})
        ledger_settings = proxy_settings(db_url, data_dir / "ledger", upstream.url, instance="ledger", **extra)
        ledger_rt = await stack.enter_async_context(open_runtime(ledger_settings, run_migrations=False))
        created = await vkeys.create_key(ledger_rt.pool, developer=developer, team=team, cost_center="cc-42")
        for scope, spec in (budgets or {}).items():
            spec = dict(spec)
            usd = spec.pop("usd")
            await set_daily_budget(ledger_rt.pool, f"key:{created.key.key_id}" if scope == "key" else scope, usd,
                                   **spec)
        traces: list[Trace] = []
        runtimes, servers, deciders = [], [], []
        limited: list[RateLimitingDecider] = []
        for i in range(proxies):
            settings = proxy_settings(db_url, data_dir / f"proxy{i}", upstream.url, instance=f"proxy-{i}", **extra)
            rt = await stack.enter_async_context(open_runtime(settings, run_migrations=False))
            inner = await stack.enter_async_context(enforcing_decider(rt, clock=clock))
            decider = RecordingDecider(inner, i, traces)
            serving: Any = decider
            if rate_limit_clock is not None:
                serving = await stack.enter_async_context(rate_limiting(rt, decider, clock=rate_limit_clock))
                limited.append(serving)
            server = ProxyServer(rt, decider=serving, port=0)
            await server.start()
            stack.push_async_callback(server.stop)
            runtimes.append(rt)
            servers.append(server)
            deciders.append(decider)
        stop = asyncio.Event()
        ledger = asyncio.create_task(serve_ledger(ledger_rt, stop), name="test-ledger")

        async def stop_ledger() -> None:
            stop.set()
            await asyncio.wait_for(ledger, 30)

        stack.push_async_callback(stop_ledger)
        yield Enforced(upstream, runtimes, servers, deciders, created.key, created.secret, ledger_rt, traces,
                       limited)


async def balance_micros(pool: asyncpg.Pool, scope: str) -> int:
    """The ledger's settled spend of ``scope`` today (UTC day budgets)."""
    value = await pool.fetchval(
        "SELECT spent_micros FROM balances WHERE scope = $1 AND period = 'day' ORDER BY period_start DESC LIMIT 1",
        scope)
    return int(value or 0)


async def folded_cost(pool: asyncpg.Pool) -> tuple[int, int]:
    """(events folded, their total cost) in the ledger's usage_events."""
    row = await pool.fetchrow("SELECT count(*) AS n, COALESCE(sum(cost_micros), 0)::bigint AS cost FROM usage_events")
    return int(row["n"]), int(row["cost"])
