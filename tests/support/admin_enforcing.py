"""The proxy's Decider seam driven by the enforcement Enforcer, for tests of enforced traffic through the
real proxy until the proxy wires enforcement itself (docs/enforcement.md, "The API the proxy calls")."""

from __future__ import annotations

from spendgate.core.enforcement import Admission, Enforcer, Principal
from spendgate.core.events import UsageRecorded
from spendgate.proxy.decision import Decision, Pass, Refuse, RequestFacts, RewriteModel


class EnforcingDecider:
    """admit() before forwarding, complete() once the usage event exists; ``enforcer`` is set once started."""

    def __init__(self) -> None:
        self.enforcer: Enforcer | None = None
        self._admissions: dict[int, Admission] = {}

    async def decide(self, facts: RequestFacts) -> Decision:
        assert self.enforcer is not None and facts.model is not None
        key = facts.key
        adm = self.enforcer.admit(Principal(key.key_id, key.developer, key.team), facts.model,
                                  session_id=facts.attribution.session_id, raw=facts.body)
        stage = adm.decision.stage.label
        if adm.refusal is not None:
            headers = tuple((k, v) for k, v in adm.refusal.headers.items() if k.lower() != "content-type")
            return Refuse(adm.refusal.status, adm.refusal.body, headers, stage=stage)
        self._admissions[id(facts)] = adm
        if adm.model != facts.model:
            return RewriteModel(adm.model, adm.decision.route_reason, stage)
        return Pass(stage)

    def settled(self, facts: RequestFacts, event: UsageRecorded) -> None:
        adm = self._admissions.pop(id(facts), None)
        if adm is not None and self.enforcer is not None:
            self.enforcer.complete(adm, event_id=event.event_id, cost_micros=event.cost_micros,
                                   input_tokens=event.input_tokens, cached_tokens=event.cached_tokens,
                                   output_tokens=event.output_tokens)
