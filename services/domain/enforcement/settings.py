"""Enforcement defaults as the settings carry them (a shape, validated; the settings object reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

OnOutage = Literal["last_known", "refuse"]

DEFAULT_CASCADES: dict[str, list[str]] = {
    "gpt-5.1": ["gpt-5.1-mini", "gpt-4.1-mini"],
    "gpt-5.1-codex": ["gpt-5.1-codex-mini", "gpt-4.1-mini"],
    "gpt-5.1-codex-max": ["gpt-5.1-codex", "gpt-5.1-codex-mini", "gpt-4.1-mini"],
    "gpt-5": ["gpt-5-mini", "gpt-5-nano"],
    "gpt-5-codex": ["gpt-5.1-codex-mini", "gpt-4.1-mini"],
    "gpt-4.1": ["gpt-4.1-mini", "gpt-4.1-nano"],
    "gpt-4o": ["gpt-4o-mini"],
    "o3": ["o4-mini"],
}


class EnforcementSettings(BaseModel):
    thresholds_pct: list[int] = Field(default_factory=lambda: [80, 95, 110])
    """Default alert, downgrade and pause thresholds, in percent of a budget."""
    cascades: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_CASCADES))
    """Per model, the cheaper models to step down to, best first."""
    downgrade_max_input_tokens: int = Field(default=10_000, ge=0)
    retry_cap: int = Field(default=3, ge=0)
    reservation_timeout_s: float = Field(default=900.0, gt=0)
    output_estimate_cap_tokens: int = Field(default=8_192, ge=1)
    balance_poll_interval_s: float = Field(default=0.1, gt=0)
    """How often each proxy's balance view polls the ledger's balances (version-ordered)."""
    balance_overlap_s: float = Field(default=2.0, ge=0)
    """Re-read window for balance rows whose ledger transaction committed out of version order."""
    config_reload_s: float = Field(default=5.0, gt=0)
    """Full budget reload period, a safety net behind LISTEN/NOTIFY."""
    on_outage: OnOutage = "last_known"
    """What a proxy does while its balance view cannot be refreshed (the database is down) for longer
    than ``outage_after_s``: ``last_known`` decides on the spend it knows (the last balances read plus
    this proxy's own unsettled and reserved spend); ``refuse`` answers every request that can spend
    with an OpenAI-format 503 until the view is fresh again. See docs/enforcement.md ("Outages")."""
    outage_after_s: float = Field(default=10.0, gt=0)
    """How long the balance view may go without a successful refresh before it counts as stale."""

    @field_validator("thresholds_pct")
    @classmethod
    def _three_rising(cls, v: list[int]) -> list[int]:
        if len(v) != 3 or not (0 < v[0] <= v[1] <= v[2]):
            raise ValueError("thresholds must be three rising percentages: alert, downgrade, pause")
        return v
