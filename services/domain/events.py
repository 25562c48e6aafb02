"""Wire events: frozen, explicitly typed, wrapped in a CloudEvents 1.0 structured-JSON envelope.

Each event type has a JSON Schema in ``schemas/`` generated from these types
(``python -m spendgate.core.schemas``); a test fails when the two drift apart.
Money fields are integer micro-dollars (``*_micros``); times are RFC 3339 UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec

from spendgate.domain import constants as c
from spendgate.domain.errors import PoisonEventError
from spendgate.domain.ids import uuid7

Stage = Literal["ok", "alert", "downgrade", "pause"]
UsageStatus = Literal["ok", "upstream_error", "client_aborted", "incomplete", "refused"]
UsageSource = Literal["reported", "estimated", "none"]
RouteReason = Literal["requested", "downgrade", "pause_cheapest", "pause_step_down", "routing_rule", "explore"]
RefusalReason = Literal["budget_pause", "retry_budget", "unknown_model", "bad_request", "auth", "outage",
                        "rate_limited"]
PeriodName = Literal["day", "week", "month"]
CrossingCause = Literal["usage", "budget_change"]
ExperimentArm = Literal["explore", "control"]


class UnitPrices(msgspec.Struct, frozen=True, kw_only=True):
    """Prices the event was metered with, in micro-dollars per 1M tokens."""

    input_micros: int
    cached_input_micros: int
    output_micros: int
    cache_write_5m_micros: int | None = None
    cache_write_1h_micros: int | None = None
    """Prompt-cache write prices (Anthropic); null when the request wrote nothing to the cache."""
    fallback: bool = False
    """True when the model was missing from the table and the operator's fallback price was used."""


class UsageRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """One model request that went (or was refused on its way) to the provider."""

    schema_version: Literal[1] = 1
    event_id: str
    occurred_at: datetime
    proxy_instance: str
    key_id: str
    developer: str
    team: str
    cost_center: str
    session_id: str | None = None
    turn_id: str | None = None
    repo: str | None = None
    client: str | None = None
    endpoint: str
    stream: bool | None = None
    """Whether the client asked for a streamed answer (``"stream": true``); null in events recorded
    before spendgate noted it."""
    model_requested: str
    model_used: str
    route_reason: RouteReason = "requested"
    stage: Stage = "ok"
    status: UsageStatus
    http_status: int
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    """Input tokens written to the provider's prompt cache for 5 minutes / 1 hour (Anthropic's
    ``cache_creation``); part of ``input_tokens``, like ``cached_tokens`` (the cache reads)."""
    usage_source: UsageSource
    prices: UnitPrices
    cost_micros: int
    retry: bool = False
    latency_ms: int
    ttfb_ms: int | None = None
    upstream_request_id: str | None = None
    refusal_reason: RefusalReason | None = None
    """Why spendgate refused the request (status ``refused``); None for requests it forwarded."""
    intent_estimate: bool = False
    """True when the proxy died while the request was in flight: the event is the intent it spooled
    before forwarding, with usage estimated from the request's size (``usage_source`` ``estimated``,
    ``status`` ``incomplete``, ``http_status`` 0). The provider may have billed more or less."""
    upstream: str | None = None
    """The configured name of the upstream that answered (``upstreams[].name``, ``default`` for the
    single ``upstream_url``; never its URL or key); null when none was reached or on routes that are not
    pooled, and in events recorded before spendgate noted it."""
    tool_outputs: int = 0
    """Tool outputs (``function_call_output`` / ``custom_tool_call_output``, Anthropic ``tool_result``) in
    the request's current turn so far: the items after the turn's last user message. Cumulative within a
    turn (each request re-sends the turn's history), so a turn's count is its last request's."""
    tool_failures: int = 0
    """How many of ``tool_outputs`` failed: a non-zero exit code, an output that starts with ``error`` /
    ``failed``, or Anthropic's ``is_error``."""
    final_message: bool | None = None
    """The answer ended with an assistant message rather than a tool call (Anthropic: ``stop_reason`` other
    than ``tool_use``); null when the proxy could not tell (no answer, a route without one, a broken
    stream) and in events recorded before spendgate noted it."""
    policy_version: str | None = None
    """The id of the stored policy version the proxy decided the request under (``spendgate policy
    versions``); null before the first ``policy apply``, for requests refused before the policy was
    consulted (an unpriced model, a rate limit), and in events recorded before spendgate noted it."""
    routing_rule: str | None = None
    """The name of the policy's routing rule that changed the model (``route_reason`` ``routing_rule``, or
    a budget stage's reason when the stage then moved the routed request further); null otherwise."""
    experiment_arm: ExperimentArm | None = None
    """The turn's arm in the policy's exploration (``docs/policy.md``, "Exploration"): ``explore`` when the
    turn was chosen at random to run on the next cheaper model (``route_reason`` ``explore``),
    ``control`` when it was eligible but kept its model; null when the turn was not eligible, the policy
    explores nothing, and in events recorded before spendgate noted it."""


