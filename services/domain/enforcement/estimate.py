"""Estimate a request's tokens before it is forwarded, corrected per session. Pure: no I/O.

Exact tokenisation of a Codex body (~40 KB) costs ~1.5 ms, too slow for the request path. The first
request of a session is estimated from its size (about 4.6 bytes per token, CODEX.md); after that the
session's own ratio of reported ``input_tokens`` to body bytes is used, which is accurate because Codex
re-sends the whole history every request. Output is the session's recent average, capped.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from spendgate.domain.pricing import ModelPrice, cost_micros

BYTES_PER_TOKEN_X10 = 46
"""Bytes per token times ten (4.6 bytes per o200k token for Codex bodies)."""
RECENT_OUTPUTS = 8


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    """Expected prompt-cache hits: the session's last cached share (Codex re-sends a cached prefix)."""


@dataclass(slots=True)
class _Session:
    input_tokens: int = 0
    cached_tokens: int = 0
    body_bytes: int = 0
    outputs: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_OUTPUTS))


class SessionEstimator:
    """Per-session token estimates, bounded to ``max_sessions`` (least recently used forgotten)."""

    def __init__(self, *, output_cap_tokens: int, default_output_tokens: int = 1_024,
                 max_sessions: int = 50_000) -> None:
        self.output_cap_tokens = output_cap_tokens
        self.default_output_tokens = min(default_output_tokens, output_cap_tokens)
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def estimate(self, session_id: str | None, body_bytes: int) -> TokenEstimate:
        """Input tokens from the body size (session-calibrated), output from the session's average."""
        s = self._sessions.get(session_id) if session_id else None
        if s is None or s.body_bytes <= 0:
            return TokenEstimate(body_bytes * 10 // BYTES_PER_TOKEN_X10, self.default_output_tokens)
        self._sessions.move_to_end(session_id)  # type: ignore[arg-type]
        input_tokens = -(-body_bytes * s.input_tokens // s.body_bytes)
        output = sum(s.outputs) // len(s.outputs) if s.outputs else self.default_output_tokens
        cached = min(s.cached_tokens, input_tokens)
        return TokenEstimate(input_tokens, min(output, self.output_cap_tokens), cached)

    def observe(self, session_id: str | None, *, body_bytes: int, input_tokens: int, output_tokens: int,
                cached_tokens: int = 0) -> None:
        """Learn from a completed request's reported usage."""
        if not session_id or body_bytes <= 0 or input_tokens <= 0:
            return
        s = self._sessions.get(session_id)
        if s is None:
            s = self._sessions[session_id] = _Session()
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        s.input_tokens, s.body_bytes, s.cached_tokens = input_tokens, body_bytes, cached_tokens
        s.outputs.append(output_tokens)


def estimated_cost_micros(price: ModelPrice, estimate: TokenEstimate) -> int:
    """Cost of an estimate. A session's first request assumes no cache hits (an upper estimate); later
    ones assume the previous request's cached count, since Codex's history prefix stays cached. The
    estimate of cache hits never exceeds the previous request's, so it only errs low when the cache
    was evicted, which the overshoot bound (docs/enforcement.md) covers."""
    return cost_micros(price, input_tokens=estimate.input_tokens, cached_tokens=estimate.cached_tokens,
                       output_tokens=estimate.output_tokens)
