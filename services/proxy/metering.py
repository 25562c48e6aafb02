"""Turning what happened to a request into its one :class:`UsageRecorded` event (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from spendgate.domain.enforcement.estimate import TokenEstimate
from spendgate.domain.events import (
    RefusalReason,
    RouteReason,
    Stage,
    UnitPrices,
    UsageRecorded,
    UsageSource,
    UsageStatus,
    new_id,
)
from spendgate.domain.pricing import PriceLookup, cost_micros
from spendgate.proxy.attribution import Attribution
from spendgate.proxy.usage import Usage
from spendgate.store.keys.store import VirtualKey

NO_USAGE = Usage(0, 0, 0, 0)


@dataclass(slots=True)
class Outcome:
    """What the proxy learnt while serving one request."""

    status: UsageStatus
    http_status: int
    usage: Usage = NO_USAGE
    usage_source: UsageSource = "none"
    ttfb_ms: int | None = None
    upstream_request_id: str | None = None
    refusal_reason: RefusalReason | None = None
    emitted: bool = False
    event_id: str | None = None
    """The id the request's event gets: its intent's, once one was spooled."""
    intent_estimate: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    model_requested: str
    model_used: str
    price: PriceLookup
    route_reason: RouteReason = "requested"
    stage: Stage = "ok"
    retry: bool = False


def build_event(
    *, key: VirtualKey, attribution: Attribution, endpoint: str, route: Route, outcome: Outcome,
    latency_ms: int, instance: str, stream: bool | None = None,
) -> UsageRecorded:
    u = outcome.usage
    price = route.price.price
    return UsageRecorded(
        event_id=outcome.event_id or new_id(),
        occurred_at=datetime.now(UTC),
        proxy_instance=instance,
        key_id=key.key_id,
        developer=key.developer,
        team=key.team,
        cost_center=key.cost_center,
        session_id=attribution.session_id,
        turn_id=attribution.turn_id,
        repo=attribution.repo,
        client=attribution.client,
        endpoint=endpoint,
        stream=stream,
        model_requested=route.model_requested,
        model_used=route.model_used,
        route_reason=route.route_reason,
        stage=route.stage,
        status=outcome.status,
        http_status=outcome.http_status,
        input_tokens=u.input_tokens,
        cached_tokens=min(u.cached_tokens, u.input_tokens),
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
        usage_source=outcome.usage_source,
        prices=UnitPrices(input_micros=price.input_micros, cached_input_micros=price.cached_input_micros,
                          output_micros=price.output_micros, fallback=route.price.fallback),
        cost_micros=cost_micros(price, input_tokens=u.input_tokens, cached_tokens=u.cached_tokens,
                                output_tokens=u.output_tokens),
        retry=route.retry,
        latency_ms=max(0, latency_ms),
        ttfb_ms=outcome.ttfb_ms,
        upstream_request_id=outcome.upstream_request_id,
        refusal_reason=outcome.refusal_reason,
        intent_estimate=outcome.intent_estimate,
    )


def intent_outcome(estimate: TokenEstimate) -> Outcome:
    """What a request is recorded as if the proxy dies while it is in flight (its intent): the
    pre-forward estimate of its tokens, no answer seen (``http_status`` 0)."""
    usage = Usage(estimate.input_tokens, estimate.cached_tokens, estimate.output_tokens, 0)
    return Outcome("incomplete", 0, usage, "estimated", event_id=new_id(), intent_estimate=True)
