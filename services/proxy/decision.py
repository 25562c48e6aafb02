"""The decision seam between authentication and forwarding: pass, rewrite the model, or refuse.

Enforcement (budgets, downgrades, pauses, retry budgets) lives elsewhere and plugs in as a
:class:`Decider`; the proxy only hands it the request facts and carries out the decision. Until
enforcement lands, :class:`PassDecider` lets everything through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from spendgate.domain.enforcement.estimate import TokenEstimate
from spendgate.domain.enforcement.retry import TurnTools
from spendgate.domain.events import ExperimentArm, RefusalReason, RouteReason, Stage, UsageRecorded
from spendgate.proxy.attribution import Attribution
from spendgate.store.keys.store import VirtualKey


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Everything known about a request before it is forwarded."""

    key: VirtualKey
    endpoint: str
    """The request path, e.g. ``/v1/responses``."""
    model: str | None
    stream: bool
    attribution: Attribution
    body_bytes: int
    estimate: TokenEstimate
    """The request's one token estimate, corrected by what this proxy saw of its session (its
    ``session``: None for a session without reported usage here). Enforcement and metering share it."""
    body: bytes
    """The raw request body (for deciders that inspect tool calls); never log it."""


@dataclass(frozen=True, slots=True)
class Pass:
    stage: Stage = "ok"
    retry: bool = False
    """The request repeats a failing tool call (retry spend, flagged on its usage event)."""
    remaining_micros: int | None = None
    """What is left of the tightest budget the request falls under (None: no budget applies)."""
    tools: TurnTools | None = None
    """The tool outputs of the request's current turn, as the retry detector counted them."""
    policy_version: str | None = None
    """The stored policy version that decided (on the usage event)."""
    experiment_arm: ExperimentArm | None = None
    """The exploration arm of the request's turn (on the usage event); None: not in the experiment."""


@dataclass(frozen=True, slots=True)
class RewriteModel:
    """Forward with ``model`` instead of the requested one (a downgrade or a routing rule)."""

    model: str
    route_reason: RouteReason = "downgrade"
    stage: Stage = "downgrade"
    retry: bool = False
    remaining_micros: int | None = None
    tools: TurnTools | None = None
    policy_version: str | None = None
    routing_rule: str | None = None
    """The name of the routing rule that changed the model, if one did."""
    experiment_arm: ExperimentArm | None = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the client directly; the request is metered as ``refused`` at zero cost."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    stage: Stage = "pause"
    content_type: str = "application/json"
    retry: bool = False
    reason: RefusalReason = "budget_pause"
    remaining_micros: int | None = None
    tools: TurnTools | None = None
    policy_version: str | None = None
    experiment_arm: ExperimentArm | None = None


Decision = Pass | RewriteModel | Refuse


class Decider(Protocol):
    async def decide(self, facts: RequestFacts) -> Decision:
        """Called before forwarding; must be quick (no I/O on the hot path beyond cached reads).

        A request that names no model (``GET /v1/models``) spends nothing: it is asked only for the
        key's stage and remaining budget (the response headers), and forwarded whatever the answer."""
        ...

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        """Called once the request's usage event exists (release reservations, count retries)."""
        ...


class PassDecider:
    """Lets every request through unchanged."""

    _PASS = Pass()

    async def decide(self, facts: RequestFacts) -> Decision:
        return self._PASS

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        return None
