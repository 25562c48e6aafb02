"""The hot path: authenticate, decide, forward, relay while tapping for usage, emit one event.

Every ``/v1/*`` request goes through :meth:`Proxy.handle`: its route is resolved in the route table
(:mod:`spendgate.proxy.routes`; traversal is a 400, anything not listed a 404), its body read once
whatever its content type (:mod:`spendgate.proxy.payload`), and it is metered as its route says: by
tokens, per image, per second of audio, or free; every forwarded request leaves one usage event. The event is spooled
before the response completes (before the last chunk of a stream, before a plain body is sent), so
a crash after a client saw its answer cannot lose what it cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from multidict import CIMultiDict

from spendgate.core.logs import get_logger
from spendgate.core.tracing import Tracer
from spendgate.domain.enforcement.estimate import SessionEstimator, TokenEstimate
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import UnknownModelError
from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import BATCH_PERCENT, ModelPrice, PriceLookup, PriceTable, batch_price
from spendgate.proxy import anthropic, errors
from spendgate.proxy.anthropic_usage import AnthropicTap, answer_of_message
from spendgate.proxy.attribution import Attribution, attribute
from spendgate.proxy.batches import BatchError, estimate_batch
from spendgate.proxy.bedrock import BedrockAnswer, BedrockUpstream
from spendgate.proxy.decision import Decider, Refuse, RequestFacts, RewriteModel
from spendgate.proxy.emitter import Emitter
from spendgate.proxy.failover import UPSTREAM_DOWN, NoUpstream, open_with_failover
from spendgate.proxy.forwarding import budget_headers, client_headers
from spendgate.proxy.keycache import KeyCache
from spendgate.proxy.metering import Outcome, Route, build_event, intent_outcome, settle_units
from spendgate.proxy.metrics import ProxyMetrics
from spendgate.proxy.payload import Payload, PayloadError, parse
from spendgate.proxy.routes import Resolved, RouteError, RouteTable
from spendgate.proxy.stream_end import looks_like_sse, relays_as_stream, terminal_error_event
from spendgate.proxy.tap import StreamTap
from spendgate.proxy.upstream_kinds import ADAPTERS
from spendgate.proxy.upstreams import ANTHROPIC_NAME, DEFAULT_NAME, Pool, Upstream
from spendgate.proxy.usage import Usage, answer_of
from spendgate.store.keys.store import VirtualKey

CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError)
_FREE = ModelPrice(0, 0, 0)
BEDROCK_UPSTREAM = "bedrock"
"""What a usage event's ``upstream`` says for a request Bedrock answered."""
log = get_logger(__name__)
UPSTREAM_BROKE_OFF = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)


