"""A stored usage event as the policy replay reads it. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class StoredUsage(NamedTuple):
    """The parts of a stored usage event a policy replay needs: what the usage store reads for the
    dry-run and what the replay engine feeds on, one type for both."""

    event_id: str
    occurred_at: datetime
    key_id: str
    developer: str
    team: str
    session_id: str | None
    turn_id: str | None
    model_requested: str
    model_used: str
    route_reason: str
    stage: str
    status: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost_micros: int
    retry: bool
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cost_center: str = ""
