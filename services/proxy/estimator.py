"""Input-token estimates for the decision step, from the body size corrected per session.

Exact tokenisation of a 40 KB body costs about 1.5 ms, too slow for the request path. A body of
JSON carries about 4.6 bytes per o200k token; after each request the provider's reported
``input_tokens`` refines that ratio for the session, so the next request of a growing history is
estimated from its own session's density.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_BYTES_PER_TOKEN = 4.6
MAX_SESSIONS = 20_000


@dataclass(slots=True)
class SessionStats:
    """What the proxy has seen of one session so far (in this process)."""

    requests: int = 0
    last_body_bytes: int = 0
    last_input_tokens: int = 0
    bytes_per_token: float = DEFAULT_BYTES_PER_TOKEN
    cost_micros: int = 0


class SessionBook:
    """Per-session stats, bounded (least recently used sessions are forgotten first)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, SessionStats] = OrderedDict()

    def get(self, session_id: str | None) -> SessionStats | None:
        if session_id is None:
            return None
        stats = self._sessions.get(session_id)
        if stats is not None:
            self._sessions.move_to_end(session_id)
        return stats

    def snapshot(self, session_id: str | None) -> SessionStats | None:
        """A copy of the session's stats, safe to hand to code that keeps it."""
        stats = self.get(session_id)
        return dataclasses.replace(stats) if stats is not None else None

    def estimate_input_tokens(self, session_id: str | None, body_bytes: int) -> int:
        stats = self.get(session_id)
        ratio = stats.bytes_per_token if stats else DEFAULT_BYTES_PER_TOKEN
        return max(1, round(body_bytes / ratio))

    def record(self, session_id: str | None, *, body_bytes: int, input_tokens: int | None,
               cost_micros: int) -> None:
        """Fold one finished request in; ``input_tokens`` is the provider's count when it reported one."""
        if session_id is None:
            return
        stats = self._sessions.get(session_id)
        if stats is None:
            stats = self._sessions[session_id] = SessionStats()
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        stats.requests += 1
        stats.cost_micros += cost_micros
        if input_tokens and body_bytes > 0:
            stats.last_body_bytes = body_bytes
            stats.last_input_tokens = input_tokens
            stats.bytes_per_token = body_bytes / input_tokens

    def __len__(self) -> int:
        return len(self._sessions)
