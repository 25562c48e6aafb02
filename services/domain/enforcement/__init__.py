"""Enforcement: budgets in stages, downgrade, a Codex-aware pause, retry budgets (docs/enforcement.md).

This package's own namespace holds the pure parts only (no aiohttp, asyncpg or aiokafka), so the
policy dry-run can replay events through the same decision as the proxy. The I/O adapters are
imported by name: ``enforcement.view`` (:class:`BalanceView`), ``enforcement.budgets_store``.
"""

from __future__ import annotations

from spendgate.domain.enforcement.decide import BalanceKey, Decision, RequestFacts, Standing, balance_keys, decide
from spendgate.domain.enforcement.enforcer import Admission, DecisionSource, Enforcer
from spendgate.domain.enforcement.estimate import SessionEstimator, TokenEstimate, estimated_cost_micros
from spendgate.domain.enforcement.policy import (
    Budget,
    BudgetRaise,
    Policy,
    Thresholds,
    budget_of,
    load_policy,
    policy_from_document,
)
from spendgate.domain.enforcement.reservations import Reservation, ReservationBook
from spendgate.domain.enforcement.responses import Refusal, pause_refusal, retry_refusal
from spendgate.domain.enforcement.retry import RetryDetector, RetryVerdict
from spendgate.domain.enforcement.scopes import Principal, parse_scope
from spendgate.domain.enforcement.stages import StageLevel, stage_for

__all__ = [
    "Admission",
    "BalanceKey",
    "Budget",
    "BudgetRaise",
    "Decision",
    "DecisionSource",
    "Enforcer",
    "Policy",
    "Principal",
    "Refusal",
    "RequestFacts",
    "Reservation",
    "ReservationBook",
    "RetryDetector",
    "RetryVerdict",
    "SessionEstimator",
    "StageLevel",
    "Standing",
    "Thresholds",
    "TokenEstimate",
    "balance_keys",
    "budget_of",
    "decide",
    "estimated_cost_micros",
    "load_policy",
    "parse_scope",
    "pause_refusal",
    "policy_from_document",
    "retry_refusal",
    "stage_for",
]
