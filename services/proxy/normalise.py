"""What the proxy records is clean: client-controlled strings lose control characters and are capped.

Every string a client (or the upstream) controls and that ends up in a usage event, a log line or an
error message goes through :func:`clean`: C0 and C1 control characters (NUL included) and DEL are
removed, and the result is cut to a per-field cap, so no event can poison the ledger's INSERT or carry
megabytes. Token counts go through :func:`tokens`: anything that is not a plausible count is an
anomaly, never an overflow.
"""

from __future__ import annotations

import re

MAX_MODEL_CHARS = 100
MAX_ID_CHARS = 200
MAX_REPO_CHARS = 1000
MAX_ENDPOINT_CHARS = 200
MAX_ERROR_CHARS = 1000
MAX_TOKENS_PER_REQUEST = 100_000_000
"""No request reads or writes more tokens than this (the largest context windows hold ~1M): a count
above it is an upstream anomaly, replaced by the proxy's estimate."""
INT64_MAX = 2**63 - 1

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: str | None, limit: int) -> str | None:
    """``value`` without control characters, trimmed and cut to ``limit`` characters (None when empty)."""
    if value is None:
        return None
    if len(value) > limit * 4:
        value = value[: limit * 4]  # never scan megabytes for a field that keeps a few hundred characters
    if _CONTROL.search(value) is not None:
        value = _CONTROL.sub("", value)
    value = value.strip()[:limit]
    return value or None


def clean_text(value: str, limit: int) -> str:
    """:func:`clean` for fields that must stay strings (empty rather than None)."""
    return clean(value, limit) or ""


def tokens(value: object) -> int | None:
    """A token count as reported: a non-negative int up to :data:`MAX_TOKENS_PER_REQUEST`; ``0`` for a
    missing one (absent or null); None for anything else (the caller estimates instead). A negative count,
    a string (``"1000"``), a float or a boolean is as impossible as a 23-digit one: metered as 0 it let an
    upstream that reported ``"output_tokens": -5`` or ``"1000"`` be billed at no cost."""
    if value is None:
        return 0
    if type(value) is not int or value < 0 or value > MAX_TOKENS_PER_REQUEST:
        return None
    return value


def fits_int64(micros: int) -> int:
    """A cost clamped into PostgreSQL's ``bigint`` (never reached with sane counts and prices)."""
    return max(0, min(micros, INT64_MAX))
