"""Rate limits in the proxy: the shared-count sync loop and the decider that refuses with a provider-style 429.

:class:`RateLimiter` keeps the limits and the per-minute counts in memory (:class:`~spendgate.domain.
ratelimits.Windows`); its supervised loop (``proxy.rate-limits``) publishes this proxy's counts and reads
its peers' every ``rate_limits.sync_interval_s`` while a limit is in force, and re-reads the limits every
``rate_limits.reload_s``. :class:`RateLimitingDecider` wraps the budget decider: a request is counted
against its key's, developer's and team's limits first (memory only), and refused with a 429 the caller's
SDK and agent back off on and retry (never the budget pause's stop-now shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg

from spendgate.core.config_providers import RateLimitSettings
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat
from spendgate.domain.events import UsageRecorded
from spendgate.domain.ratelimits import PRESENCE, Counts, Windows, minute_of
from spendgate.proxy.decision import Decider, Decision, Refuse, RequestFacts
from spendgate.proxy.ratelimit_responses import refusal_response
from spendgate.store.ratelimits import store

log = get_logger(__name__)


class RateLimiter:
    """One proxy's rate-limit state and its sync with the peers through PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, *, instance: str, settings: RateLimitSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.pool, self.instance, self.settings, self.clock = pool, instance, settings, clock
        self.windows = Windows()
        self.syncs = 0
        self._synced_at = 0.0
        self._loaded_at = -1e9
        self._present_in: int | None = None
        """The minute this proxy last published its presence row in."""
        self._wake = asyncio.Event()
        self._sync_done = asyncio.Event()

    async def start(self) -> None:
        """Load the limits and the peers' counts once before the first request."""
        await self.sync(force_reload=True)

    def stale(self) -> bool:
        """Whether the peers' counts are older than a few sync intervals (the database is slow or down)."""
        return time.monotonic() - self._synced_at > max(1.0, 10 * self.settings.sync_interval_s)

    async def next_sync(self, timeout_s: float) -> bool:
        """Ask for a sync now and wait for it (at most ``timeout_s``); False when none came in time."""
        done = self._sync_done
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                await done.wait()
        except TimeoutError:
            return False
        return True

    async def sync(self, *, force_reload: bool = False) -> None:
        """Reload the limits when due; publish this proxy's changed counts; read the peers'; new shares."""
        now_mono = time.monotonic()
        if force_reload or now_mono - self._loaded_at >= self.settings.reload_s:
            had = bool(self.windows.limits)
            self.windows.set_limits(await store.list_rate_limits(self.pool))
            self._loaded_at = now_mono
            if self.windows.limits and not had:
                self._wake.set()  # the loop waits a reload period while no limit exists: sync at its pace now
        if self.windows.limits:
            now = self.clock()
            changed = self.windows.take_changed(now)
            minute = minute_of(now)
            if self._present_in != minute:
                changed.append((PRESENCE, minute, Counts()))
            try:
                # Alone: one round trip. With live peers: the write committed before the read, so two proxies
                # syncing at once see each other (a burst over two proxies admits ~L, not ~1.5 L).
                peers = await store.exchange_counts(self.pool, self.instance, changed, minute - 1,
                                                    write_first=self.windows.live_peers > 0)
                if self.syncs % 200 == 0:
                    await store.sweep_counts(self.pool, minute - 2)
            except BaseException:
                for scope, _, _ in changed:
                    self.windows.changed.add(scope)  # published again next time
                raise
            self._present_in = minute
            self.windows.synced(peers, now)
        self.syncs += 1
        self._synced_at = time.monotonic()
        done, self._sync_done = self._sync_done, asyncio.Event()
        done.set()

    def wake(self) -> None:
        """Sync now (and let a stopping loop see its stop event)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, beat: Beat) -> None:
        """The supervised loop: sync every interval while limits exist (else every reload period)."""
        while not stop.is_set():
            interval = self.settings.sync_interval_s if self.windows.limits else self.settings.reload_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            if stop.is_set():
                return
            self._wake.clear()
            await self.sync()
            beat()


class RateLimitingDecider:
    """Rate limits before the budget decider; a request the budget refuses is not counted."""

    def __init__(self, inner: Decider, limiter: RateLimiter) -> None:
        self.inner, self.limiter = inner, limiter
        self._counted: dict[int, tuple[str, ...]] = {}
        """Per request admitted and counted, its scopes: its output tokens are counted once known."""

    async def decide(self, facts: RequestFacts) -> Decision:
        limiter = self.limiter
        if facts.model is None or not limiter.windows.limits:  # no model: spends nothing, not counted
            return await self.inner.decide(facts)
        key = facts.key
        scopes = (f"key:{key.key_id}", f"developer:{key.developer}", f"team:{key.team}")
        tokens = facts.estimate.input_tokens
        verdict = limiter.windows.admit(scopes, tokens, limiter.clock(), ignore_share=limiter.stale())
        if verdict.wait:
            deadline = time.monotonic() + limiter.settings.max_wait_s
            while verdict.wait:
                # This proxy used its share since the last sync: wait for the next one (new counts, a new
                # share). Past the deadline, a refusal to retry in 1 s while the peers are synced (the
                # bound holds); the window alone decides while they cannot be (the database is down).
                left = deadline - time.monotonic()
                synced = left > 0 and await limiter.next_sync(left)
                verdict = limiter.windows.admit(scopes, tokens, limiter.clock(), ignore_share=limiter.stale(),
                                                may_wait=synced)
        if verdict.refusal is not None:
            status, body, headers, content_type = refusal_response(
                verdict.refusal, facts.endpoint, client=facts.attribution.client, stream=facts.stream)
            return Refuse(status, body, headers, stage="ok", reason="rate_limited", content_type=content_type)
        counted = any(s in limiter.windows.limits for s in scopes)
        decision = await self.inner.decide(facts)
        if counted:
            if isinstance(decision, Refuse):
                for scope in scopes:
                    limiter.windows.add(scope, -1, -tokens, limiter.clock())
            else:
                self._counted[id(facts)] = scopes
        return decision

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        # The admission counted the input estimate; the minute now holds what the provider counted: the
        # real input (the estimate corrected either way) and the output.
        scopes = self._counted.pop(id(facts), None)
        tokens = event.input_tokens - facts.estimate.input_tokens + event.output_tokens
        if scopes is not None and tokens:
            now = self.limiter.clock()
            for scope in scopes:
                self.limiter.windows.add(scope, 0, tokens, now)
        self.inner.settled(facts, event)
