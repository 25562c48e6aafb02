"""One request's enforcement, start to finish: the facade the proxy calls. Pure: no I/O.

``admit`` runs before forwarding: retry budget first (a loop is refused whatever the balance), then the
budget decision from the in-memory view, then a reservation of the estimated cost of the model that
will really be used. The token estimate is the proxy's one estimate of the request (``estimate.py``),
the same one metering uses. ``complete`` runs once the usage event exists: the reservation becomes the
real cost (unsettled until the ledger folds the event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from spendgate.domain.alerts import route_facts
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.enforcement.decision import Decision, RequestFacts
from spendgate.domain.enforcement.estimate import TokenEstimate, estimated_cost_micros
from spendgate.domain.enforcement.reservations import Reservation, ReservationBook
from spendgate.domain.enforcement.responses import Refusal, outage_refusal, pause_refusal, retry_refusal
from spendgate.domain.enforcement.retry import RetryDetector, RetryVerdict
from spendgate.domain.enforcement.scopes import Principal
from spendgate.domain.enforcement.settings import OnOutage
from spendgate.domain.errors import UnknownModelError
from spendgate.domain.events import RefusalReason, RetryLoopDetected, new_id
from spendgate.domain.pricing import PriceTable


class DecisionSource(Protocol):
    """What the enforcer needs of a balance view (``BalanceView`` in production, fakes in tests)."""

    book: ReservationBook

    def decide(self, facts: RequestFacts) -> Decision: ...

    def spent_micros(self, key: BalanceKey) -> int: ...

    def retry_cap(self, principal: Principal) -> int: ...


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of :meth:`Enforcer.admit`; hand it back to :meth:`Enforcer.complete`."""

    decision: Decision
    retry: RetryVerdict
    estimate: TokenEstimate
    reservation: Reservation | None
    refusal: Refusal | None
    """Set when the request must be answered with this instead of being forwarded."""
    session_id: str | None
    outage: bool = False
    """Refused because the view was stale (``on_outage: refuse``), not because of a budget."""
    owner: str | None = None
    """Whose the session is (the key's developer): retry counts are namespaced by it."""

    @property
    def model(self) -> str:
        """The model to forward to (differs from the requested one after a downgrade)."""
        return self.decision.model_used

    @property
    def refusal_reason(self) -> RefusalReason | None:
        """``UsageRecorded.refusal_reason`` for a refused request; None when it is forwarded."""
        if self.refusal is None:
            return None
        if self.outage:
            return "outage"
        return "retry_budget" if self.retry.exhausted else "budget_pause"


class Enforcer:
    def __init__(self, view: DecisionSource, *, prices: PriceTable, detector: RetryDetector,
                 clock: Callable[[], datetime] | None = None,
                 alerted: Callable[[Mapping[str, str | None]], list[str]] | None = None,
                 stale_s: Callable[[], float] | None = None, on_outage: OnOutage = "last_known",
                 outage_after_s: float = 10.0) -> None:
        """``alerted``: who is notified of a pause alert with these route facts (``route_facts``), named
        in the pause response; without it the response says "your spendgate admin". ``stale_s``: how
        long ago the view was last refreshed; with ``on_outage="refuse"`` a request that can spend is
        refused (503) once that passes ``outage_after_s``."""
        self.view, self.prices, self.detector = view, prices, detector
        self._stale_s = stale_s
        self._refuse_after_s = outage_after_s if on_outage == "refuse" else None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._alerted = alerted or (lambda _facts: [])

    def admit(self, principal: Principal, model: str, *, session_id: str | None, raw: bytes,
              estimate: TokenEstimate, cost_center: str | None = None, turn_id: str | None = None) -> Admission:
        """Decide a request before forwarding; reserve its estimated cost unless it is refused."""
        facts = RequestFacts(principal, model, estimate.input_tokens, session_id, turn_id)
        owner = principal.developer
        verdict = self.detector.observe(session_id, raw=raw, cap=self.view.retry_cap(principal), owner=owner)
        decision = self.view.decide(facts)
        stale_s = self.stale_s()
        if self._refuse_after_s is not None and stale_s > self._refuse_after_s:
            return Admission(decision, verdict, estimate, None, outage_refusal(stale_s), session_id, outage=True,
                             owner=owner)
        refusal: Refusal | None = None
        if verdict.exhausted:
            refusal = retry_refusal(verdict, now=self._clock())
        elif decision.refused:
            assert decision.decided_by is not None
            by = decision.decided_by
            route = route_facts("pause", by.scope, developer=principal.developer, team=principal.team,
                                cost_center=cost_center, period=by.key.period.value)
            refusal = pause_refusal(decision, alerted=self._alerted(route))
        if verdict.exhausted:
            # A re-send of a retry refusal is a retry (the loop stays stopped). A pause or outage refusal is
            # not a failure of the request: counted as one, a client re-sending the same body while paused (an
            # SDK retrying 429s) was told "retry budget exhausted" from the fourth send, with a retry loop
            # reported, instead of its pause.
            self.detector.outcome(session_id, failed=True, owner=owner)
        reservation = None
        if refusal is None and decision.keys:
            reservation = self.view.book.reserve(decision.keys, self._estimated_cost(decision.model_used, estimate))
        return Admission(decision, verdict, estimate, reservation, refusal, session_id, owner=owner)

    def stale_s(self) -> float:
        """Seconds since the view was last refreshed (0 when nobody measures it)."""
        return self._stale_s() if self._stale_s is not None else 0.0

    def standing(self, principal: Principal) -> Decision:
        """Where the key's budgets stand now (stage, remaining), for a request that spends nothing: no
        retry check, no reservation."""
        return self.view.decide(RequestFacts(principal, "", 0))

    def complete(self, admission: Admission, *, event_id: str, cost_micros: int, failed: bool = False) -> None:
        """Replace the reservation by the real cost; ``failed``: the request ended in an error (so an
        identical re-send of it is a retry)."""
        self.detector.outcome(admission.session_id, failed=failed, owner=admission.owner)
        if admission.reservation is not None:
            self.view.book.settle(admission.reservation, event_id=event_id, cost_micros=cost_micros)
        if admission.retry.retry:
            self.detector.add_retry_cost(admission.session_id, cost_micros, owner=admission.owner)

    def abandon(self, admission: Admission) -> None:
        """The request never reached the provider: drop its reservation at no cost. Not a failure for
        retry counting: a re-send after the provider was unreachable spent nothing the first time."""
        if admission.reservation is not None:
            self.view.book.release(admission.reservation)

    def retry_loop_event(self, admission: Admission, principal: Principal, *, cost_center: str,
                         key_id: str | None = None) -> RetryLoopDetected | None:
        """The ``RetryLoopDetected`` event to publish, once per loop (on its first refusal)."""
        v = admission.retry
        if not (v.exhausted and v.first_exhaustion):
            return None
        return RetryLoopDetected(
            detection_id=new_id(), session_id=admission.session_id or "", key_id=key_id or principal.key_id,
            developer=principal.developer, team=principal.team, cost_center=cost_center,
            tool_name=v.tool_name or "", command=v.command or "(identical request re-sent)", retries=v.retries,
            retry_cost_micros=self.detector.retry_cost_micros(admission.session_id, owner=admission.owner),
            detected_at=self._clock(),
        )

    def _estimated_cost(self, model: str, estimate: TokenEstimate) -> int:
        try:
            price = self.prices.lookup(model).price
        except UnknownModelError:
            return 0  # the proxy refuses unpriced models itself; nothing to reserve
        return estimated_cost_micros(price, estimate)
