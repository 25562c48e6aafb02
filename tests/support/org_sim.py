"""An organisation's Codex traffic over simulated weeks, through the real proxy, ledger and fake upstream.

``org_simulation(db_url, data_dir, org=ORG, seed=7)`` starts the fake upstream, one enforcing proxy (the
production :func:`~spendgate.proxy.service.enforcing_decider`) and the ledger service, all on real
PostgreSQL and the embedded Postgres bus, with one virtual key per developer. The proxy runs on a
:class:`SimClock`: budget periods, routing-rule hours and every usage event's ``occurred_at`` follow the
simulated time, so 30-day windows see weeks of traffic that took seconds.

A simulated turn is a small Codex Responses exchange: the developer's message, the model answers with a
function call, the client runs it and sends the ``function_call_output`` back (``Process exited with code
0`` or a non-zero code), one to three times, then the model's final assistant message. The SCRIPT is the
client's: whether a tool call fails depends on the developer's team and on which model answered (the
response's ``model``, so a turn the proxy sent to a cheaper model is seen as such), with the rates of
:class:`Team`. Every draw is seeded per turn, so a run is the same whatever the concurrency.

``await sim.run_weeks(4)`` sends the traffic (weekdays, working hours, ``concurrency`` turns at a time)
and waits until the ledger has folded every event; ``apply`` makes a policy document the active signed
version and waits for the proxy to enforce it; ``spend_by_team`` and ``turn_scores`` read a window back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from spendgate.admin.policy_versions import VersionApplied, apply_version
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.outcomes import quality
from spendgate.ledger.service import serve as serve_ledger
from spendgate.proxy.fake_upstream import FakeConfig
from spendgate.proxy.service import ProxyServer, enforcing_decider
from spendgate.runtime import Runtime, open_runtime
from spendgate.store.keys import store as vkeys
from spendgate.store.outcomes.store import turn_facts
from tests.support.admin_server import TEST_SIGNING_KEY
from tests.support.proxy_harness import fake_upstream, proxy_settings
from tests.support.waiting import eventually

FLAGSHIP = "gpt-5.1"
TICK = timedelta(milliseconds=1)
WORKDAY = (9, 17)
"""Turns start between 09:00 and 17:00 UTC on weekdays."""
FAILED = "Process exited with code 1\nerror: the change does not build"
PASSED = "Process exited with code 0\nok"


@dataclass(frozen=True)
class Team:
    """A team's developers, how many turns each makes a working day, and how often its tool calls fail on
    the flagship and on any cheaper model."""

    name: str
    developers: int
    turns_per_day: int
    flagship_failure: float
    cheaper_failure: float
    tool_calls: tuple[int, int] = (1, 3)
    """Tool calls per turn, drawn uniformly from this range."""


ORG: tuple[Team, ...] = (
    Team("web", developers=4, turns_per_day=12, flagship_failure=0.05, cheaper_failure=0.6),
    Team("platform", developers=4, turns_per_day=12, flagship_failure=0.05, cheaper_failure=0.05),
    Team("data", developers=2, turns_per_day=5, flagship_failure=0.05, cheaper_failure=0.3),
)
"""Team A (``web``): the cheaper model's tool calls fail far more often than the flagship's. Team B
(``platform``): as rarely as the flagship's. ``data`` takes no part in exploration in the tests."""


