"""What a read of the alert history may ask for (``spendgate alerts list``, ``GET /v1/alerts``): the
kinds of alert and the most alerts one answer holds.

Standard library only: the CLI builds ``alerts list``'s options from these when any ``spendgate``
command starts, and must not pay for msgspec or the stores to do so.
"""

from __future__ import annotations

KINDS = ("alert", "downgrade", "pause", "forecast_overrun", "retry_loop", "digest", "test", "reconciliation_gap",
         "policy_rollback")
MAX_ALERTS = 1000
