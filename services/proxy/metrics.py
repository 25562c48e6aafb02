"""Prometheus metrics of one proxy, in a registry of its own (no process-global state).

The request path only adds to plain integers (``observe``: a few additions, no locks, no label
lookups); a collector turns them into the Prometheus counters when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from spendgate.domain.events import UsageRecorded

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Counts(Collector):
    """The metered-request counters, read at scrape time."""

    def __init__(self) -> None:
        self.by_status: dict[str, int] = {}
        self.cost_micros = 0
        self.input = self.cached = self.output = 0

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("spendgate_proxy_metered_requests", "Metered model requests by status",
                                       labels=["status"])
        for status, n in sorted(self.by_status.items()):
            requests.add_metric([status], n)
        yield requests
        yield CounterMetricFamily("spendgate_proxy_cost_micros", "Cost of metered requests, micro-dollars",
                                  value=self.cost_micros)
        tokens = CounterMetricFamily("spendgate_proxy_tokens", "Tokens of metered requests", labels=["kind"])
        for kind, n in (("input", self.input), ("cached", self.cached), ("output", self.output)):
            tokens.add_metric([kind], n)
        yield tokens


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counts = _Counts()
        self.registry.register(self._counts)
        self._gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        g = Gauge(name, doc, registry=self.registry)
        g.set_function(read)
        self._gauges[name] = g

    def observe(self, event: UsageRecorded) -> None:
        c = self._counts
        c.by_status[event.status] = c.by_status.get(event.status, 0) + 1
        c.cost_micros += event.cost_micros
        c.input += event.input_tokens
        c.cached += event.cached_tokens
        c.output += event.output_tokens

    def render(self) -> bytes:
        return generate_latest(self.registry)
