"""The OpenTelemetry SDK behind :class:`spendgate.core.tracing.Tracer` (imported only when tracing is on).

A proxied request's span follows the OpenTelemetry GenAI semantic conventions (``gen_ai.*``: operation,
provider, requested and answering model, token usage, conversation id) plus ``spendgate.*`` for what
only spendgate knows (cost in micro-dollars, attribution, stage, downgrade, policy version). It is made
after the fact from the usage event, so the request path does no tracing work while it runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from spendgate.core.config_services import OtelSettings
from spendgate.core.tracing import Attribute, Span
from spendgate.domain.events import UsageRecorded

OPERATIONS = {"/v1/chat/completions": "chat", "/v1/responses": "chat", "/v1/completions": "text_completion",
              "/v1/embeddings": "embeddings"}
"""``gen_ai.operation.name`` by endpoint; other endpoints use their path under ``/v1``."""
SHUTDOWN_WAIT_S = 2.0
"""At stop, the last spans get this long to leave; a collector that is down must not hold up the stop
(the SDK would retry until its export timeout)."""


class OtelTracer:
    def __init__(self, settings: OtelSettings, *, instance: str, policy_version: str) -> None:
        assert settings.endpoint is not None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, timeout=settings.timeout_s,
                                    headers={k: v.get_secret_value() for k, v in settings.headers.items()})
        self._provider = TracerProvider(resource=Resource.create({
            "service.name": settings.service_name, "service.instance.id": instance}), shutdown_on_exit=False)
        self._provider.add_span_processor(BatchSpanProcessor(
            exporter, schedule_delay_millis=settings.export_interval_s * 1000))
        self._tracer = self._provider.get_tracer("spendgate")
        self.policy_version = policy_version

    def request(self, event: UsageRecorded) -> None:
        end_ns = time.time_ns()
        operation = OPERATIONS.get(event.endpoint) or event.endpoint.removeprefix("/v1/")
        span = self._tracer.start_span(f"{operation} {event.model_requested}", kind=SpanKind.CLIENT,
                                       start_time=end_ns - event.latency_ms * 1_000_000,
                                       attributes=self._request_attributes(event, operation))
        if event.status == "upstream_error":
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", str(event.http_status))
        span.end(end_time=end_ns)

    def _request_attributes(self, e: UsageRecorded, operation: str) -> dict[str, Attribute]:
        attributes: dict[str, Attribute] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": e.model_requested,
            "gen_ai.response.model": e.model_used,
            "gen_ai.usage.input_tokens": e.input_tokens,
            "gen_ai.usage.output_tokens": e.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": e.cached_tokens,
            "http.response.status_code": e.http_status,
            "spendgate.event_id": e.event_id,
            "spendgate.endpoint": e.endpoint,
            "spendgate.status": e.status,
            "spendgate.cost_micros": e.cost_micros,
            "spendgate.usage_source": e.usage_source,
            "spendgate.reasoning_tokens": e.reasoning_tokens,
            "spendgate.key_id": e.key_id,
            "spendgate.developer": e.developer,
            "spendgate.team": e.team,
            "spendgate.cost_center": e.cost_center,
            "spendgate.stage": e.stage,
            "spendgate.downgraded": e.model_used != e.model_requested,
            "spendgate.route_reason": e.route_reason,
            "spendgate.retry": e.retry,
            "spendgate.policy_version": self.policy_version,
        }
        optional = {"gen_ai.conversation.id": e.session_id, "spendgate.session": e.session_id,
                    "spendgate.turn": e.turn_id, "spendgate.refusal_reason": e.refusal_reason}
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if e.ttfb_ms is not None:
            attributes["spendgate.ttfb_ms"] = e.ttfb_ms
        return attributes

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Attribute]) -> Iterator[Span]:
        with self._tracer.start_as_current_span(name, attributes=dict(attributes)) as span:
            yield span

    def shutdown(self) -> None:
        """Send the last spans, waiting at most :data:`SHUTDOWN_WAIT_S` (the rest are dropped)."""
        worker = threading.Thread(target=self._provider.shutdown, name="otel-shutdown", daemon=True)
        worker.start()
        worker.join(SHUTDOWN_WAIT_S)
