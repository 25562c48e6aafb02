"""A proxy under test: the fake upstream and the proxy in this process, over real PostgreSQL and a real bus.

``running_proxy(db_url, tmp_path)`` yields a :class:`Harness` with a virtual key already created; the
bus is the embedded Postgres bus unless ``bus=`` names another (``kafka://…``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from spendgate.core.config import Settings, load_settings
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UsageRecorded, decode
from spendgate.proxy.decision import Decider
from spendgate.proxy.fake_upstream import FakeConfig, FakeUpstream
from spendgate.proxy.service import ProxyServer
from spendgate.runtime import Runtime, open_runtime
from spendgate.store.keys import store as vkeys

UPSTREAM_KEY = "sk-upstream-secret-for-tests"
ANTHROPIC_UPSTREAM_KEY = "sk-ant-upstream-secret-for-tests"


@dataclass
class FakeServer:
    fake: FakeUpstream
    runner: web.AppRunner
    port: int
    listening: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        """Stop listening: requests to it are refused (an outage)."""
        if self.listening:
            self.listening = False
            await self.runner.cleanup()

    async def start(self) -> None:
        """Listen again on the same port, with the same fake (its script and records kept)."""
        self.runner = web.AppRunner(self.fake.app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.listening = True


@contextlib.asynccontextmanager
async def fake_upstream(config: FakeConfig | None = None) -> AsyncIterator[FakeServer]:
    fake = FakeUpstream(config or FakeConfig())
    runner = web.AppRunner(fake.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server = FakeServer(fake, runner, port)
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Harness:
    runtime: Runtime
    server: ProxyServer
    upstream: FakeServer
    key: vkeys.VirtualKey
    secret: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def fake(self) -> FakeUpstream:
        return self.upstream.fake

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}", **extra}


def proxy_settings(db_url: str, data_dir: Path, upstream_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url, "data_dir": data_dir, "bus": "postgres", "upstream_url": upstream_url,
        "upstream_key": UPSTREAM_KEY, "anthropic_upstream_url": upstream_url,
        "anthropic_upstream_key": ANTHROPIC_UPSTREAM_KEY, "proxy_port": 0, "instance": "proxy-test",
        "drain_timeout_s": 5.0,
    }
    if any(isinstance(u, dict) and u.get("kind") == "anthropic" for u in overrides.get("upstreams", [])):
        del values["anthropic_upstream_url"], values["anthropic_upstream_key"]  # they replace these two
    values.update(overrides)
    return load_settings(**values)


@contextlib.asynccontextmanager
async def running_proxy(db_url: str, data_dir: Path, *, fake_config: FakeConfig | None = None,
                        decider: Decider | None = None, **overrides: Any) -> AsyncIterator[Harness]:
    async with fake_upstream(fake_config) as upstream:
        settings = proxy_settings(db_url, data_dir, overrides.pop("upstream_url", upstream.url), **overrides)
        async with open_runtime(settings, run_migrations=False) as runtime:
            created = await vkeys.create_key(runtime.pool, developer="alice", team="platform",
                                             cost_center="cc-42")
            server = ProxyServer(runtime, decider=decider, port=0)
            await server.start()
            try:
                yield Harness(runtime, server, upstream, created.key, created.secret)
            finally:
                await server.stop()


async def published_usage(pool: asyncpg.Pool) -> list[UsageRecorded]:
    """Usage events on the embedded bus, in offset order per partition."""
    rows = await pool.fetch('SELECT value FROM bus_log WHERE topic = $1 ORDER BY partition, "offset"', TOPIC_USAGE)
    return [decode(bytes(r["value"])).data for r in rows]
