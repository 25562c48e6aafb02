"""One Prometheus registry per process, and the rules every service's metrics follow.

A :class:`Metrics` lives in the process's ``Runtime`` (no process-global registry: two runtimes in one
test process keep their figures apart). Services take their instruments from it by name; asking twice
for a name returns the same instrument, so a service the supervisor restarts keeps counting where it
left off instead of failing on a duplicate registration.

Label values that come from data (teams, models) go through :class:`Bounded`: the first ``cap``
distinct values are kept, every later one is counted as ``"other"``, so a typo'd model name per
request cannot grow the series without bound.

``/metrics`` carries spend figures, so every endpoint that serves it asks for the ``metrics_token``
setting as a Bearer token (:func:`authorised`); without a token set it is a 404.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds, for anything from a fold batch to a model answer."""
DELIVERY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

C = TypeVar("C", bound=Collector)


class Bounded:
    """Label values capped at ``cap`` distinct ones; the rest become ``"other"``."""

    __slots__ = ("_cap", "_seen")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._cap:
            self._seen.add(value)
            return value
        return OTHER


class Metrics:
    """The process's registry and its instruments, by name."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._made: dict[str, Collector] = {}

    def _get(self, name: str, kind: type[C], make: Callable[[], C]) -> C:
        found = self._made.get(name)
        if found is None:
            found = self._made[name] = make()
        if not isinstance(found, kind):
            raise TypeError(f"metric {name} is a {type(found).__name__}, not a {kind.__name__}")
        return found

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return self._get(name, Counter, lambda: Counter(name, doc, labels, registry=self.registry))

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS_S) -> Histogram:
        return self._get(name, Histogram, lambda: Histogram(name, doc, labels, registry=self.registry,
                                                            buckets=buckets))

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get(name, Gauge, lambda: Gauge(name, doc, labels, registry=self.registry))

    def gauge_of(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time (the latest ``read`` wins when a service restarts)."""
        self.gauge(name, doc).set_function(read)

    def collector(self, name: str, make: Callable[[], C]) -> C:
        """A custom collector registered once under ``name`` (the same one on later calls)."""
        def registered() -> C:
            made = make()
            self.registry.register(made)
            return made

        found = self._made.get(name)
        if found is None:
            found = self._made[name] = registered()
        return found  # type: ignore[return-value]

    def render(self) -> bytes:
        return generate_latest(self.registry)


def authorised(header: str, token: str | None) -> bool | None:
    """Whether ``header`` (the request's Authorization) carries ``token``; None when no token is set
    (``/metrics`` is then off)."""
    if not token:
        return None
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