class SimClock:
    """Simulated time, strictly increasing: every reading is one :data:`TICK` after the one before, so the
    requests of a turn keep their order in its usage events; :meth:`advance_to` jumps forward."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def __call__(self) -> datetime:
        self._now += TICK
        return self._now

    @property
    def now(self) -> datetime:
        return self._now

    def advance_to(self, at: datetime) -> None:
        if at > self._now:
            self._now = at


@dataclass(frozen=True)
class Developer:
    name: str
    team: Team
    secret: str


@dataclass
class Stats:
    turns: int = 0
    requests: int = 0
    by_model: dict[str, int] = field(default_factory=dict)


@dataclass
class OrgSim:
    org: tuple[Team, ...]
    clock: SimClock
    developers: list[Developer]
    proxy: ProxyServer
    ledger: Runtime
    proxy_runtime: Runtime
    seed: int
    concurrency: int = 32
    stats: Stats = field(default_factory=Stats)
    decider_view: Any = None
    """The proxy's balance view (which policy version it enforces)."""
    _day: int = 0

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ledger.pool

    @property
    def url(self) -> str:
        return f"{self.proxy.base_url}/responses"

    async def run_weeks(self, weeks: int) -> tuple[datetime, datetime]:
        """Send ``weeks`` more weeks of the org's traffic (weekdays only), starting the Monday after the
        traffic so far; returns the simulated window ``[since, until)`` it covered once every event is
        folded by the ledger."""
        since = _monday_after(self.clock.now)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.concurrency)) as http:
            for d in range(weeks * 7):
                day = since + timedelta(days=d)
                self._day += 1
                if day.weekday() < 5:
                    await self._run_day(http, day, self._day)
        until = since + timedelta(weeks=weeks)
        await self.settled()
        return since, until

    async def _run_day(self, http: aiohttp.ClientSession, day: datetime, index: int) -> None:
        plan = []
        for dev in self.developers:
            rng = random.Random(f"{self.seed}/{dev.name}/{index}")
            for i in range(dev.team.turns_per_day):
                minute = rng.randrange((WORKDAY[1] - WORKDAY[0]) * 60)
                at = day.replace(hour=WORKDAY[0]) + timedelta(minutes=minute)
                plan.append((at, dev, f"t-{dev.name}-{index}-{i}"))
        plan.sort(key=lambda p: (p[0], p[2]))
        for start in range(0, len(plan), self.concurrency):
            batch = plan[start:start + self.concurrency]
            self.clock.advance_to(batch[0][0])
            await asyncio.gather(*(self._turn(http, dev, turn, f"s-{dev.name}-{index}") for _, dev, turn in batch))

    async def _turn(self, http: aiohttp.ClientSession, dev: Developer, turn: str, session: str) -> None:
        rng = random.Random(f"{self.seed}/{turn}")
        calls = rng.randint(*dev.team.tool_calls)
        draws = [rng.random() for _ in range(calls)]
        items: list[dict[str, Any]] = [{"type": "message", "role": "user",
                                        "content": [{"type": "input_text", "text": f"fix issue {turn}"}]}]
        headers = {"Authorization": f"Bearer {dev.secret}", "session-id": session, "x-spendgate-turn": turn}
        for i in range(calls + 1):
            scenario = f"tool:{turn}-step-{i}" if i < calls else "text"
            body = {"model": FLAGSHIP, "input": items, "stream": False}
            async with http.post(self.url, json=body, headers={**headers, "x-fake-scenario": scenario}) as resp:
                answer = await resp.json()
                assert resp.status == 200, answer
            model = str(answer["model"])
            self.stats.requests += 1
            self.stats.by_model[model] = self.stats.by_model.get(model, 0) + 1
            if i == calls:
                break
            call = answer["output"][0]
            rate = dev.team.flagship_failure if model == FLAGSHIP else dev.team.cheaper_failure
            items += [{"type": "function_call", "name": call["name"], "call_id": call["call_id"],
                       "arguments": call["arguments"]},
                      {"type": "function_call_output", "call_id": call["call_id"],
                       "output": FAILED if draws[i] < rate else PASSED}]
        self.stats.turns += 1

    async def settled(self, timeout_s: float = 60.0) -> None:
        """Wait until the ledger has folded every request sent so far."""
        await eventually(lambda: self.pool.fetchval("SELECT count(*) FROM usage_events"),
                         until=lambda n: n >= self.stats.requests, timeout_s=timeout_s,
                         what=f"{self.stats.requests} usage events folded")

    async def apply(self, document: Mapping[str, Any], reason: str, *, approver: str = "sim:cto") -> VersionApplied:
        """Make ``document`` the active signed policy version (at the simulated now) and wait until the proxy
        enforces it."""
        settings = self.ledger.settings
        applied = await apply_version(self.pool, policy_from_document(document, settings.enforcement), settings,
                                      settings.pricing.table(), now=self.clock.now, approver=approver,
                                      reason=reason)
        view: Any = self.decider_view

        async def active() -> str | None:
            return view.policy.version  # type: ignore[no-any-return]

        await eventually(active, until=lambda v: v == applied.version_id,
                         what=f"the proxy enforcing version {applied.version_id}")
        return applied

    async def spend_by_team(self, since: datetime, until: datetime) -> dict[str, int]:
        """Micro-dollars spent per team in the simulated window ``[since, until)``."""
        rows = await self.pool.fetch(
            """SELECT team, sum(cost_micros)::bigint AS spent FROM usage_events
               WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY team""", since, until)
        return {r["team"]: int(r["spent"]) for r in rows}

    async def turn_scores(self, team: str, since: datetime, until: datetime) -> list[tuple[str | None, str, float]]:
        """``(experiment arm, model used, quality score)`` of each of ``team``'s turns that started in the
        window, from the turn outcomes (the admin's read)."""
        found = await turn_facts(self.pool, since=since, team=team, limit=1_000_000)
        return [(f.experiment_arm, f.model_used, quality(f, ext)[0]) for f, ext in found if f.started_at < until]


