"""The upstream pool: which upstreams may serve a model, in what order, and which are resting.

Pure: no I/O, the clock and the random source passed in. :mod:`spendgate.proxy.failover` sends the
request down the plan this module makes and reports each attempt back; docs/upstreams.md describes the
behaviour an operator sees.

- **Plan.** The upstreams that serve the request's model (``models: "*"`` serves any) and are not
  resting, in a weighted random order (each upstream comes first with probability ``weight / total``),
  at most ``max_attempts`` of them.
- **Resting.** An upstream rests while its ``Retry-After`` runs (capped at ``max_retry_after_s``) or
  its circuit is open. A model with one upstream never rests it: there is nothing to fail over to, so
  its own answer (or error) is what the client gets, as before pools existed.
- **Circuit breaker**, per upstream: ``closed`` (used) → ``open`` after ``failure_threshold``
  consecutive failures (skipped) → ``half_open`` once ``cooldown_s`` passed (one request, the probe, may
  use it; others still skip it) → ``closed`` when the probe succeeds, ``open`` again (a new cool-down)
  when it fails. A failure is a 429, a 5xx, a connection failure or a timeout; any other answer,
  a 4xx included, is a success (the upstream is up and answered).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from spendgate.core.config import Settings
from spendgate.core.config_providers import UpstreamSettings

FailReason = Literal["rate_limited", "server_error", "unreachable", "timeout"]
DEFAULT_NAME = "default"
ANTHROPIC_NAME = "anthropic"
"""The Anthropic routes' one upstream when no ``kind: anthropic`` upstream is configured."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One configured upstream, resolved (its key read) at start."""

    name: str
    kind: str
    """``openai`` (any OpenAI-compatible API), ``azure`` or ``anthropic`` (the Messages routes only);
    :mod:`spendgate.proxy.upstream_kinds` holds one adapter per kind."""
    url: str
    key: str | None
    weight: int = 1
    models: frozenset[str] | None = None
    """None: any model."""
    api_version: str = "v1"
    deployments: tuple[tuple[str, str], ...] = ()

    def serves(self, model: str | None) -> bool:
        return self.models is None or (model is not None and model in self.models)

    def deployment(self, model: str | None) -> str | None:
        return next((d for m, d in self.deployments if m == model), None)


