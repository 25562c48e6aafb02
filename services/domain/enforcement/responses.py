"""Codex-aware refusals. Pure: no I/O.

Codex (CODEX.md) stops at once on a 429 whose ``error.type`` is ``usage_limit_reached`` and shows
``You've hit your usage limit. <x-codex-promo-message>, or try again at <resets_at>.``; other clients
(OpenAI SDKs surface ``error.message``) get the gateway's full message and the budget details in the
body, and ``x-should-retry: false`` keeps the SDKs from retrying a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from spendgate.domain.enforcement.decision import Decision
from spendgate.domain.enforcement.retry import RetryVerdict
from spendgate.domain.enforcement.scopes import scope_label
from spendgate.domain.money import format_usd, usd_str
from spendgate.domain.periods import zone

USAGE_LIMIT_REACHED = "usage_limit_reached"
RETRY_BUDGET_EXHAUSTED = "retry_budget_exhausted"
PROMO_HEADER = "x-codex-promo-message"
_PERIOD_WORD = {"day": "daily", "week": "weekly", "month": "monthly"}
_CONTROL_TO_QMARK = {c: "?" for c in [*range(32), 127]}


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def _header_text(text: str) -> str:
    """One line of printable ASCII (HTTP header values are not safely UTF-8)."""
    ascii_text = " ".join(text.split()).encode("ascii", "replace").decode("ascii")
    return ascii_text.translate(_CONTROL_TO_QMARK)[:300]


def _refusal(error: dict[str, Any], promo: str) -> Refusal:
    headers = {
        "content-type": "application/json",
        PROMO_HEADER: _header_text(promo),
        "x-should-retry": "false",
    }
    return Refusal(429, headers, msgspec.json.encode({"error": error}))


def _alerted_text(alerted: Sequence[str]) -> str:
    return ", ".join(alerted) if alerted else "your spendgate admin"


def pause_refusal(decision: Decision, *, alerted: Sequence[str] = ()) -> Refusal:
    """The 429 ``usage_limit_reached`` answer to a request refused at the pause stage."""
    by = decision.decided_by
    if by is None:
        raise ValueError("only a refusal decided by a budget has a pause response")
    period = _PERIOD_WORD[by.key.period.value]
    whose = scope_label(by.scope)
    spent, budget = format_usd(by.spent_micros), format_usd(by.budget_micros)
    local_reset = by.resets_at.astimezone(zone(by.timezone))
    reset_text = f"{local_reset:%Y-%m-%d %H:%M} {by.timezone}"
    who = _alerted_text(alerted)
    message = (
        f"Budget paused by spendgate: {whose}'s {period} budget is used up ({spent} of {budget} spent). "
        f"Requests pass again when the budget resets at {reset_text}. Alerted: {who}."
    )
    error = {
        "message": message,
        "type": USAGE_LIMIT_REACHED,
        "code": USAGE_LIMIT_REACHED,
        "param": None,
        "plan_type": "team",
        "resets_at": int(by.resets_at.timestamp()),
        "scope": by.scope,
        "period": by.key.period.value,
        "period_start": by.key.period_start.isoformat(),
        "spent_usd": usd_str(by.spent_micros),
        "budget_usd": usd_str(by.budget_micros),
        "resets_at_iso": by.resets_at.isoformat().replace("+00:00", "Z"),
        "timezone": by.timezone,
        "alerted": list(alerted),
    }
    promo = f"{whose.capitalize()}'s {period} budget is used up: {spent} of {budget} spent (alerted: {who})"
    return _refusal(error, promo)


def retry_refusal(verdict: RetryVerdict, *, now: datetime) -> Refusal:
    """The 429 answer to a session whose agent keeps retrying: code ``retry_budget_exhausted``."""
    if verdict.kind == "tool_call":
        what = f"`{verdict.command}` ({verdict.tool_name}) failed {verdict.retries + 1} times in a row"
    else:
        what = f"the same request was sent {verdict.retries + 1} times in a row"
    message = (
        f"Retry budget exhausted: {what}; spendgate stopped the session after {verdict.retries} retries "
        f"(cap {verdict.cap}). Change the approach or fix the command, then continue."
    )
    error = {
        "message": message,
        "type": USAGE_LIMIT_REACHED,
        "code": RETRY_BUDGET_EXHAUSTED,
        "param": None,
        "resets_at": int(now.timestamp()),
        "retries": verdict.retries,
        "cap": verdict.cap,
        "tool_name": verdict.tool_name,
        "command": verdict.command,
    }
    promo = f"spendgate stopped a retry loop: {what}; change the approach"
    return _refusal(error, promo)


ENFORCEMENT_UNAVAILABLE = "spendgate_enforcement_unavailable"
OUTAGE_RETRY_AFTER_S = 5


def outage_refusal(stale_s: float) -> Refusal:
    """The 503 answer while budgets cannot be checked (``enforcement.on_outage: refuse``): OpenAI's error
    format, type ``server_error`` so clients and SDKs retry it after ``retry-after`` seconds."""
    message = (f"spendgate cannot check budgets right now (its budget data is {int(stale_s)} s old) and is "
               "configured to refuse spending requests until it can; try again shortly.")
    error = {"message": message, "type": "server_error", "code": ENFORCEMENT_UNAVAILABLE, "param": None}
    headers = {"content-type": "application/json", "retry-after": str(OUTAGE_RETRY_AFTER_S)}
    return Refusal(503, headers, msgspec.json.encode({"error": error}))
