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

import operator
import re

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

_texts_of = operator.attrgetter(*TEXT_FIELDS)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURELY_SHORT = MAX_TEXT_BYTES // 4
"""A string of at most this many characters fits MAX_TEXT_BYTES whatever its characters."""
_UUID = re.compile(r"(?i)\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?")
"""The forms PostgreSQL's uuid input accepts that producers use (hyphenated or not, optional braces)."""


def clean_text(value: str) -> str:
    """``value`` without control characters, at most :data:`MAX_TEXT_BYTES` of UTF-8."""
    value = _CONTROL.sub("", value)
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_TEXT_BYTES:
        return value
    return raw[:MAX_TEXT_BYTES].decode("utf-8", "ignore")


_EVENT_NUMBERS = (("input_tokens", MAX_TOKENS), ("cached_tokens", MAX_TOKENS), ("output_tokens", MAX_TOKENS),
                  ("reasoning_tokens", MAX_TOKENS), ("cache_write_5m_tokens", MAX_TOKENS),
                  ("cache_write_1h_tokens", MAX_TOKENS), ("cost_micros", MAX_COST_MICROS),
                  ("http_status", 999), ("latency_ms", MAX_INT4), ("ttfb_ms", MAX_INT4))
_PRICE_NUMBERS = (("cache_write_5m_micros", MAX_COST_MICROS), ("cache_write_1h_micros", MAX_COST_MICROS),
                  ("input_micros", MAX_COST_MICROS), ("cached_input_micros", MAX_COST_MICROS),
                  ("output_micros", MAX_COST_MICROS))
_NUMBER_NAMES = (*(n for n, _ in _EVENT_NUMBERS), *(f"prices.{n}" for n, _ in _PRICE_NUMBERS))
_NUMBER_HIGHS = tuple(h for _, h in (*_EVENT_NUMBERS, *_PRICE_NUMBERS))
_event_numbers = operator.attrgetter(*(n for n, _ in _EVENT_NUMBERS))
_price_numbers = operator.attrgetter(*(n for n, _ in _PRICE_NUMBERS))
"""The numbers checked, read in two C calls per event (the ledger admits every event it folds)."""


_tokens = operator.attrgetter(*(n for n, high in _EVENT_NUMBERS if high == MAX_TOKENS))
_prices = operator.attrgetter("input_micros", "cached_input_micros", "output_micros")
"""The numbers that are never None, checked together first (the common case: all in range)."""


def _in_range(event: UsageRecorded) -> bool:
    """True when every number of ``event`` is surely in range: one C call per group instead of a loop."""
    tokens, prices, p = _tokens(event), _prices(event.prices), event.prices
    return (min(tokens) >= 0 and max(tokens) <= MAX_TOKENS and min(prices) >= 0 and max(prices) <= MAX_COST_MICROS
            and 0 <= event.cost_micros <= MAX_COST_MICROS and 0 <= event.http_status <= 999
            and 0 <= event.latency_ms <= MAX_INT4 and (event.ttfb_ms is None or 0 <= event.ttfb_ms <= MAX_INT4)
            and (p.cache_write_5m_micros is None or 0 <= p.cache_write_5m_micros <= MAX_COST_MICROS)
            and (p.cache_write_1h_micros is None or 0 <= p.cache_write_1h_micros <= MAX_COST_MICROS))


def _out_of_range(event: UsageRecorded) -> str | None:
    """Why a number of ``event`` is refused, or None."""
    if _in_range(event):
        return None
    values = (*_event_numbers(event), *_price_numbers(event.prices))
    for name, value, high in zip(_NUMBER_NAMES, values, _NUMBER_HIGHS, strict=True):
        if value is not None and not 0 <= value <= high:
            return f"{name} {value} is outside 0..{high}"
    return None


def admit(event: UsageRecorded) -> UsageRecorded:
    """``event`` as the ledger stores it (strings sanitised), or :class:`PoisonEventError` with the reason."""
    if _UUID.fullmatch(event.event_id) is None:
        raise PoisonEventError(f"event_id {event.event_id[:64]!r} is not a UUID")
    if event.occurred_at.tzinfo is None:
        raise PoisonEventError("occurred_at has no timezone")
    if (refused := _out_of_range(event)) is not None:
        raise PoisonEventError(refused)
    texts = [*filter(None, _texts_of(event))]
    # The common case in one pass: no control character anywhere, every value short enough.
    # (Printable ASCII has no control character: two C calls, where the regex search walks every character.)
    joined = "".join(texts)
    if ((joined.isascii() and joined.isprintable()) or _CONTROL.search(joined) is None) \
            and max(map(len, texts), default=0) <= _SURELY_SHORT:
        return event
    changes = {name: cleaned for name in TEXT_FIELDS
               if (value := getattr(event, name)) is not None and (cleaned := clean_text(value)) != value}
    return msgspec.structs.replace(event, **changes) if changes else event
