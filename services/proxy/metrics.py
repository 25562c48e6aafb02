"""Prometheus metrics of one proxy, in its process's registry (:class:`spendgate.core.metrics.Metrics`).

The request path only adds to plain integers (``observe``, ``forwarded``: a few additions and dict
updates, no locks, no prometheus-client objects); a collector turns them into Prometheus families when
``/metrics`` is scraped. Team and model labels are bounded (:class:`~spendgate.core.metrics.Bounded`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from spendgate.core.metrics import LATENCY_BUCKETS_S, Bounded, Metrics
from spendgate.domain.events import UsageRecorded
from spendgate.proxy.upstreams import Pool

ADDED_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""The proxy's own time before a request leaves for the upstream: sub-millisecond when all is well."""
MAX_TEAMS = 200
MAX_MODELS = 50


class _Histogram:
    """Cumulative buckets kept as plain counts (one bisect and two additions per observation)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        running, buckets = 0, []
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            buckets.append((bound, running))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class _Counts(Collector):
    """The request path's figures, read at scrape time."""

    def __init__(self) -> None:
        self.by_status: dict[str, int] = {}
        self.by_upstream_code: dict[int, int] = {}
        self.cost_micros = 0
        self.input = self.cached = self.output = 0
        self.spend: dict[tuple[str, str], int] = {}
        self.team_label, self.model_label = Bounded(MAX_TEAMS), Bounded(MAX_MODELS)
        self.duration = _Histogram(LATENCY_BUCKETS_S)
        self.added = _Histogram(ADDED_BUCKETS_S)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("spendgate_proxy_metered_requests", "Metered model requests by status",
                                       labels=["status"])
        for status, n in sorted(self.by_status.items()):
            requests.add_metric([status], n)
        yield requests
        upstream = CounterMetricFamily("spendgate_proxy_upstream_responses",
                                       "Answers from the upstream provider by HTTP status", labels=["code"])
        for code, n in sorted(self.by_upstream_code.items()):
            upstream.add_metric([str(code)], n)
        yield upstream
        yield CounterMetricFamily("spendgate_proxy_cost_micros", "Cost of metered requests, micro-dollars",
                                  value=self.cost_micros)
        spend = CounterMetricFamily("spendgate_spend_micros", "Metered spend by team and model used, micro-dollars",
                                    labels=["team", "model"])
        for (team, model), micros in sorted(self.spend.items()):
            spend.add_metric([team, model], micros)
        yield spend
        tokens = CounterMetricFamily("spendgate_proxy_tokens", "Tokens of metered requests", labels=["kind"])
        for kind, n in (("input", self.input), ("cached", self.cached), ("output", self.output)):
            tokens.add_metric([kind], n)
        yield tokens
        yield self.duration.family("spendgate_proxy_request_duration_seconds",
                                   "Whole request through the proxy, first byte in to event spooled")
        yield self.added.family("spendgate_proxy_added_latency_seconds",
                                "Time the proxy spends before a request leaves for the upstream "
                                "(authenticate, parse, decide, spool the intent)")


class _PoolFigures(Collector):
    """The upstream pool's failovers and circuit states, read at scrape time (the latest pool wins when
    the proxy restarts)."""

    def __init__(self) -> None:
        self.pools: tuple[Pool, ...] = ()

    def collect(self) -> Iterator[Metric]:
        if not self.pools:
            return
        failovers = CounterMetricFamily("spendgate_upstream_failover",
                                        "Attempts abandoned for another upstream, by upstream and reason "
                                        "(rate_limited, server_error, unreachable, timeout)",
                                        labels=["upstream", "reason"])
        for (name, reason), n in sorted(kv for pool in self.pools for kv in pool.failovers.items()):
            failovers.add_metric([name, reason], n)
        yield failovers
        circuit = GaugeMetricFamily("spendgate_upstream_circuit_state",
                                    "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open",
                                    labels=["upstream"])
        for pool in self.pools:
            for upstream in pool.upstreams:
                circuit.add_metric([upstream.name], pool.state(upstream.name).value)
        yield circuit


class ProxyMetrics:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self._counts = self.metrics.collector("spendgate_proxy", _Counts)

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        self.metrics.gauge_of(name, doc, read)

    def observe(self, event: UsageRecorded) -> None:
        c = self._counts
        c.by_status[event.status] = c.by_status.get(event.status, 0) + 1
        if event.status != "refused" and event.http_status:
            c.by_upstream_code[event.http_status] = c.by_upstream_code.get(event.http_status, 0) + 1
        c.cost_micros += event.cost_micros
        if event.cost_micros:
            label = (c.team_label(event.team), c.model_label(event.model_used))
            c.spend[label] = c.spend.get(label, 0) + event.cost_micros
        c.input += event.input_tokens
        c.cached += event.cached_tokens
        c.output += event.output_tokens
        c.duration.observe(event.latency_ms / 1000)

    def upstream_pool(self, *pools: Pool) -> None:
        """Export the ``pools``' failover counts and circuit states (upstream names are unique across them)."""
        self.metrics.collector("spendgate_upstream", _PoolFigures).pools = pools

    def forwarding(self, added_s: float) -> None:
        """A request is about to leave for the upstream, ``added_s`` after it arrived."""
        self._counts.added.observe(added_s)

    def render(self) -> bytes:
        return self.metrics.render()
