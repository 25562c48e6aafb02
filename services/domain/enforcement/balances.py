"""A balance: one scope's spend in one budget period. Pure: no I/O.

The one key every part uses for a balance: the ledger folds into it (``balances`` rows, the crossings
outbox), the proxy decides and reserves against it, the dry-run replays into it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import NamedTuple

from spendgate.domain.periods import PeriodKind


class BalanceKey(NamedTuple):
    """One balance: a scope's spend in one period, identified by the period's local start date."""

    scope: str
    period: PeriodKind
    period_start: date


SpendOf = Callable[[BalanceKey], int]
"""Settled + unsettled + reserved micro-dollars of a balance (0 when nothing is known)."""