@dataclass
class ProxyState:
    """What the handler needs; built once by the service."""

    keys: KeyCache
    emitter: Emitter
    decider: Decider
    prices: PriceTable
    http: aiohttp.ClientSession
    upstream_url: str
    upstream_key: str | None
    instance: str
    max_body_bytes: int
    read_timeout_s: float
    body_timeout_s: float = 120.0
    """How long a request's body may take to arrive after its headers (``body_timeout_s``)."""
    routes: RouteTable = field(default_factory=RouteTable)
    batch_percent: int = BATCH_PERCENT
    estimator: SessionEstimator = field(default_factory=lambda: SessionEstimator(
        output_cap_tokens=EnforcementSettings().output_estimate_cap_tokens))
    metrics: ProxyMetrics = field(default_factory=ProxyMetrics)
    tracer: Tracer | None = None
    """OTLP tracing (:mod:`spendgate.core.tracing`); None, the default, costs one check per request."""
    in_flight: int = 0
    anthropic_url: str = "https://api.anthropic.com/v1"
    anthropic_key: str | None = None
    bedrock: BedrockUpstream | None = None
    """The models served by AWS Bedrock on the OpenAI routes (:mod:`spendgate.proxy.bedrock`); None: none."""
    pool: Pool | None = None
    """The OpenAI-API routes' upstreams (:mod:`spendgate.proxy.upstreams`); None: ``upstream_url`` alone."""
    headers_timeout_s: float | None = None
    """``upstream_pool.headers_timeout_s``: an attempt with another upstream after it gives up then."""
    anthropic_pool: Pool | None = None
    """The Anthropic routes' upstreams (kind ``anthropic``); None: ``anthropic_url`` alone."""
    clock: Callable[[], datetime] | None = None
    """When a request happens (its event's ``occurred_at``); None, the default: the wall clock."""

    def __post_init__(self) -> None:
        if self.pool is None:
            self.pool = Pool([Upstream(DEFAULT_NAME, "openai", self.upstream_url, self.upstream_key)],
                             clock=time.monotonic)
        if self.anthropic_pool is None:
            self.anthropic_pool = Pool([Upstream(ANTHROPIC_NAME, "anthropic", self.anthropic_url, self.anthropic_key)],
                                       clock=time.monotonic)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header; None without one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Proxy:
    def __init__(self, state: ProxyState) -> None:
        self.s = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.s.in_flight += 1
        try:
            response = await self._handle(request)
            if anthropic.serves(request.raw_path):
                response = anthropic.translate_error(response)  # our own errors in Anthropic's shape
            return response
        finally:
            self.s.in_flight -= 1

    async def _body(self, request: web.Request) -> bytes:
        """The whole body; a body still arriving is given ``body_timeout_s`` (one that came with the headers,
        the common case, is read without a timer)."""
        if not request.body_exists:
            return b""
        if request.content.is_eof():
            return await request.read()
        async with asyncio.timeout(self.s.body_timeout_s):
            return await request.read()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return errors.websocket_refused()
        secret = bearer(request.headers.get("Authorization")) or anthropic.virtual_key(request.headers,
                                                                                        request.raw_path)
        if secret is None:
            return errors.unauthorized("You didn't provide an API key. Send your spendgate virtual key "
                                       "as 'Authorization: Bearer sk-sg-...' (or 'x-api-key: sk-sg-...' on "
                                       "/v1/messages).")
        key = self.s.keys.lookup(secret)
        if key is None:
            return errors.unauthorized("Incorrect API key provided: the spendgate virtual key is unknown "
                                       "or revoked.")
        try:
            resolved = self.s.routes.resolve(request.method, request.raw_path)
        except RouteError as exc:
            return errors.route_refused(exc.status, exc.message, exc.code)
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            return errors.unsupported_encoding()
        if request.content_length is not None and request.content_length > self.s.max_body_bytes:
            return errors.body_too_large(self.s.max_body_bytes)
        try:
            body = await self._body(request)
        except web.HTTPRequestEntityTooLarge:
            return errors.body_too_large(self.s.max_body_bytes)
        except TimeoutError:
            return errors.body_timeout(self.s.body_timeout_s)
        spec = resolved.spec
        try:
            payload = parse(body, spec.body, request.headers.get("Content-Type", ""))
        except PayloadError as exc:
            return errors.bad_request(exc.message, exc.code)
        attribution = (anthropic.attribute(request.headers, body) if spec.api == "anthropic"
                       else attribute(request.headers, payload.prompt_cache_key))
        if spec.metering != "tokens":
            return await self._handle_units(request, resolved, body, payload, key, attribution, started)
        if not payload.model:
            return errors.model_required()
        try:
            price = self.s.prices.lookup(payload.model)
        except UnknownModelError:
            self._emit_unpriced_refusal(key, attribution, spec.endpoint, payload.model, payload.stream, started)
            return errors.unknown_model(payload.model)
        facts = RequestFacts(
            key=key, endpoint=spec.endpoint, model=payload.model, stream=payload.stream,
            attribution=attribution, body_bytes=len(body),
            estimate=self.s.estimator.estimate(attribution.session_id, len(body)), body=body,
        )
        decision = await self.s.decider.decide(facts)
        budget = budget_headers(decision.stage, decision.remaining_micros)
        route = Route(payload.model, payload.model, price, stage=decision.stage, retry=decision.retry,
                      tools=decision.tools, policy_version=decision.policy_version,
                      experiment_arm=decision.experiment_arm)
        if isinstance(decision, Refuse):
            outcome = Outcome("refused", decision.status, refusal_reason=decision.reason)
            self._emit(facts, route, outcome, started)
            headers = CIMultiDict(decision.headers)
            headers.setdefault("Content-Type", decision.content_type)
            headers.extend(budget)
            return web.Response(status=decision.status, body=decision.body, headers=headers)
        if isinstance(decision, RewriteModel):
            try:
                new_price = self.s.prices.lookup(decision.model)
            except UnknownModelError:
                return _with_headers(errors.unknown_model(decision.model), budget)
            route = Route(payload.model, decision.model, new_price, decision.route_reason, decision.stage,
                          decision.retry, tools=decision.tools, policy_version=decision.policy_version,
                          routing_rule=decision.routing_rule, experiment_arm=decision.experiment_arm)
        strip_usage = False
        if route.model_used != payload.model or _wants_usage_injection(spec.template, payload):
            body, strip_usage = _rewrite_body(body, route.model_used, spec.template, payload)
        response = await self._forward_metered(request, resolved, body, facts, route, strip_usage, started, budget)
        return response if response.prepared else _with_headers(response, budget)

    async def _handle_units(self, request: web.Request, resolved: Resolved, body: bytes, payload: Payload,
                            key: VirtualKey, attribution: Attribution, started: float) -> web.StreamResponse:
        """Routes not metered by tokens: priced per image or per second of audio, or free. Every one is
        evented; a paused scope is refused on those that spend."""
        spec = resolved.spec
        model = payload.model or ""
        unit_micros = 0
        if spec.metering in ("image", "audio"):
            if not model:
                return errors.model_required()
            try:
                unit_micros = (self.s.prices.per_image(model) if spec.metering == "image"
                               else self.s.prices.per_audio_second(model))
            except UnknownModelError:
                self._emit_unpriced_refusal(key, attribution, spec.endpoint, model, payload.stream, started)
                return errors.unknown_model(model)
        facts = RequestFacts(key=key, endpoint=spec.endpoint, model=None, stream=payload.stream,
                             attribution=attribution, body_bytes=len(body), estimate=TokenEstimate(0, 0), body=body)
        standing = await self.s.decider.decide(facts)
        budget = budget_headers(standing.stage, standing.remaining_micros)
        route = Route(model, model, PriceLookup(model, _FREE, fallback=False), stage=standing.stage,
                      metering=spec.metering, unit_micros=unit_micros, units=payload.n,
                      policy_version=standing.policy_version)
        if spec.spends and standing.stage == "pause":
            self._emit(facts, route, Outcome("refused", 429, refusal_reason="budget_pause"), started)
            return _with_headers(errors.paused(), budget)
        if spec.metering == "batch":
            return await self._handle_batch(request, resolved, body, payload, facts, started)
        response = await self._forward_metered(request, resolved, body, facts, route, False, started, budget)
        return response if response.prepared else _with_headers(response, budget)

    async def _handle_batch(self, request: web.Request, resolved: Resolved, body: bytes, payload: Payload,
                            standing: RequestFacts, started: float) -> web.StreamResponse:
        """A batch: priced from its input file at the batch price, decided like a model request."""
        try:
            batch = await estimate_batch(self.s.http, self.s.upstream_url, self.s.upstream_key,
                                         payload.input_file_id, estimator=self.s.estimator,
                                         max_bytes=self.s.max_body_bytes * 8)
        except BatchError as exc:
            return errors.bad_request(exc.message, exc.code, param="input_file_id")
        except (*UPSTREAM_DOWN, *UPSTREAM_BROKE_OFF) as exc:
            return errors.upstream_unreachable(str(exc) or type(exc).__name__)
        try:
            price = self.s.prices.lookup(batch.model)
        except UnknownModelError:
            self._emit_unpriced_refusal(standing.key, standing.attribution, standing.endpoint, batch.model, False,
                                        started)
            return errors.unknown_model(batch.model)
        facts = RequestFacts(key=standing.key, endpoint=standing.endpoint, model=batch.model, stream=False,
                             attribution=standing.attribution, body_bytes=len(body), estimate=batch.estimate,
                             body=body)
        decision = await self.s.decider.decide(facts)
        budget = budget_headers(decision.stage, decision.remaining_micros)
        priced = PriceLookup(price.model, batch_price(price.price, self.s.batch_percent), price.fallback)
        route = Route(batch.model, batch.model, priced, stage=decision.stage, retry=decision.retry, metering="batch",
                      policy_version=decision.policy_version)
        if isinstance(decision, Refuse):  # a downgrade cannot rewrite the file: it goes as named
            self._emit(facts, route, Outcome("refused", decision.status, refusal_reason=decision.reason), started)
            headers = CIMultiDict(decision.headers)
            headers.setdefault("Content-Type", decision.content_type)
            headers.extend(budget)
            return web.Response(status=decision.status, body=decision.body, headers=headers)
        response = await self._forward_metered(request, resolved, body, facts, route, False, started, budget)
        return response if response.prepared else _with_headers(response, budget)

    async def _open_upstream(self, request: web.Request, resolved: Resolved, body: bytes,
                             model: str | None) -> tuple[aiohttp.ClientResponse, str | None]:
        """The upstream's answer and the name of the upstream that gave it, through the route's pool
        (:mod:`spendgate.proxy.failover`): the Anthropic routes' (kind ``anthropic``) or the others'."""

        def send(upstream: Upstream) -> Any:
            out = ADAPTERS[upstream.kind].prepare(upstream, request.headers, resolved, body, model)
            return self.s.http.request(request.method, out.url, data=out.body, headers=out.headers,
                                       allow_redirects=False)

        pool = self._pool(resolved)
        assert pool is not None
        opened = await open_with_failover(pool, model, send, headers_timeout_s=self.s.headers_timeout_s)
        return opened.response, opened.upstream.name

    async def _open_bedrock_or_upstream(self, request: web.Request, resolved: Resolved, body: bytes, model: str | None,
                                        ) -> tuple[aiohttp.ClientResponse | BedrockAnswer, str | None]:
        """A model configured for Bedrock goes there on the OpenAI routes (translated both ways); the rest
        to its usual upstream. With the name of the upstream that answered (``bedrock`` for Bedrock)."""
        if self._on_bedrock(resolved, model):
            assert self.s.bedrock is not None and model is not None
            return await self.s.bedrock.open(resolved.spec.template, body, model), BEDROCK_UPSTREAM
        return await self._open_upstream(request, resolved, body, model)

    def _pool(self, resolved: Resolved) -> Pool | None:
        return self.s.anthropic_pool if resolved.spec.api == "anthropic" else self.s.pool

    def _on_bedrock(self, resolved: Resolved, model: str | None) -> bool:
        bedrock = self.s.bedrock
        return bedrock is not None and model is not None and resolved.spec.api == "openai" and bedrock.serves(model)

    async def _forward_metered(self, request: web.Request, resolved: Resolved, body: bytes, facts: RequestFacts,
                               route: Route, strip_usage: bool, started: float,
                               budget: list[tuple[str, str]]) -> web.StreamResponse:
        outcome = Outcome("upstream_error", 502, event_id=self._intend(facts, route, started))
        tap: StreamTap | None = None
        self.s.metrics.forwarding(time.perf_counter() - started)
        try:
            pool_model = route.model_used if (route.metering in ("tokens", "image", "audio")
                                              or resolved.spec.api == "anthropic") and route.model_used else None
            pool = self._pool(resolved)
            if pool_model is not None and pool is not None and not pool.serving(pool_model) \
                    and not self._on_bedrock(resolved, pool_model):
                outcome.http_status = 400
                return errors.model_not_served(pool_model)
            try:
                upstream, outcome.upstream = await self._open_bedrock_or_upstream(request, resolved, body,
                                                                                  pool_model)
            except NoUpstream as exc:
                return errors.upstreams_resting(exc.retry_after_s)
            except UPSTREAM_DOWN as exc:
                return errors.upstream_unreachable(str(exc) or type(exc).__name__)
            except TimeoutError:
                outcome.http_status = 504
                return errors.upstream_timeout(self.s.read_timeout_s)
            async with upstream:
                outcome.http_status = upstream.status
                outcome.upstream_request_id = upstream.headers.get("x-request-id") or upstream.headers.get("request-id")
                headers = client_headers(upstream.headers, drop_model_headers=route.model_used != route.model_requested)
                headers.extend(budget)
                content_type = upstream.headers.get("content-type", "")
                if not relays_as_stream(status=upstream.status, content_type=content_type,
                                        requested_stream=facts.stream):
                    return await self._relay_body(request, upstream, headers, facts, route, outcome, started,
                                                  strip_usage)
                if "text/event-stream" not in content_type:
                    headers["Content-Type"] = "text/event-stream"  # a stream mislabelled by the upstream
                tap = (upstream.tap(strip_usage_chunk=strip_usage) if isinstance(upstream, BedrockAnswer)
                       else _new_tap(facts.endpoint, strip_usage))
                return await self._relay_stream(request, upstream, headers, tap, facts, route, outcome, started)
        finally:
            if not outcome.emitted:
                try:
                    if tap is not None and outcome.usage_source == "none" and outcome.status != "upstream_error" \
                            and route.metering == "tokens":
                        await self._estimate(tap, facts, outcome)
                finally:
                    self._emit(facts, route, outcome, started)

    async def _relay_body(self, request: web.Request, upstream: aiohttp.ClientResponse | BedrockAnswer, headers: Any,
                          facts: RequestFacts, route: Route, outcome: Outcome, started: float,
                          strip_usage: bool) -> web.Response:
        try:
            data = await upstream.read()
        except TimeoutError:
            outcome.status = "incomplete"
            return errors.upstream_timeout(self.s.read_timeout_s)
        except UPSTREAM_BROKE_OFF as exc:
            outcome.status, outcome.http_status = "incomplete", 502
            return errors.upstream_unreachable(f"the upstream broke off its answer ({type(exc).__name__})")
        outcome.ttfb_ms = _ms_since(started)
        outcome.status = "upstream_error" if upstream.status >= 400 else "ok"
        if outcome.status == "ok" and (request.transport is None or request.transport.is_closing()):
            outcome.status = "client_aborted"  # the client left while the answer was produced: still paid for
        if route.metering == "tokens":
            read_answer = answer_of_message if anthropic.serves(facts.endpoint) else answer_of
            usage = None
            if upstream.status < 400 and isinstance(upstream, BedrockAnswer):
                usage = upstream.usage
            elif upstream.status < 400:
                usage, outcome.final_message = read_answer(data)
            if usage is None and upstream.status < 400 and looks_like_sse(data):
                tap = _new_tap(facts.endpoint, strip_usage)  # a stream labelled as something else
                data = tap.feed(data) + tap.flush()
                usage, outcome.final_message = tap.usage, tap.final_message
            if usage is not None and not usage.anomalous:
                outcome.usage, outcome.usage_source = usage, "reported"
            elif outcome.status != "upstream_error":
                _estimate_input(facts, outcome, anomalous=usage is not None)
        else:
            settle_units(route, outcome, _json_or_none(data), facts.body_bytes, facts.estimate)
        self._emit(facts, route, outcome, started)
        return web.Response(status=upstream.status, body=data, headers=headers)

    async def _relay_stream(self, request: web.Request, upstream: aiohttp.ClientResponse | BedrockAnswer,
                            headers: Any,
                            tap: StreamTap, facts: RequestFacts, route: Route, outcome: Outcome,
                            started: float) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        outcome.status = "incomplete"
        broken: str | None = None
        # what the upstream did wrong, when the stream did not end with its terminal event
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                if outcome.ttfb_ms is None:
                    outcome.ttfb_ms = _ms_since(started)
                out = tap.feed(chunk)
                if out:
                    await response.write(out)
            rest = tap.flush()
            if rest:
                await response.write(rest)
            if tap.outcome is None:
                broken = "ended its stream before the final event"
        except CLIENT_GONE:
            outcome.status = "client_aborted"
        except TimeoutError:
            broken = f"sent nothing for {self.s.read_timeout_s:g} s"  # a stalled stream: still cost money
        except UPSTREAM_BROKE_OFF:
            broken = "broke off its stream"  # what it streamed still cost money
        if tap.usage is not None and tap.usage.anomalous:
            log.warning("upstream reported impossible token counts; metering the estimate", endpoint=facts.endpoint)
        elif tap.usage is not None:
            outcome.usage, outcome.usage_source = tap.usage, "reported"
            if outcome.status == "incomplete" or tap.outcome == "completed":
                outcome.status = "ok"
        outcome.final_message = tap.final_message
        if tap.outcome == "failed":
            outcome.status = "upstream_error"
        elif tap.outcome == "completed" and outcome.status == "incomplete":
            outcome.status = "ok"
        if route.metering != "tokens":
            settle_units(route, outcome, None, facts.body_bytes, facts.estimate)
        elif outcome.usage_source == "none" and outcome.status != "upstream_error":
            await self._estimate(tap, facts, outcome)
        self._emit(facts, route, outcome, started)  # spooled before the client sees the end
        if not (request.transport is None or request.transport.is_closing()):
            with contextlib.suppress(*CLIENT_GONE):
                if broken is not None and outcome.status != "ok":
                    await response.write(anthropic.terminal_error_event(broken) if anthropic.serves(facts.endpoint)
                                         else terminal_error_event(facts.endpoint, broken))
                await response.write_eof()
        return response

    async def _estimate(self, tap: StreamTap, facts: RequestFacts, outcome: Outcome) -> None:
        """Input from the body-size estimate; output counted offline from the streamed text, in a thread
        (the vocabulary loads on first use). If cancelled meanwhile, a chars/4 guess still gets metered."""
        outcome.usage = Usage(facts.estimate.input_tokens, 0, len(tap.streamed_text()) // 4, 0)
        outcome.usage_source = "estimated"
        outcome.usage = Usage(facts.estimate.input_tokens, 0,
                              await asyncio.to_thread(tap.estimated_output_tokens), 0)

    def _emit_unpriced_refusal(self, key: VirtualKey, attribution: Attribution, endpoint: str, model: str,
                               stream: bool, started: float) -> None:
        """An unknown model is refused before anything is spent; the attempt is still on record."""
        route = Route(model, model, PriceLookup(model, _FREE, fallback=False))
        outcome = Outcome("refused", 400, refusal_reason="unknown_model")
        event = build_event(key=key, attribution=attribution, endpoint=endpoint, route=route, outcome=outcome,
                            latency_ms=_ms_since(started), instance=self.s.instance, occurred_at=self._now(),
                            stream=stream)
        self.s.emitter.emit(event)
        self._observe(event)

    def _intend(self, facts: RequestFacts, route: Route, started: float) -> str:
        """Spool the request's intent before forwarding it (``intents.py``); returns the event id the
        request's real event must carry to settle it."""
        intent = intent_outcome(facts.estimate)
        self.s.emitter.intend(build_event(key=facts.key, attribution=facts.attribution, endpoint=facts.endpoint,
                                          route=route, outcome=intent, latency_ms=_ms_since(started),
                                          instance=self.s.instance, occurred_at=self._now(), stream=facts.stream))
        assert intent.event_id is not None
        return intent.event_id

    def _emit(self, facts: RequestFacts, route: Route, outcome: Outcome, started: float) -> None:
        event = build_event(key=facts.key, attribution=facts.attribution, endpoint=facts.endpoint, route=route,
                            outcome=outcome, latency_ms=_ms_since(started), instance=self.s.instance,
                            occurred_at=self._now(), stream=facts.stream)
        self.s.emitter.emit(event)
        outcome.emitted = True
        self._observe(event)
        if outcome.usage_source == "reported":
            usage = outcome.usage
            self.s.estimator.observe(facts.attribution.session_id, body_bytes=facts.body_bytes,
                                     input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                     cached_tokens=usage.cached_tokens)
        self.s.decider.settled(facts, event)

    def _now(self) -> datetime | None:
        return None if self.s.clock is None else self.s.clock()

    def _observe(self, event: UsageRecorded) -> None:
        """Count the request's event, and trace it when tracing is on."""
        self.s.metrics.observe(event)
        if self.s.tracer is not None:
            self.s.tracer.request(event)


def _with_headers(response: web.StreamResponse, headers: list[tuple[str, str]]) -> web.StreamResponse:
    """``response`` (not yet sent) with ``headers`` added where it has none of that name yet."""
    for name, value in headers:
        response.headers.setdefault(name, value)
    return response


def _new_tap(endpoint: str, strip_usage: bool) -> StreamTap:
    return AnthropicTap() if anthropic.serves(endpoint) else StreamTap(strip_usage_chunk=strip_usage)


def _estimate_input(facts: RequestFacts, outcome: Outcome, *, anomalous: bool) -> None:
    """A token-metered answer without a usable usage block: meter the request's input estimate."""
    if anomalous:
        log.warning("upstream reported impossible token counts; metering the estimate", endpoint=facts.endpoint)
    outcome.usage, outcome.usage_source = Usage(facts.estimate.input_tokens, 0, 0, 0), "estimated"


def _json_or_none(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _wants_usage_injection(template: str, payload: Payload) -> bool:
    return template == "/chat/completions" and payload.stream and not payload.include_usage


def _rewrite_body(body: bytes, model: str, template: str, payload: Payload) -> tuple[bytes, bool]:
    """Set the forwarded model; for streamed chat, ask for the usage chunk (to strip it later)."""
    doc = msgspec.json.decode(body)
    doc["model"] = model
    strip = _wants_usage_injection(template, payload)
    if strip:
        doc["stream_options"] = {**(doc.get("stream_options") or {}), "include_usage": True}
    return msgspec.json.encode(doc), strip

