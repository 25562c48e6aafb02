"""Tracing as the services see it: a :class:`Tracer`, or None when tracing is off.

Off by default. :func:`open_tracer` returns None unless an OTLP endpoint is configured (``otel.endpoint``
or the standard ``OTEL_EXPORTER_OTLP_*`` variables, read by :mod:`spendgate.core.config`), and only
then imports :mod:`spendgate.core.otel`, which imports opentelemetry: with tracing off, the proxy's
whole cost is one ``if tracer is None`` per request.

Spans carry attribution and figures, never prompts, completions, keys or channel secrets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

from spendgate.core.config import Settings
from spendgate.domain.events import UsageRecorded

Attribute = str | bool | int | float


class Span(Protocol):
    def set_attribute(self, key: str, value: Attribute) -> None: ...


class Tracer(Protocol):
    def request(self, event: UsageRecorded) -> None:
        """One span for a proxied model request, ending now and lasting its ``latency_ms``."""

    def span(self, name: str, attributes: Mapping[str, Attribute]) -> AbstractContextManager[Span]:
        """A span around a block (a ledger fold batch, an alert delivery attempt)."""
        ...

    def shutdown(self) -> None:
        """Send what is buffered and stop."""


def policy_version(settings: Settings) -> str:
    """A short digest of the enforcement settings a process runs with (cascades, thresholds, retry cap):
    two proxies with the same value decide alike. Budgets live in the database and are not part of it."""
    return hashlib.sha256(settings.enforcement.model_dump_json().encode()).hexdigest()[:12]


def open_tracer(settings: Settings) -> Tracer | None:
    """An OTLP tracer when an endpoint is configured, else None (and opentelemetry stays unimported)."""
    if not settings.otel.endpoint:
        return None
    from spendgate.core.otel import OtelTracer

    return OtelTracer(settings.otel, instance=settings.instance, policy_version=policy_version(settings))
