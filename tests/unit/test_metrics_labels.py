"""Metric label values from data are bounded: the first N distinct values, then "other"."""

from __future__ import annotations

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from spendgate.core.metrics import OTHER, Bounded, Metrics
from spendgate.proxy.metrics import MAX_MODELS, ProxyMetrics
from tests.support.factories import usage_event


def test_bounded_keeps_the_first_values_and_folds_the_rest() -> None:
    """Seen values stay themselves after the cap; new ones become "other"."""
    label = Bounded(2)
    assert [label(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_spend_by_model_has_at_most_the_cap_plus_other() -> None:
    """A flood of distinct model names adds one "other" series, and no spend is lost."""
    metrics = Metrics()
    proxy = ProxyMetrics(metrics)
    events = [usage_event(model_used="gpt-5.1", model_requested=f"m-{i}", cost_micros=10) for i in range(3)]
    base = usage_event(cost_micros=7)
    events += [msgspec.structs.replace(base, model_used=f"model-{i}") for i in range(MAX_MODELS + 20)]
    for event in events:
        proxy.observe(event)
    [family] = [f for f in text_string_to_metric_families(metrics.render().decode())
                if f.name == "spendgate_spend_micros"]
    models = {s.labels["model"]: s.value for s in family.samples if s.name == "spendgate_spend_micros_total"}
    assert len(models) == MAX_MODELS + 1 and models[OTHER] == 21 * 7
    assert sum(models.values()) == sum(e.cost_micros for e in events)


def test_asking_twice_for_a_name_gives_the_same_instrument() -> None:
    """A restarted service takes its counters back instead of failing on a duplicate registration."""
    metrics = Metrics()
    first = metrics.counter("spendgate_test_things", "Things")
    first.inc(3)
    assert metrics.counter("spendgate_test_things", "Things") is first
    ProxyMetrics(metrics).observe(usage_event())
    ProxyMetrics(metrics).observe(usage_event())
    text = metrics.render().decode()
    assert 'spendgate_proxy_metered_requests_total{status="ok"} 2.0' in text