class ThresholdCrossed(msgspec.Struct, frozen=True, kw_only=True):
    """A scope's spend in a period reached a threshold of its budget (written once per threshold)."""

    schema_version: Literal[1] = 1
    crossing_id: str
    scope: str
    """``key:<id>``, ``developer:<name>``, ``team:<name>``, ``cost_center:<name>`` or ``org``; a per-model
    budget's followed by ``|model:<model>`` (``org|model:gpt-5.1``)."""
    period: PeriodName
    period_start: date
    resets_at: datetime
    threshold_pct: int
    stage: Stage
    spent_micros: int
    budget_micros: int
    crossed_at: datetime
    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None
    trigger_event_id: str
    """The usage event that carried the balance across (``cause`` ``usage``), or the ``change_id`` of the
    budget change that put the balance past the threshold (``cause`` ``budget_change``)."""
    cause: CrossingCause = "usage"
    """``budget_change``: the budget was lowered below what the scope had already spent."""


class BudgetChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Audit record of a budget set, raised or removed by an operator."""

    schema_version: Literal[1] = 1
    change_id: str
    scope: str
    action: Literal["set", "raise", "delete"]
    daily_micros: int | None = None
    monthly_micros: int | None = None
    raise_micros: int | None = None
    until: datetime | None = None
    reason: str | None = None
    actor: str
    changed_at: datetime
    weekly_micros: int | None = None
    """The ISO-week amount (a per-model budget's ``scope`` ends in ``|model:<model>``)."""


class RetryLoopDetected(msgspec.Struct, frozen=True, kw_only=True):
    """A session kept re-running the same failing tool call and was stopped."""

    schema_version: Literal[1] = 1
    detection_id: str
    session_id: str
    key_id: str
    developer: str
    team: str
    cost_center: str
    tool_name: str
    command: str
    retries: int
    retry_cost_micros: int
    detected_at: datetime


class ForecastUpdated(msgspec.Struct, frozen=True, kw_only=True):
    """A month-end spend forecast for one scope."""

    schema_version: Literal[1] = 1
    forecast_id: str
    scope: str
    month: date
    as_of: date
    actual_micros: int
    p10_micros: int
    p50_micros: int
    p90_micros: int
    budget_micros: int | None = None
    p10_crosses_on: date | None = None
    p50_crosses_on: date | None = None
    p90_crosses_on: date | None = None
    model: str
    team: str | None = None
    cost_center: str | None = None


class ForecastOverrun(msgspec.Struct, frozen=True, kw_only=True):
    """P50 of month-end spend first crossed the scope's monthly budget (once per scope and month)."""

    schema_version: Literal[1] = 1
    overrun_id: str
    scope: str
    month: date
    as_of: date
    p10_micros: int
    p50_micros: int
    p90_micros: int
    budget_micros: int
    p50_crosses_on: date | None = None
    team: str | None = None
    cost_center: str | None = None


class AlertDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to deliver an alert through one channel."""

    schema_version: Literal[1] = 1
    delivery_id: str
    alert_id: str
    kind: Literal["alert", "downgrade", "pause", "forecast_overrun", "retry_loop", "digest", "test",
                  "reconciliation_gap", "policy_rollback"]
    scope: str
    route: str
    channel: str
    """``slack:<name>`` and the like: the target's name, never its URL or credentials."""
    attempt: int
    outcome: Literal["delivered", "failed", "dead_lettered"]
    http_status: int | None = None
    error: str | None = None
    attempted_at: datetime


class ReconciliationGap(msgspec.Struct, frozen=True, kw_only=True):
    """A provider billed more for a UTC day than the ledger counted, beyond the threshold (once per
    provider and day, however often the day is reconciled)."""

    schema_version: Literal[1] = 1
    gap_id: str
    provider: str
    """The configured provider's name (``reconcile.providers[].name``), e.g. ``openai``."""
    day: date
    ledger_micros: int
    provider_micros: int
    gap_micros: int
    """``provider_micros - ledger_micros``: what reached the provider without being metered."""
    capture_ppm: int | None = None
    """ledger / provider in parts per million (1000000 is a capture rate of 1.000)."""
    models: list[str] = msgspec.field(default_factory=list)
    """The models the provider billed more for, largest gap first."""
    detected_at: datetime


class PolicyRolledBack(msgspec.Struct, frozen=True, kw_only=True):
    """The guard rolled a live policy version back: the turns one of its changes touched (a routing rule, the
    downgrade size limit, a budget, …) scored worse than the same kind of turns before the version, past the
    tolerance with 95 % confidence (docs/policy.md, "The guard")."""

    schema_version: Literal[1] = 1
    rollback_id: str
    version_id: str
    """The version rolled back (the harmful one)."""
    approver: str
    """Who approved the harmful version (``oidc:ann``, ``cli:bob``): the alert is addressed to them."""
    restored_version: str
    """The version made active again (the harmful one's parent)."""
    rollback_version: str
    """The new version the rollback stored (approver ``spendgate-guard``)."""
    segment: str
    """The routing rule whose turns regressed (its name); for the other kinds, the part that changed
    (``budget team:platform``, ``downgrade_max_input_tokens``, ``exploration``)."""
    scope: str
    """The segment's scope (``team:platform``, ``org``, …)."""
    baseline_n: int
    candidate_n: int
    baseline_mean: float
    candidate_mean: float
    regression: float
    """Relative drop of the mean quality score (0.12 = 12 % worse)."""
    lower: float
    """The bootstrap's 5th percentile: with 95 % confidence the regression is at least this."""
    upper: float
    tolerance_pct: float
    reason: str
    """The reason recorded on the rollback version (the math in one sentence)."""
    detected_at: datetime
    kind: str = "routing_rule"
    """What kind of change regressed: ``routing_rule``, ``downgrade_limit``, ``stage_thresholds``, ``budget``,
    ``retry_cap`` or ``exploration`` (absent in events from before the guard judged every kind)."""
    summary: str = ""
    """The change in a sentence (``downgrade size limit 8,000 → 32,000 input tokens``); empty for a routing
    rule in events from before."""


EventData = (
    UsageRecorded
    | ThresholdCrossed
    | BudgetChanged
    | RetryLoopDetected
    | ForecastUpdated
    | ForecastOverrun
    | AlertDelivery
    | ReconciliationGap
    | PolicyRolledBack
)

EVENT_TYPES: dict[str, type[Any]] = {
    c.TYPE_USAGE_RECORDED: UsageRecorded,
    c.TYPE_THRESHOLD_CROSSED: ThresholdCrossed,
    c.TYPE_BUDGET_CHANGED: BudgetChanged,
    c.TYPE_RETRY_LOOP_DETECTED: RetryLoopDetected,
    c.TYPE_FORECAST_UPDATED: ForecastUpdated,
    c.TYPE_FORECAST_OVERRUN: ForecastOverrun,
    c.TYPE_ALERT_DELIVERY: AlertDelivery,
    c.TYPE_RECONCILIATION_GAP: ReconciliationGap,
    c.TYPE_POLICY_ROLLED_BACK: PolicyRolledBack,
}
_TYPE_OF: dict[type[Any], str] = {v: k for k, v in EVENT_TYPES.items()}
_ID_FIELD: dict[type[Any], str] = {
    UsageRecorded: "event_id",
    ThresholdCrossed: "crossing_id",
    BudgetChanged: "change_id",
    RetryLoopDetected: "detection_id",
    ForecastUpdated: "forecast_id",
    ForecastOverrun: "overrun_id",
    AlertDelivery: "delivery_id",
    ReconciliationGap: "gap_id",
    PolicyRolledBack: "rollback_id",
}

D = TypeVar("D")


class CloudEvent(msgspec.Struct, Generic[D], frozen=True, kw_only=True):
    """CloudEvents 1.0 structured-mode JSON envelope."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    subject: str | None = None
    data: D


class _Peek(msgspec.Struct):
    type: str
    specversion: str


class _Declared(CloudEvent[D], Generic[D], frozen=True, kw_only=True):
    """A :class:`CloudEvent` whose document must state its specversion, as :func:`decode`'s peek requires."""

    specversion: Literal["1.0"]


_encoder = msgspec.json.Encoder()
_peek_decoder = msgspec.json.Decoder(_Peek)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(CloudEvent[cls]) for t, cls in EVENT_TYPES.items()  # type: ignore[valid-type]
}


