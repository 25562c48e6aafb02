"""The budget rules, once, and the enforcement built on them (docs/enforcement.md). Pure: no I/O.

The rules every area calls instead of keeping a copy: the effective budget, base plus active raises
(``policy.effective_budget_micros``); the scopes of a request (``scopes.Principal.scopes``); the
balance key (``balances.BalanceKey``); the stage for a spend/budget ratio and the threshold crossings
(``stages.stage_for``, ``stages.crossed``); the cascade step (``Policy.next_model`` /
``Policy.cheapest_model``). The proxy's decision, the ledger's fold, the dry-run replay and the
forecaster use them; the proxy's adapters (the balance view, the stores) live outside this package.

The package imports its modules on first use (PEP 562), so a command that needs only the settings
shape does not pay for the rules it never calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendgate.domain.enforcement.balances import BalanceKey, SpendOf
    from spendgate.domain.enforcement.decision import Decision, RequestFacts, Standing, balance_keys, decide, standings
    from spendgate.domain.enforcement.enforcer import Admission, DecisionSource, Enforcer
    from spendgate.domain.enforcement.estimate import SessionEstimator, TokenEstimate, estimated_cost_micros
    from spendgate.domain.enforcement.policy import (
        Budget,
        BudgetRaise,
        Policy,
        Thresholds,
        budget_of,
        effective_budget_micros,
        policy_from_document,
    )
    from spendgate.domain.enforcement.reservations import Reservation, ReservationBook
    from spendgate.domain.enforcement.responses import Refusal, pause_refusal, retry_refusal
    from spendgate.domain.enforcement.retry import RetryDetector, RetryVerdict
    from spendgate.domain.enforcement.scopes import Principal, parse_scope
    from spendgate.domain.enforcement.stages import StageLevel, crossed, stage_for

_HOME: dict[str, str] = {
    "Admission": "enforcer",
    "BalanceKey": "balances",
    "Budget": "policy",
    "BudgetRaise": "policy",
    "Decision": "decision",
    "DecisionSource": "enforcer",
    "Enforcer": "enforcer",
    "Policy": "policy",
    "Principal": "scopes",
    "Refusal": "responses",
    "RequestFacts": "decision",
    "Reservation": "reservations",
    "ReservationBook": "reservations",
    "RetryDetector": "retry",
    "RetryVerdict": "retry",
    "SessionEstimator": "estimate",
    "SpendOf": "balances",
    "StageLevel": "stages",
    "Standing": "decision",
    "Thresholds": "policy",
    "TokenEstimate": "estimate",
    "balance_keys": "decision",
    "budget_of": "policy",
    "crossed": "stages",
    "decide": "decision",
    "effective_budget_micros": "policy",
    "estimated_cost_micros": "estimate",
    "parse_scope": "scopes",
    "pause_refusal": "responses",
    "policy_from_document": "policy",
    "retry_refusal": "responses",
    "stage_for": "stages",
    "standings": "decision",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
    "SpendOf",
    "StageLevel",
    "Standing",
    "Thresholds",
    "TokenEstimate",
    "balance_keys",
    "budget_of",
    "crossed",
    "decide",
    "effective_budget_micros",
    "estimated_cost_micros",
    "parse_scope",
    "pause_refusal",
    "policy_from_document",
    "retry_refusal",
    "stage_for",
    "standings",
]
