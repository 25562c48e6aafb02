"""``enforcement.on_outage``: what the enforcer does once its view is stale. Pure (a fake view, a fake age)."""

from __future__ import annotations

import json

import pytest

from spendgate.domain.enforcement import Budget, Enforcer, Policy, RetryDetector
from spendgate.domain.enforcement.settings import EnforcementSettings, OnOutage
from spendgate.domain.pricing import PriceTable
from tests.unit.test_enforcement_enforcer import ALICE, KEY, NOW, USD, FakeView, body, estimate


def outage_enforcer(mode: OnOutage, age_s: list[float]) -> tuple[Enforcer, FakeView]:
    view = FakeView(Policy.from_settings(EnforcementSettings(), [Budget("key:k1", daily_micros=USD)]))
    return Enforcer(view, prices=PriceTable(), detector=RetryDetector(), clock=lambda: NOW,
                    stale_s=lambda: age_s[0], on_outage=mode, outage_after_s=10.0), view


def test_refuse_mode_answers_503_once_the_view_is_stale_and_reserves_nothing() -> None:
    """Past outage_after_s a spending request is refused with an OpenAI-format 503, reason ``outage``."""
    age = [10.5]
    enf, view = outage_enforcer("refuse", age)
    raw = body()
    adm = enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=estimate(raw))
    assert adm.refusal is not None and adm.refusal.status == 503 and adm.refusal_reason == "outage"
    assert adm.reservation is None and view.book.reserved_micros(KEY) == 0
    error = json.loads(adm.refusal.body)["error"]
    assert (error["type"], error["code"]) == ("server_error", "spendgate_enforcement_unavailable")
    assert adm.refusal.headers["retry-after"] == "5"
    age[0] = 0.2  # the view refreshed again
    assert enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=estimate(raw)).refusal is None


@pytest.mark.parametrize("mode", ["last_known", "refuse"])
def test_a_fresh_view_decides_as_usual_in_both_modes(mode: OnOutage) -> None:
    """Below the bound both modes pass a request under budget and reserve its estimate."""
    enf, view = outage_enforcer(mode, [9.9])
    raw = body()
    adm = enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=estimate(raw))
    assert adm.refusal is None and view.book.reserved_micros(KEY) > 0


def test_last_known_mode_still_pauses_on_what_it_knows() -> None:
    """A stale view in last_known mode still refuses a paused scope with the budget's 429."""
    enf, view = outage_enforcer("last_known", [3600.0])
    view.settled[KEY] = 1_100_000
    raw = body()
    adm = enf.admit(ALICE, "gpt-5.1", session_id=None, raw=raw, estimate=estimate(raw))
    assert adm.refusal is not None and adm.refusal.status == 429 and adm.refusal_reason == "budget_pause"