def event_id_of(data: EventData) -> str:
    return str(getattr(data, _ID_FIELD[type(data)]))


def envelope(data: EventData, *, source: str, subject: str | None = None) -> CloudEvent[EventData]:
    """Wrap event data in its CloudEvents envelope; the envelope id is the event's own UUIDv7."""
    time = getattr(data, "occurred_at", None) or datetime.now(UTC)
    return CloudEvent(id=event_id_of(data), source=source, type=_TYPE_OF[type(data)], time=time,
                      subject=subject, data=data)


def encode(data: EventData, *, source: str, subject: str | None = None) -> bytes:
    """Serialise event data as a CloudEvents structured-JSON document."""
    return _encoder.encode(envelope(data, source=source, subject=subject))


def decode(raw: bytes) -> CloudEvent[Any]:
    """Parse a CloudEvents document into its typed event.

    Anything that is not a known event type of a known version raises :class:`PoisonEventError`
    with the reason; callers dead-letter it instead of retrying.
    """
    try:
        peek = _peek_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PoisonEventError(f"not a CloudEvents JSON document: {exc}") from exc
    if peek.specversion != "1.0":
        raise PoisonEventError(f"unsupported CloudEvents specversion {peek.specversion!r}")
    decoder = _decoders.get(peek.type)
    if decoder is None:
        raise PoisonEventError(f"unknown event type {peek.type!r}")
    try:
        return decoder.decode(raw)  # type: ignore[no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PoisonEventError(f"invalid {peek.type} event: {exc}") from exc


_expected_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(_Declared[cls]) for t, cls in EVENT_TYPES.items()  # type: ignore[valid-type]
}


def decode_expecting(raw: bytes, event_type: str) -> CloudEvent[Any]:
    """:func:`decode` for a topic that carries ``event_type``: such a document is parsed once, without
    :func:`decode`'s first parse for its type (a fifth of a usage event's decoding in the ledger); anything
    else is handed to :func:`decode`, which returns it or says why it is refused."""
    try:
        event = _expected_decoders[event_type].decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return decode(raw)
    return event if event.type == event_type else decode(raw)  # type: ignore[no-any-return]


def new_id() -> str:
    return uuid7()
