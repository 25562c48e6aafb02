"""Channel payloads, signatures, Retry-After, backoff, digest schedule and alert identity: pure parts."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time

import pytest

from spendgate.alerter import email, pagerduty, slack, teams, webhook
from spendgate.alerter.channels import parse_retry_after
from spendgate.alerter.delivery import RetryPolicy
from spendgate.alerter.digest import last_due
from spendgate.core.alert_routes import DigestSpec
from spendgate.domain.alerts import Fact, Message, SessionLine, alert_from_event
from spendgate.domain.events import ForecastUpdated, ThresholdCrossed
from spendgate.domain.ids import uuid7

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def message(**kw: object) -> Message:
    fields: dict[str, object] = dict(
        alert_id=uuid7(), kind="pause", severity="critical", title="[pause] team platform: 112%",
        summary="team platform has spent $1,120.00 of its $1,000.00 monthly budget", scope="team:platform",
        facts=[Fact("Who", "team platform")], incident_key="spendgate:team:platform:month:2026-11-01",
        created_at=NOW, sessions=[SessionLine(session_id="s1", developer="alice", repo="<script>x</script>",
                                              cost_micros=3_000_000, requests=4)],
    )
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


def crossing(**kw: object) -> ThresholdCrossed:
    fields: dict[str, object] = dict(
        crossing_id=uuid7(), scope="team:platform", period="month", period_start=date(2026, 11, 1),
        resets_at=datetime(2026, 12, 1, tzinfo=UTC), threshold_pct=110, stage="pause", spent_micros=1,
        budget_micros=1, crossed_at=NOW, cost_center="platform", trigger_event_id=uuid7())
    fields.update(kw)
    return ThresholdCrossed(**fields)  # type: ignore[arg-type]


def test_slack_splits_a_long_digest_within_block_kit_limits() -> None:
    """500 digest lines become sections of at most 3,000 characters, never more than 50 blocks."""
    body = slack.payload(message(lines=[f"• line {i} " + "x" * 80 for i in range(500)]))
    assert len(body["blocks"]) <= 50 and body["blocks"][-1]["type"] == "context"
    assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"] if b["type"] == "section" and "text" in b)


def test_teams_card_is_an_adaptive_card_attachment() -> None:
    """The Workflows body is a message with one Adaptive Card attachment holding a FactSet."""
    body = teams.payload(message())
    card = body["attachments"][0]["content"]
    assert body["attachments"][0]["contentType"] == teams.CARD_CONTENT_TYPE
    assert card["type"] == "AdaptiveCard" and {"TextBlock", "FactSet"} <= {e["type"] for e in card["body"]}


def test_pagerduty_trigger_and_resolve_share_a_stable_dedup_key() -> None:
    """Trigger carries the required v2 fields; resolve is routing key, action and the same dedup key only."""
    m = message()
    trigger = pagerduty.payload(m, "trigger", "key")
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "spendgate"
    assert pagerduty.payload(m, "resolve", "key") == {
        "routing_key": "key", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


def test_webhook_signature_rejects_tampering_and_stale_timestamps() -> None:
    """The HMAC covers timestamp and body; a changed body, wrong key or old timestamp fails."""
    body = b'{"a":1}'
    sig = webhook.signature("k", "1700000000", body)
    assert webhook.verify("k", "1700000000", body, sig, now_s=1700000010)
    assert not webhook.verify("k", "1700000000", b'{"a":2}', sig, now_s=1700000010)
    assert not webhook.verify("other", "1700000000", body, sig, now_s=1700000010)
    assert not webhook.verify("k", "1700000000", body, sig, now_s=1700009999)


def test_email_has_text_and_escaped_html_parts() -> None:
    """The email is multipart/alternative; a hostile repo name is escaped in the HTML part."""
    mail = email.build_email(message(), ["em@example.com"], "spendgate@example.com")
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "team platform" in mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), ("Thu, 26 Nov 2026 12:01:00 GMT", 60.0), ("soon", None), (None, None)])
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP date; anything else is ignored."""
    assert parse_retry_after(header, now=NOW) == seconds


def test_backoff_is_exponential_with_jitter_capped_and_raised_to_retry_after() -> None:
    """Delays lie in [c/2, c] for c = base·2^(n-1) capped at max; Retry-After raises them, within its own cap."""
    policy = RetryPolicy(base_s=1, max_s=8, retry_after_max_s=30, rng=random.Random(1))
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        for _ in range(50):
            assert ceiling / 2 <= policy.delay_s(attempt) <= ceiling
    assert policy.delay_s(1, retry_after_s=20) == 20
    assert policy.delay_s(1, retry_after_s=3600) == 30


def test_digest_schedule_is_the_last_instant_at_or_before_now() -> None:
    """Daily and weekly slots, in the route's timezone."""
    daily = DigestSpec("day", time(17, 0), "UTC")
    assert last_due(daily, NOW) == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert last_due(daily, datetime(2026, 11, 26, 17, 0, tzinfo=UTC)) == datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    berlin = DigestSpec("day", time(9, 0), "Europe/Berlin")
    assert last_due(berlin, NOW) == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    monday = DigestSpec("week", time(9, 0), "UTC", weekday=0)  # 2026-11-26 is a Thursday
    assert last_due(monday, NOW) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_an_alert_is_identified_by_scope_period_and_threshold() -> None:
    """Two crossings of one threshold share a dedupe key; stage ok and forecast updates raise no alert."""
    a, b = alert_from_event(crossing()), alert_from_event(crossing())
    assert a is not None and b is not None and a.alert_id != b.alert_id and a.dedup_key == b.dedup_key
    assert a.facts()["scope"] == "team" and a.team == "platform"
    assert alert_from_event(crossing(stage="ok")) is None
    assert alert_from_event(ForecastUpdated(forecast_id=uuid7(), scope="org", month=date(2026, 11, 1),
                                            as_of=date(2026, 11, 26), actual_micros=1, p10_micros=1,
                                            p50_micros=1, p90_micros=1, model="m")) is None
