"""The one estimate of a request's tokens before it is forwarded, corrected per session. Pure: no I/O.

Exact tokenisation of a Codex body (~40 KB) costs ~1.5 ms, too slow for the request path. The first
request of a session is estimated from its size (about 4.6 bytes per token, CODEX.md); after that the
session's own ratio of reported ``input_tokens`` to body bytes is used, which is accurate because Codex
re-sends the whole history every request. Output is the session's recent average, capped.

The proxy estimates each request once (``SessionEstimator.estimate``) and hands the same
:class:`TokenEstimate` to enforcement (the downgrade size check, the reservation) and to metering
(the input tokens of a request whose usage the provider never reported); it teaches the estimator
once, from the reported usage on the request's event (``observe``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from spendgate.domain.pricing import ModelPrice, cost_micros

BYTES_PER_TOKEN_X10 = 46
"""Bytes per token times ten (4.6 bytes per o200k token for Codex bodies)."""
RECENT_OUTPUTS = 8


class SessionStats(NamedTuple):
    """What the last request of a session with reported usage taught the estimator (immutable, so an
    estimate carries it without a copy; a tuple, so learning from a request stays sub-microsecond)."""

    last_body_bytes: int
    last_input_tokens: int
    last_cached_tokens: int
    recent_outputs: tuple[int, ...]
    """Output tokens of the last ``RECENT_OUTPUTS`` requests, oldest first."""
    output_tokens: int
    """Their average."""


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    """Expected prompt-cache hits: the session's last cached count (Codex re-sends a cached prefix)."""
    session: SessionStats | None = None
    """The session history the estimate was calibrated with (None: estimated from the size alone)."""


class SessionEstimator:
    """Per-session token estimates, bounded to ``max_sessions`` (least recently used forgotten)."""

    def __init__(self, *, output_cap_tokens: int, default_output_tokens: int = 1_024,
                 max_sessions: int = 50_000) -> None:
        self.output_cap_tokens = output_cap_tokens
        self.default_output_tokens = min(default_output_tokens, output_cap_tokens)
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, SessionStats] = OrderedDict()

    def estimate(self, session_id: str | None, body_bytes: int) -> TokenEstimate:
        """Input tokens from the body size (session-calibrated), output from the session's average."""
        s = self._sessions.get(session_id) if session_id else None
        if s is None:
            return TokenEstimate(body_bytes * 10 // BYTES_PER_TOKEN_X10, self.default_output_tokens)
        self._sessions.move_to_end(session_id)  # type: ignore[arg-type]
        input_tokens = -(-body_bytes * s.last_input_tokens // s.last_body_bytes)
        return TokenEstimate(input_tokens, min(s.output_tokens, self.output_cap_tokens),
                             min(s.last_cached_tokens, input_tokens), s)

    def observe(self, session_id: str | None, *, body_bytes: int, input_tokens: int, output_tokens: int,
                cached_tokens: int = 0) -> None:
        """Learn from a completed request's reported usage."""
        if not session_id or body_bytes <= 0 or input_tokens <= 0:
            return
        sessions = self._sessions
        s = sessions.get(session_id)
        outputs = (*s.recent_outputs[1 - RECENT_OUTPUTS:], output_tokens) if s is not None else (output_tokens,)
        sessions[session_id] = SessionStats(body_bytes, input_tokens, cached_tokens, outputs,
                                            sum(outputs) // len(outputs))
        if s is None:
            if len(sessions) > self.max_sessions:
                sessions.popitem(last=False)
        else:
            sessions.move_to_end(session_id)

    def session(self, session_id: str | None) -> SessionStats | None:
        """What the estimator knows of a session (None: nothing reported yet, or forgotten)."""
        return self._sessions.get(session_id) if session_id else None

    def __len__(self) -> int:
        return len(self._sessions)


def estimated_cost_micros(price: ModelPrice, estimate: TokenEstimate) -> int:
    """Cost of an estimate. A session's first request assumes no cache hits (an upper estimate); later
    ones assume the previous request's cached count, since Codex's history prefix stays cached. The
    estimate of cache hits never exceeds the previous request's, so it only errs low when the cache
    was evicted, which the overshoot bound (docs/enforcement.md) covers."""
    return cost_micros(price, input_tokens=estimate.input_tokens, cached_tokens=estimate.cached_tokens,
                       output_tokens=estimate.output_tokens)
