"""The 429 a rate limit answers with, in the caller's API format, shaped so that clients back off and retry.

- OpenAI routes: ``{"error": {"message", "type": "requests"|"tokens", "code": "rate_limit_exceeded"}}``
  (OpenAI's own shape), ``Retry-After`` in seconds, ``x-ratelimit-limit-*`` / ``-remaining-*`` /
  ``-reset-*`` per limited kind (reset as OpenAI writes it: ``12s``, ``1m4s``), ``x-should-retry: true``.
- Anthropic's ``/v1/messages``: ``{"type": "error", "error": {"type": "rate_limit_error", ...}}``,
  ``retry-after``, ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (reset as an RFC 3339
  time) and ``x-should-retry: true``: Claude Code retries it after ``retry-after`` (at most 60 s).

- Codex (``originator: codex_*``) streaming ``/v1/responses``: Codex does not read ``Retry-After`` and gives
  up on a 429 after one or two quick retries; it does wait and retry on a ``response.failed`` stream event
  with ``error.code`` ``rate_limit_exceeded`` and "try again in Ns" in its message (CODEX.md, verified on
  0.169.0), which is what OpenAI itself streams. So Codex gets that event in a 200 stream, with the same
  headers.

Never the budget pause's shape: no ``usage_limit_reached`` type (Codex stops at once on it), no
``x-should-retry: false`` (Claude Code stops at once on it).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec

from spendgate.domain.enforcement.scopes import scope_label
from spendgate.domain.ratelimits import Kind, Refusal
from spendgate.proxy import anthropic, errors

_enc = msgspec.json.Encoder()
_UNIT = {"requests": "requests per minute (rpm)", "tokens": "tokens per minute (tpm)"}


def openai_reset(seconds: int) -> str:
    """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it: ``7s``, ``1m4s``."""
    minutes, secs = divmod(max(seconds, 0), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def message(refusal: Refusal) -> str:
    return (f"Rate limit reached for {_UNIT[refusal.kind]} on {scope_label(refusal.limit.scope)} (spendgate): "
            f"limit {refusal.limit_value}, remaining {refusal.remaining}. "
            f"Please try again in {refusal.retry_after_s}s.")


def refusal_response(refusal: Refusal, endpoint: str, *, client: str | None = None,
                     stream: bool = False) -> tuple[int, bytes, tuple[tuple[str, str], ...], str]:
    """(status, body, headers, content type) of the refusal for ``refusal`` on ``endpoint``."""
    retry = str(refusal.retry_after_s)
    limited: list[Kind] = [k for k in ("requests", "tokens") if refusal.limit.of(k) is not None]
    if anthropic.serves(endpoint):
        body = anthropic.error_body(429, message(refusal))
        headers = [("retry-after", retry), ("x-should-retry", "true")]
        now = time.time()
        for kind in limited:
            reset = datetime.fromtimestamp(now + refusal.reset_s[kind], UTC).replace(microsecond=0)
            headers += [(f"anthropic-ratelimit-{kind}-limit", str(refusal.limit.of(kind))),
                        (f"anthropic-ratelimit-{kind}-remaining", str(refusal.remaining_of[kind])),
                        (f"anthropic-ratelimit-{kind}-reset", reset.isoformat().replace("+00:00", "Z"))]
        return 429, body, tuple(headers), "application/json"
    body = errors.error_body(message(refusal), type_=refusal.kind, code="rate_limit_exceeded")
    headers = [("Retry-After", retry), ("x-should-retry", "true")]
    for kind in limited:
        headers += [(f"x-ratelimit-limit-{kind}", str(refusal.limit.of(kind))),
                    (f"x-ratelimit-remaining-{kind}", str(refusal.remaining_of[kind])),
                    (f"x-ratelimit-reset-{kind}", openai_reset(refusal.reset_s[kind]))]
    if stream and endpoint.endswith("/responses") and (client or "").startswith("codex"):
        return 200, codex_retry_event(message(refusal)), tuple(headers), "text/event-stream"
    return 429, body, tuple(headers), "application/json"


def codex_retry_event(text: str) -> bytes:
    """A Responses stream of one ``response.failed`` event that Codex waits on and retries."""
    response = {"id": f"resp_spendgate_{time.time_ns():x}", "object": "response", "created_at": int(time.time()),
                "status": "failed", "output": [], "usage": None, "incomplete_details": None,
                "error": {"code": "rate_limit_exceeded", "message": text}}
    return b"event: response.failed\ndata: " + _enc.encode({"type": "response.failed", "response": response}) + b"\n\n"
