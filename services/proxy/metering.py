"""Turning what happened to a request into its one :class:`UsageRecorded` event (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spendgate.domain.enforcement.estimate import TokenEstimate
from spendgate.domain.enforcement.retry import TurnTools
from spendgate.domain.events import (
    ExperimentArm,
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
from spendgate.proxy.normalise import MAX_ENDPOINT_CHARS, MAX_MODEL_CHARS, clean_text, fits_int64
from spendgate.proxy.routes import Metering
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
    unit_cost_micros: int | None = None
    """The cost of a request priced per unit (images, seconds of audio) rather than per token."""
    event_id: str | None = None
    """The id the request's event gets: its intent's, once one was spooled."""
    intent_estimate: bool = False
    upstream: str | None = None
    """The configured name of the upstream that answered (:mod:`spendgate.proxy.upstreams`)."""
    final_message: bool | None = None
    """The answer ended with an assistant message, not a tool call (None: not known)."""


@dataclass(frozen=True, slots=True)
class Route:
    model_requested: str
    model_used: str
    price: PriceLookup
    route_reason: RouteReason = "requested"
    stage: Stage = "ok"
    retry: bool = False
    metering: Metering = "tokens"
    unit_micros: int = 0
    """Per-unit price (one image, one second of audio) for unit-metered routes."""
    units: int = 1
    """Units the request asked for (``n`` images)."""
    tools: TurnTools | None = None
    """The tool outputs of the request's current turn (from the retry detector)."""
    policy_version: str | None = None
    """The stored policy version the request was decided under."""
    routing_rule: str | None = None
    """The routing rule that changed the model, if one did."""
    experiment_arm: ExperimentArm | None = None
    """The exploration arm of the request's turn, if it is in the experiment."""


AUDIO_BYTES_PER_SECOND_ESTIMATE = 4_000
"""When a transcription's answer does not say how long the audio was, it is estimated from the upload at
32 kbit/s: lower than most encodings, so the estimate errs on the side of more seconds."""


def settle_units(route: Route, outcome: Outcome, answer: Any, request_bytes: int, estimate: TokenEstimate) -> None:
    """Price a forwarded request not metered by reported tokens once its answer is known (``answer``: the
    decoded JSON body, or None for a stream or a non-JSON answer): images and audio per unit, a batch
    by its estimate (``route.price`` is already the batch price), free routes at nothing."""
    outcome.usage = NO_USAGE
    if outcome.status not in ("ok", "client_aborted"):
        return
    if route.metering == "batch":
        outcome.usage = Usage(estimate.input_tokens, 0, estimate.output_tokens, 0)
        outcome.usage_source = "estimated"
    elif route.metering == "image":
        outcome.unit_cost_micros, outcome.usage_source = route.unit_micros * route.units, "reported"
    elif route.metering == "audio":
        seconds = _audio_seconds(answer)
        outcome.usage_source = "reported"
        if seconds is None:
            seconds, outcome.usage_source = -(-request_bytes // AUDIO_BYTES_PER_SECOND_ESTIMATE), "estimated"
        outcome.unit_cost_micros = route.unit_micros * seconds


def _audio_seconds(answer: Any) -> int | None:
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    value = usage.get("seconds") if isinstance(usage, dict) and usage.get("type") == "duration" else None
    if value is None:
        value = answer.get("duration")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86_400:
        return None
    return math.ceil(value)


def build_event(
    *, key: VirtualKey, attribution: Attribution, endpoint: str, route: Route, outcome: Outcome,
    latency_ms: int, instance: str, stream: bool | None = None, occurred_at: datetime | None = None,
) -> UsageRecorded:
    """``occurred_at``: when the request was made (default: now; a simulation passes its own clock's)."""
    u = outcome.usage
    price = route.price.price
    writes = bool(u.cache_write_5m_tokens or u.cache_write_1h_tokens)
    if outcome.unit_cost_micros is not None:
        cost = outcome.unit_cost_micros
    else:
        cost = cost_micros(price, input_tokens=u.input_tokens, cached_tokens=u.cached_tokens,
                           output_tokens=u.output_tokens, cache_write_5m_tokens=u.cache_write_5m_tokens,
                           cache_write_1h_tokens=u.cache_write_1h_tokens)
    return UsageRecorded(
        event_id=outcome.event_id or new_id(),
        occurred_at=occurred_at or datetime.now(UTC),
        proxy_instance=instance,
        key_id=key.key_id,
        developer=key.developer,
        team=key.team,
        cost_center=key.cost_center,
        session_id=attribution.session_id,
        turn_id=attribution.turn_id,
        repo=attribution.repo,
        client=attribution.client,
        endpoint=clean_text(endpoint, MAX_ENDPOINT_CHARS),
        stream=stream,
        model_requested=clean_text(route.model_requested, MAX_MODEL_CHARS),
        model_used=clean_text(route.model_used, MAX_MODEL_CHARS),
        route_reason=route.route_reason,
        stage=route.stage,
        status=outcome.status,
        http_status=outcome.http_status,
        input_tokens=u.input_tokens,
        cached_tokens=min(u.cached_tokens, u.input_tokens),
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
        cache_write_5m_tokens=u.cache_write_5m_tokens,
        cache_write_1h_tokens=u.cache_write_1h_tokens,
        usage_source=outcome.usage_source,
        prices=UnitPrices(input_micros=price.input_micros, cached_input_micros=price.cached_input_micros,
                          output_micros=price.output_micros, fallback=route.price.fallback,
                          cache_write_5m_micros=price.write_5m_micros if writes else None,
                          cache_write_1h_micros=price.write_1h_micros if writes else None),
        cost_micros=fits_int64(cost),
        retry=route.retry,
        latency_ms=max(0, latency_ms),
        ttfb_ms=outcome.ttfb_ms,
        upstream_request_id=outcome.upstream_request_id,
        refusal_reason=outcome.refusal_reason,
        intent_estimate=outcome.intent_estimate,
        upstream=outcome.upstream,
        tool_outputs=route.tools.outputs if route.tools is not None else 0,
        tool_failures=route.tools.failures if route.tools is not None else 0,
        final_message=outcome.final_message,
        policy_version=route.policy_version,
        routing_rule=route.routing_rule,
        experiment_arm=route.experiment_arm,
    )


def intent_outcome(estimate: TokenEstimate) -> Outcome:
    """What a request is recorded as if the proxy dies while it is in flight (its intent): the
    pre-forward estimate of its tokens, no answer seen (``http_status`` 0)."""
    usage = Usage(estimate.input_tokens, estimate.cached_tokens, estimate.output_tokens, 0)
    return Outcome("incomplete", 0, usage, "estimated", event_id=new_id(), intent_estimate=True)