def _monday_after(at: datetime) -> datetime:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=7 - day.weekday())


def sim_start(weeks_back: int = 12) -> datetime:
    """A Monday ``weeks_back`` weeks before today (UTC): the simulated weeks stay in the past."""
    return _monday_after(datetime.now(UTC) - timedelta(weeks=weeks_back + 1))


@contextlib.asynccontextmanager
async def org_simulation(db_url: str, data_dir: Path, *, org: Sequence[Team] = ORG, seed: int = 7,
                         start: datetime | None = None, concurrency: int = 32,
                         settings: Mapping[str, Any] | None = None) -> AsyncIterator[OrgSim]:
    """The org's proxy, ledger and fake upstream; the clock starts at ``start`` (default :func:`sim_start`).
    ``settings``: more settings for the proxy and the ledger (the policy signing key is set)."""
    extra = {"policy": {"signing_key": TEST_SIGNING_KEY}, **(settings or {})}
    clock = SimClock(start or sim_start())
    async with fake_upstream(FakeConfig(record=False, chunks=4)) as upstream, contextlib.AsyncExitStack() as stack:
        ledger_rt = await stack.enter_async_context(open_runtime(
            proxy_settings(db_url, data_dir / "ledger", upstream.url, instance="ledger", **extra),
            run_migrations=False))
        developers = []
        for team in org:
            for i in range(team.developers):
                name = f"{team.name}-dev{i}"
                created = await vkeys.create_key(ledger_rt.pool, developer=name, team=team.name,
                                                 cost_center=f"cc-{team.name}")
                developers.append(Developer(name, team, created.secret))
        proxy_rt = await stack.enter_async_context(open_runtime(
            proxy_settings(db_url, data_dir / "proxy", upstream.url, instance="proxy-sim", **extra),
            run_migrations=False))
        decider = await stack.enter_async_context(enforcing_decider(proxy_rt, clock=clock))
        server = ProxyServer(proxy_rt, decider=decider, port=0, clock=clock)
        await server.start()
        stack.push_async_callback(server.stop)
        stop = asyncio.Event()
        ledger = asyncio.create_task(serve_ledger(ledger_rt, stop), name="sim-ledger")

        async def stop_ledger() -> None:
            stop.set()
            await asyncio.wait_for(ledger, 30)

        stack.push_async_callback(stop_ledger)
        sim = OrgSim(tuple(org), clock, developers, server, ledger_rt, proxy_rt, seed, concurrency)
        sim.decider_view = decider.enforcer.view
        yield sim


def arms_of(scores: Sequence[tuple[str | None, str, float]], arm: str) -> list[float]:
    return [s for a, _, s in scores if a == arm]

