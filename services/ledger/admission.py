"""What the ledger admits from the usage topic: sanitised strings, plausible numbers, nothing a column
cannot hold.

The ledger does not trust its producers (an old proxy, a buggy one, anyone who can write to the
topic). Two outcomes for an event that decodes:

- **sanitised**: every free-text field (ids, names, repo, client, endpoint, models) loses its control
  characters (C0, DEL, C1: a NUL is not storable in PostgreSQL ``text`` at all) and is cut to
  :data:`MAX_TEXT_BYTES` of UTF-8 at a character boundary. The spend is real, so the event is folded;
  only its labels change.
- **refused** (:class:`PoisonEventError`, so the consumer dead-letters it with the reason and the raw
  payload): a number no real request produces or no column can hold — token counts outside
  ``0..MAX_TOKENS``, a cost or unit price outside ``0..MAX_COST_MICROS``, an HTTP status outside
  ``0..999``, latencies outside ``0..2**31-1`` ms —, an ``event_id`` that is not a UUID, an
  ``occurred_at`` without a timezone. Guessing a cost would put made-up money in balances (or pause a
  whole organisation on one record); the dead letter keeps the payload for an operator to inspect.

Pure: no I/O. Documented in ``docs/ledger.md`` ("Poison").
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec

from spendgate.domain.errors import PoisonEventError
from spendgate.domain.events import UsageRecorded

MAX_TEXT_BYTES = 512
"""Longest UTF-8 a free-text field keeps; two of them (a session turn's key) stay under PostgreSQL's
btree row limit (2,704 bytes)."""
MAX_TOKENS = 1_000_000_000
"""A thousand times the largest context window: more tokens in one request is a broken count."""
MAX_COST_MICROS = 1_000_000_000_000
"""$1,000,000 for one request (a billion output tokens at the dearest shipped price is less)."""
MAX_INT4 = 2**31 - 1

TEXT_FIELDS = ("proxy_instance", "key_id", "developer", "team", "cost_center", "session_id", "turn_id", "repo",
               "client", "endpoint", "model_requested", "model_used", "upstream_request_id")
TOKEN_FIELDS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean_text(value: str) -> str:
    """``value`` without control characters, at most :data:`MAX_TEXT_BYTES` of UTF-8."""
    value = _CONTROL.sub("", value)
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_TEXT_BYTES:
        return value
    return raw[:MAX_TEXT_BYTES].decode("utf-8", "ignore")


def _within(name: str, value: int | None, high: int) -> None:
    if value is not None and not 0 <= value <= high:
        raise PoisonEventError(f"{name} {value} is outside 0..{high}")


def admit(event: UsageRecorded) -> UsageRecorded:
    """``event`` as the ledger stores it (strings sanitised), or :class:`PoisonEventError` with the reason."""
    try:
        uuid.UUID(event.event_id)
    except ValueError:
        raise PoisonEventError(f"event_id {event.event_id[:64]!r} is not a UUID") from None
    if event.occurred_at.tzinfo is None:
        raise PoisonEventError("occurred_at has no timezone")
    for name in TOKEN_FIELDS:
        _within(name, getattr(event, name), MAX_TOKENS)
    _within("cost_micros", event.cost_micros, MAX_COST_MICROS)
    for name in ("input_micros", "cached_input_micros", "output_micros"):
        _within(f"prices.{name}", getattr(event.prices, name), MAX_COST_MICROS)
    _within("http_status", event.http_status, 999)
    _within("latency_ms", event.latency_ms, MAX_INT4)
    _within("ttfb_ms", event.ttfb_ms, MAX_INT4)
    changes: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            cleaned = clean_text(value)
            if cleaned != value:
                changes[name] = cleaned
    return msgspec.structs.replace(event, **changes) if changes else event
