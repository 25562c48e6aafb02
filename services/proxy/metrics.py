"""Prometheus metrics of one proxy, in a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..core.events import UsageRecorded

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("spendgate_proxy_metered_requests", "Metered model requests by status",
                                ["status"], registry=self.registry)
        self.cost = Counter("spendgate_proxy_cost_micros", "Cost of metered requests, micro-dollars",
                            registry=self.registry)
        self.tokens = Counter("spendgate_proxy_tokens", "Tokens of metered requests", ["kind"],
                              registry=self.registry)
        self._gauges: dict[str, Gauge] = {}
        self._by_status: dict[str, Counter] = {}
        self._input, self._cached, self._output = (self.tokens.labels(k) for k in ("input", "cached", "output"))

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        g = Gauge(name, doc, registry=self.registry)
        g.set_function(read)
        self._gauges[name] = g

    def observe(self, event: UsageRecorded) -> None:
        counter = self._by_status.get(event.status)
        if counter is None:
            counter = self._by_status[event.status] = self.requests.labels(event.status)
        counter.inc()
        self.cost.inc(event.cost_micros)
        self._input.inc(event.input_tokens)
        self._cached.inc(event.cached_tokens)
        self._output.inc(event.output_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
