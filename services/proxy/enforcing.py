"""The enforcement stack (``spendgate.domain.enforcement``) behind the proxy's :class:`Decider` seam.

``decide`` calls ``Enforcer.admit`` through :func:`admit_confirmed` (memory only, except near a pause line
where the admission is confirmed in PostgreSQL against every proxy's reservations): a refusal (budget pause,
retry budget) is answered directly, a downgrade rewrites the model, anything else passes, and the request's
retry flag rides along to its usage event. ``settled`` hands the usage event back: ``complete`` turns the
reservation into the real cost, or ``abandon`` drops it when nothing reached the provider. A retry loop's
first refusal also yields a ``RetryLoopDetected`` event, published to the budget topic in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from spendgate.core.bus import Bus
from spendgate.core.db import DATABASE_TROUBLE
from spendgate.core.logs import get_logger
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.enforcement import Admission, Enforcer, Principal, TokenEstimate
from spendgate.domain.errors import BusError
from spendgate.domain.events import RetryLoopDetected, UsageRecorded, encode
from spendgate.proxy.decision import Decision, Pass, Refuse, RequestFacts, RewriteModel
from spendgate.proxy.view import BalanceView

log = get_logger(__name__)

NOT_FORWARDED_STATUSES = (502, 504)
FAILED_STATUSES = frozenset({"upstream_error", "incomplete"})


async def admit_confirmed(enforcer: Enforcer, principal: Principal, model: str, *, session_id: str | None,
                          raw: bytes, estimate: TokenEstimate, cost_center: str | None = None,
                          turn_id: str | None = None) -> Admission:
    """``enforcer.admit``, confirmed near the pause line (:meth:`BalanceView.near_line`).

    There the balances and every proxy's pending spend are read fresh under a per-balance lock, the
    request is decided on them and its reservation published before the lock is released, so two proxies
    cannot both spend the last of a budget. When PostgreSQL does not answer within
    :data:`.confirming.CONFIRM_TIMEOUT_S` the decision is made from memory, as far from the line; while the view is
    stale (``enforcement.outage_after_s``) it is made from memory without trying.
    """
    def admit() -> Admission:
        return enforcer.admit(principal, model, session_id=session_id, raw=raw, estimate=estimate,
                              cost_center=cost_center, turn_id=turn_id)

    view = enforcer.view
    if not isinstance(view, BalanceView):
        return admit()
    keys = view.near_line(principal, model)
    if not keys or view.stale_s() > view.settings.outage_after_s:
        # Far from the line; or the database has not answered the view for a while: do not make each
        # request wait on it.
        return admit()
    try:  # at most the confirmation in progress and the next, each bounded by CONFIRM_TIMEOUT_S
        return await view.confirmations.admit(keys, admit)
    except DATABASE_TROUBLE as exc:
        log.warning("admission not confirmed near the pause line; decided from memory",
                    error=type(exc).__name__, scopes=sorted({k.scope for k in keys}))
    return admit()


class EnforcingDecider:
    def __init__(self, enforcer: Enforcer, *, on_retry_loop: Callable[[RetryLoopDetected], None] | None = None) -> None:
        self.enforcer = enforcer
        self.on_retry_loop = on_retry_loop or (lambda _event: None)
        self._admissions: dict[int, Admission] = {}

    async def decide(self, facts: RequestFacts) -> Decision:
        key = facts.key
        principal = Principal(key.key_id, key.developer, key.team, key.cost_center or None)
        if facts.model is None:
            now = self.enforcer.standing(principal)
            return Pass(now.stage.label, remaining_micros=now.remaining_micros, policy_version=now.policy_version)
        adm = await admit_confirmed(self.enforcer, principal, facts.model, session_id=facts.attribution.session_id,
                                    raw=facts.body, estimate=facts.estimate, cost_center=key.cost_center,
                                    turn_id=facts.attribution.turn_id)
        stage, retry, left = adm.decision.stage.label, adm.retry.retry, adm.decision.remaining_micros
        version, arm = adm.decision.policy_version, adm.decision.experiment_arm
        if adm.refusal is not None:
            loop = self.enforcer.retry_loop_event(adm, principal, cost_center=key.cost_center, key_id=key.key_id)
            if loop is not None:
                self.on_retry_loop(loop)
            headers = tuple((k, v) for k, v in adm.refusal.headers.items() if k.lower() != "content-type")
            return Refuse(adm.refusal.status, adm.refusal.body, headers, stage=stage, retry=retry,
                          reason=adm.refusal_reason or "budget_pause", remaining_micros=left, tools=adm.retry.tools,
                          policy_version=version, experiment_arm=arm)
        self._admissions[id(facts)] = adm
        if adm.model != facts.model:
            return RewriteModel(adm.model, adm.decision.route_reason, stage, retry, left, tools=adm.retry.tools,
                                policy_version=version, routing_rule=adm.decision.routing_rule,
                                experiment_arm=arm)
        return Pass(stage, retry, left, tools=adm.retry.tools, policy_version=version, experiment_arm=arm)

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        adm = self._admissions.pop(id(facts), None)
        if adm is None:
            return
        if event.status == "upstream_error" and event.http_status in NOT_FORWARDED_STATUSES \
                and event.usage_source == "none":
            self.enforcer.abandon(adm)
            return
        failed = event.status in FAILED_STATUSES or event.http_status >= 400
        self.enforcer.complete(adm, event_id=event.event_id, cost_micros=event.cost_micros, failed=failed)


class RetryLoopPublisher:
    """Publishes ``RetryLoopDetected`` events without making a request wait; failures are logged."""

    def __init__(self, bus: Bus, *, source: str) -> None:
        self.bus, self.source = bus, source
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, event: RetryLoopDetected) -> None:
        task = asyncio.create_task(self._publish(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: RetryLoopDetected) -> None:
        try:
            await self.bus.publish(TOPIC_BUDGET, event.key_id, encode(event, source=self.source))
        except BusError as exc:
            log.warning("retry-loop event not published", session_id=event.session_id, error=str(exc))

    async def drain(self, timeout_s: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
