"""``serve(runtime, stop)``: the proxy as a service, with its key cache, spool writer and drain.

Start-up: open the spool (replaying what a previous process left), load the keys, listen. The
offline tokenizer (about 65 MB) loads on the first aborted stream, not before. On ``stop``: stop
accepting, let in-flight streams finish (bounded by ``drain_timeout_s``), then flush the spool to
the bus; anything unpublished stays on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from spendgate.core.httpserver import QuietAppRunner, server_kwargs
from spendgate.core.logs import get_logger
from spendgate.domain.enforcement.estimate import SessionEstimator
from spendgate.domain.events import new_id
from spendgate.proxy.app import build_app
from spendgate.proxy.bedrock import BedrockUpstream, load_credentials
from spendgate.proxy.decision import Decider, PassDecider
from spendgate.proxy.emitter import Emitter
from spendgate.proxy.enforcing import EnforcingDecider, RetryLoopPublisher
from spendgate.proxy.errors import unreadable
from spendgate.proxy.forwarding import create_client_session
from spendgate.proxy.handler import ProxyState
from spendgate.proxy.intents import recover as recover_intents
from spendgate.proxy.keycache import KeyCache
from spendgate.proxy.me import MeView
from spendgate.proxy.metrics import ProxyMetrics
from spendgate.proxy.ratelimits import RateLimiter, RateLimitingDecider
from spendgate.proxy.routes import RouteTable
from spendgate.proxy.spool import Spool
from spendgate.proxy.upstreams import anthropic_pool_from_settings, pool_from_settings
from spendgate.proxy.wiring import Recipients, enforcement
from spendgate.runtime import Runtime

log = get_logger(__name__)

FINAL_FLUSH_S = 10.0


class ProxyServer:
    """One running proxy. ``port`` is the bound port once started (ask for 0 to get a free one)."""

    def __init__(self, runtime: Runtime, *, decider: Decider | None = None, port: int | None = None,
                 spool_name: str | None = None, clock: Callable[[], datetime] | None = None) -> None:
        """``clock``: when requests happen, stamped on their usage events (default the wall clock; a
        simulation of weeks of traffic passes its own)."""
        settings = runtime.settings
        self.clock = clock
        self.runtime = runtime
        self.port = settings.proxy_port if port is None else port
        self.decider = decider or PassDecider()
        self.spool = Spool(settings.spool_dir / (spool_name or f"proxy-{self.port}"))
        self.keys = KeyCache(runtime.pool, runtime.db_url)
        self.emitter = Emitter(self.spool, runtime.bus, source=f"spendgate/proxy/{settings.instance}",
                               publish_timeout_s=settings.publish_timeout_s,
                               publish_interval_s=settings.publish_interval_s)
        self.state: ProxyState | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_workers = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.runtime.settings.host}:{self.port}/v1"

    async def start(self) -> None:
        """Open the spool, load the keys, listen. A start that fails (the database down while the keys
        load) releases what it took, the spool's lock first: the supervisor's next start of the service
        must find the spool free, or it would fail with a ConfigError and end ``spendgate up``."""
        self.spool.open()
        try:
            await self._start()
        except BaseException:
            await self._abandon_start()
            raise

    async def _abandon_start(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._stop_workers.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.state is not None:
            await self.state.http.close()
        self.spool.close()

    async def _start(self) -> None:
        s = self.runtime.settings
        self.spool.adopt_orphans()
        recover_intents(self.spool)
        await self.keys.refresh()
        credentials = None
        if s.bedrock.models:  # botocore loads only then; no credentials is a ConfigError naming what to set
            credentials = await asyncio.to_thread(load_credentials, s.bedrock)
        pool = pool_from_settings(s, clock=time.monotonic)
        anthropic_pool = anthropic_pool_from_settings(s, clock=time.monotonic)
        http = create_client_session(connect_timeout_s=s.upstream_connect_timeout_s,
                                     read_timeout_s=s.upstream_read_timeout_s)
        bedrock = BedrockUpstream(s.bedrock, credentials, http) if credentials is not None else None
        self.state = ProxyState(
            keys=self.keys, emitter=self.emitter, decider=self.decider, prices=s.pricing.table(), http=http,
            upstream_url=pool.primary.url, upstream_key=pool.primary.key, pool=pool,
            headers_timeout_s=s.upstream_pool.headers_timeout_s, anthropic_pool=anthropic_pool,
            anthropic_url=s.anthropic_upstream_url,
            anthropic_key=s.anthropic_upstream_key.get_secret_value() if s.anthropic_upstream_key else None,
            instance=s.instance, max_body_bytes=s.max_body_bytes, read_timeout_s=s.upstream_read_timeout_s,
            body_timeout_s=s.body_timeout_s,
            estimator=SessionEstimator(output_cap_tokens=s.enforcement.output_estimate_cap_tokens),
            routes=RouteTable(allowed_paths=s.proxy_allowed_paths), batch_percent=s.pricing.batch_percent,
            metrics=ProxyMetrics(self.runtime.metrics), tracer=self.runtime.tracer, bedrock=bedrock,
            clock=self.clock,
        )
        self.state.metrics.upstream_pool(pool, anthropic_pool)
        supervisor = self.runtime.supervisor
        self._tasks = [supervisor.spawn("proxy.keys", self.keys.run, self._stop_workers),
                       supervisor.spawn("proxy.spool-writer", self.emitter.run, self._stop_workers)]
        me = MeView(self.keys, self.runtime.pool, default_timezone=s.default_timezone)
        app = build_app(self.state, self.runtime.health,
                        metrics_token=s.metrics_token.get_secret_value() if s.metrics_token else None, me=me.handle)
        self._runner = QuietAppRunner(app, answer=unreadable, shutdown_timeout=s.drain_timeout_s,
                                      handler_cancellation=False,
                                      access_log=None, **server_kwargs(header_timeout_s=s.header_timeout_s,
                                                                        max_header_bytes=s.max_header_bytes))
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.host, self.port, backlog=1024, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = _bound_port(site)
        upstreams = [u.name for u in (*pool.upstreams, *anthropic_pool.upstreams)]
        log.info("proxy listening", url=self.base_url, upstreams=upstreams, keys=len(self.keys),
                 spooled_segments=len(self.spool.segments()))

    async def stop(self) -> None:
        """Drain in-flight requests (bounded), stop the workers, flush the spool."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._stop_workers.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        flushed = await self.emitter.drain(FINAL_FLUSH_S)
        self.spool.close()
        if self.state is not None:
            await self.state.http.close()
        log.info("proxy stopped", spool_flushed=flushed, published=self.emitter.published)