class Circuit(Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(slots=True)
class Breaker:
    """One upstream's circuit breaker (see the module's docstring)."""

    threshold: int
    cooldown_s: float
    state: Circuit = Circuit.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def available(self, now: float) -> bool:
        if self.state is Circuit.OPEN and now - self.opened_at >= self.cooldown_s:
            self.state, self.probing = Circuit.HALF_OPEN, False
        return self.state is Circuit.CLOSED or (self.state is Circuit.HALF_OPEN and not self.probing)

    def taken(self) -> None:
        """A request is about to use the upstream: in half-open, it is the one probe."""
        if self.state is Circuit.HALF_OPEN:
            self.probing = True

    def succeeded(self) -> None:
        self.state, self.failures, self.probing = Circuit.CLOSED, 0, False

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.state is Circuit.HALF_OPEN or self.failures >= self.threshold:
            self.state, self.opened_at, self.probing = Circuit.OPEN, now, False

    def abandoned(self) -> None:
        """The attempt ended with no verdict (the client left): free the probe slot."""
        self.probing = False


@dataclass
class Pool:
    """The configured upstreams with their breakers and ``Retry-After`` rests."""

    upstreams: Sequence[Upstream]
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    max_retry_after_s: float = 300.0
    max_attempts: int = 3
    clock: Callable[[], float] = field(default=lambda: 0.0)
    rng: random.Random = field(default_factory=random.Random)
    breakers: dict[str, Breaker] = field(init=False)
    resting_until: dict[str, float] = field(init=False)
    failovers: dict[tuple[str, FailReason], int] = field(init=False)
    """Attempts abandoned for another upstream, by upstream and reason (the metrics read it)."""

    def __post_init__(self) -> None:
        self.breakers = {u.name: Breaker(self.failure_threshold, self.cooldown_s) for u in self.upstreams}
        self.resting_until = {u.name: 0.0 for u in self.upstreams}
        self.failovers = {}
        self._sole = len(self.upstreams) == 1

    @property
    def primary(self) -> Upstream:
        """The first configured upstream: requests that name no model (files, batches, stored responses:
        state kept at one provider) go there."""
        return self.upstreams[0]

    def plan(self, model: str | None) -> list[Upstream]:
        """The upstreams to try for ``model``, in order; empty when every one that serves it rests."""
        if model is None:
            return [self.primary]
        if self._sole:
            return [self.upstreams[0]] if self.upstreams[0].serves(model) else []
        serving = [u for u in self.upstreams if u.serves(model)]
        if len(serving) <= 1:
            return serving
        ready = [u for u in serving if self.ready(u)]
        # Efraimidis-Spirakis: sorting by u ** (1 / weight) draws a weighted order without replacement.
        ready.sort(key=lambda u: self.rng.random() ** (1.0 / u.weight), reverse=True)
        return ready[: self.max_attempts]

    def ready(self, upstream: Upstream) -> bool:
        """Neither resting after a ``Retry-After`` nor skipped by its circuit (open, or half-open with the
        probe out)."""
        now = self.clock()
        return self.resting_until[upstream.name] <= now and self.breakers[upstream.name].available(now)

    def serving(self, model: str | None) -> bool:
        return any(u.serves(model) for u in self.upstreams)

    def resting_s(self, model: str | None) -> float:
        """Seconds until the first upstream serving ``model`` may be tried again."""
        now = self.clock()
        waits = []
        for u in self.upstreams:
            if not u.serves(model):
                continue
            b = self.breakers[u.name]
            opened = b.opened_at + b.cooldown_s - now if b.state is Circuit.OPEN else 0.0
            waits.append(max(self.resting_until[u.name] - now, opened, 0.0))
        return min(waits, default=0.0)

    def taken(self, upstream: Upstream) -> None:
        self.breakers[upstream.name].taken()

    def succeeded(self, upstream: Upstream) -> None:
        self.breakers[upstream.name].succeeded()

    def failed(self, upstream: Upstream, reason: FailReason, *, retry_after_s: float | None = None,
               failing_over: bool = False) -> None:
        now = self.clock()
        self.breakers[upstream.name].failed(now)
        if retry_after_s is not None and retry_after_s > 0:
            self.resting_until[upstream.name] = now + min(retry_after_s, self.max_retry_after_s)
        if failing_over:
            key = (upstream.name, reason)
            self.failovers[key] = self.failovers.get(key, 0) + 1

    def abandoned(self, upstream: Upstream) -> None:
        self.breakers[upstream.name].abandoned()

    def state(self, name: str) -> Circuit:
        breaker = self.breakers[name]
        breaker.available(self.clock())  # an open circuit past its cool-down reads as half-open
        return breaker.state


def retry_after_s(value: str | None, value_ms: str | None = None) -> float | None:
    """``Retry-After`` in seconds (``retry-after-ms`` first, OpenAI's finer one); None when absent or not
    a number of seconds (an HTTP date is read as absent: providers send seconds)."""
    for raw, scale in ((value_ms, 1000.0), (value, 1.0)):
        if raw is None:
            continue
        try:
            seconds = float(raw.strip()) / scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def pool_from_settings(settings: Settings, *, clock: Callable[[], float]) -> Pool:
    """The OpenAI-API routes' pool the settings describe: the ``upstreams`` of kinds ``openai`` and
    ``azure``, else one upstream named ``default`` at ``upstream_url`` with ``upstream_key`` (the
    configuration before pools existed)."""
    upstreams = [_upstream(u) for u in settings.upstreams if u.kind != "anthropic"]
    if not upstreams:
        key = settings.upstream_key.get_secret_value() if settings.upstream_key else None
        upstreams = [Upstream(name=DEFAULT_NAME, kind="openai", url=settings.upstream_url, key=key)]
    return _pool(settings, upstreams, clock)


def anthropic_pool_from_settings(settings: Settings, *, clock: Callable[[], float]) -> Pool:
    """The Anthropic Messages routes' pool: the ``upstreams`` of kind ``anthropic``, else one upstream
    named ``anthropic`` at ``anthropic_upstream_url`` with ``anthropic_upstream_key``."""
    upstreams = [_upstream(u) for u in settings.upstreams if u.kind == "anthropic"]
    if not upstreams:
        key = settings.anthropic_upstream_key.get_secret_value() if settings.anthropic_upstream_key else None
        upstreams = [Upstream(name=ANTHROPIC_NAME, kind="anthropic", url=settings.anthropic_upstream_url, key=key)]
    return _pool(settings, upstreams, clock)


def _upstream(u: UpstreamSettings) -> Upstream:
    return Upstream(name=u.name, kind=u.kind, url=u.url, key=u.secret(), weight=u.weight,
                    models=None if u.models == "*" and u.kind != "azure"
                    else frozenset(u.deployments if u.models == "*" else u.models),
                    api_version=u.api_version, deployments=tuple(u.deployments.items()))


def _pool(settings: Settings, upstreams: list[Upstream], clock: Callable[[], float]) -> Pool:
    cfg = settings.upstream_pool
    return Pool(upstreams, failure_threshold=cfg.failure_threshold, cooldown_s=cfg.cooldown_s,
                max_retry_after_s=cfg.max_retry_after_s, max_attempts=cfg.max_attempts, clock=clock,
                rng=random.Random(cfg.seed))