def _bound_port(site: web.TCPSite) -> int:
    sockets = getattr(site._server, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("the proxy's listening socket is gone")


@contextlib.asynccontextmanager
async def enforcing_decider(runtime: Runtime, *, clock: Callable[[], datetime] | None = None,
                            alerted: Recipients | None = None) -> AsyncIterator[EnforcingDecider]:
    """The enforcement stack (view, book, detector) behind the Decider seam, retry loops published to
    the budget topic; ``clock`` replaces the wall clock for budget periods (tests move it past a reset)."""
    settings = runtime.settings
    extra = {"clock": clock} if clock is not None else {}
    async with enforcement(settings, runtime.pool, runtime.db_url, alerted=alerted, supervisor=runtime.supervisor,
                           **extra) as enforcer:
        loops = RetryLoopPublisher(runtime.bus, source=f"spendgate/proxy/{settings.instance}")
        try:
            yield EnforcingDecider(enforcer, on_retry_loop=loops)
        finally:
            await loops.drain()


@contextlib.asynccontextmanager
async def rate_limiting(runtime: Runtime, inner: Decider, *,
                        clock: Callable[[], float] = time.time) -> AsyncIterator[RateLimitingDecider]:
    """``inner`` behind the rate limits (docs/rate-limits.md), their sync loop supervised as
    ``proxy.rate-limits``; ``clock`` (epoch seconds) places requests in their minute windows."""
    settings = runtime.settings
    limiter = RateLimiter(runtime.pool, instance=f"{settings.instance}/{new_id()}", settings=settings.rate_limits,
                          clock=clock)
    await limiter.start()
    stopping = asyncio.Event()
    task = runtime.supervisor.spawn("proxy.rate-limits", limiter.run, stopping)
    try:
        yield RateLimitingDecider(inner, limiter)
    finally:
        stopping.set()
        limiter.wake()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve(runtime: Runtime, stop: asyncio.Event, *, decider: Decider | None = None,
                clock: Callable[[], datetime] | None = None) -> None:
    """Run the proxy until ``stop``; budgets are enforced (periods by ``clock``) unless another
    ``decider`` is given."""
    if decider is not None:
        await _serve(runtime, stop, decider)
        return
    async with enforcing_decider(runtime, clock=clock) as enforcing, rate_limiting(runtime, enforcing) as limited:
        await _serve(runtime, stop, limited)


async def _serve(runtime: Runtime, stop: asyncio.Event, decider: Decider) -> None:
    server = ProxyServer(runtime, decider=decider)
    await server.start()
    # What start-up loaded (modules, keys, the policy with its budgets) lives as long as the process: out
    # of the collector's sight, a full collection no longer walks it (about 95,000 objects with 10,000
    # budgets: 160 ms per full collection, landing on whichever request was running). Here, in the
    # process's own entry point, not in ProxyServer.start: a test process starting many proxies would
    # freeze its own garbage each time.
    gc.freeze()
    try:
        await stop.wait()
    finally:
        await server.stop()
