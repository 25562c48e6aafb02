"""Every channel against a real receiver on 127.0.0.1: each payload checked against its documented format."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from spendgate.alerter.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from spendgate.domain.constants import TOPIC_ALERT
from spendgate.domain.events import AlertDelivery, decode
from tests.support.alerts import (
    Login,
    Receivers,
    count,
    crossing,
    running_alerter,
    seed_budget,
    seed_usage,
    settings_for,
    size,
    smtp_server,
)
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:platform-em: {{url: "{slack}"}}
  teams:platform: {{url: "{teams}"}}
  pagerduty:platform-oncall: {{routing_key: {{secret: pd_platform}}, url: "{pd}"}}
  webhook:finops-bi: {{url: "{hook}", signing_secret: {{secret: bi_signing}}}}
  email:platform-em: {{to: [em@platform.example]}}
routes:
  - name: platform
    match: {{cost_center: platform, stage: [downgrade, pause]}}
    notify: [slack:platform-em, teams:platform, pagerduty:platform-oncall, webhook:finops-bi, email:platform-em]
"""
PD_KEY = "R0UTINGKEY0000000000000000000000"
SIGNING = "whsec-test-signing-secret"
ADAPTIVE_ELEMENTS = {"TextBlock", "FactSet", "ColumnSet", "Container", "Image", "RichTextBlock"}


def check_slack(body: dict) -> None:  # type: ignore[type-arg]
    assert isinstance(body["text"], str) and body["text"]
    blocks = body["blocks"]
    assert 1 <= len(blocks) <= 50
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["type"] == "plain_text"
    assert len(blocks[0]["text"]["text"]) <= 150
    for b in blocks:
        assert b["type"] in {"header", "section", "divider", "context"}
        if b["type"] == "section":
            assert "text" in b or "fields" in b
            if "text" in b:
                assert b["text"]["type"] == "mrkdwn" and len(b["text"]["text"]) <= 3000
            for f in b.get("fields", []):
                assert f["type"] == "mrkdwn" and len(f["text"]) <= 2000
            assert len(b.get("fields", [])) <= 10
        if b["type"] == "context":
            assert 1 <= len(b["elements"]) <= 10


def check_adaptive_card(body: dict) -> dict:  # type: ignore[type-arg]
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] in {"1.0", "1.2", "1.3", "1.4", "1.5"}
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    for element in card["body"]:
        assert element["type"] in ADAPTIVE_ELEMENTS
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str)
        if element["type"] == "FactSet":
            assert all(set(f) == {"title", "value"} for f in element["facts"])
    return card  # type: ignore[no-any-return]


async def test_each_channel_gets_a_payload_in_its_documented_format(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A platform pause reaches Slack, Teams, PagerDuty, a signed webhook and email, each well-formed and actionable."""
    await seed_usage(pool, session_id="sess-big", repo="/src/payments-api", cost_micros=300_000_000)
    await seed_usage(pool, session_id="sess-small", repo="/src/infra", cost_micros=20_000_000, developer="bob")
    await seed_budget(pool, "platform", "platform", monthly_micros=1_000_000_000, spent_micros=1_120_000_000)
    with smtp_server() as (inbox, smtp_port):
        async with Receivers() as rx:
            routes = ROUTES.format(slack=rx.url("slack"), teams=rx.url("teams"), pd=rx.url("pagerduty"),
                                   hook=rx.url("hook"))
            settings = settings_for(db_url, tmp_path, routes, smtp_port=smtp_port,
                                    secrets={"pd_platform": PD_KEY, "bi_signing": SIGNING})
            with capture_logs() as logs:
                async with running_alerter(settings, pool, db_url) as alerter:
                    event = crossing()
                    await alerter.publish(event)
                    for path in ("slack", "teams", "pagerduty", "hook"):
                        await eventually(functools.partial(rx.count_delivered, path), what=f"{path} delivery")
                    await eventually(lambda: size(inbox.to("em@platform.example")), what="email")
                    await eventually(lambda: count(pool, "SELECT count(*) FROM alert_deliveries"),
                                     until=lambda n: n == 5, what="five recorded attempts")

            slack = rx.delivered("slack")[0].json()
            check_slack(slack)
            text = str(slack)
            for needle in ("team platform", "$1,120.00", "$1,000.00", "pause", "refused", "2026-12-01",
                           "sess-big", "/src/payments-api"):
                assert needle in text, needle
            assert text.index("sess-big") < text.index("sess-small")  # top sessions by cost, biggest first

            card = check_adaptive_card(rx.delivered("teams")[0].json())
            assert any(e["type"] == "FactSet" for e in card["body"])

            pd = rx.delivered("pagerduty")[0].json()
            assert pd["routing_key"] == PD_KEY and pd["event_action"] == "trigger"
            assert pd["dedup_key"] == "spendgate:team:platform:month:2026-11-01"
            payload = pd["payload"]
            assert {"summary", "source", "severity"} <= set(payload)
            assert payload["severity"] in {"critical", "error", "warning", "info"} and len(payload["summary"]) <= 1024

            hook = rx.delivered("hook")[0]
            assert verify(SIGNING, hook.headers[TIMESTAMP_HEADER], hook.body, hook.headers[SIGNATURE_HEADER],
                          now_s=time.time())
            assert not verify("wrong-secret", hook.headers[TIMESTAMP_HEADER], hook.body,
                              hook.headers[SIGNATURE_HEADER], now_s=time.time())
            assert hook.json()["alert"]["alert_id"] == event.crossing_id

            (mail,) = inbox.to("em@platform.example")
            assert mail.get_content_type() == "multipart/alternative"
            parts = {p.get_content_type(): p.get_content() for p in mail.iter_parts()}
            assert set(parts) == {"text/plain", "text/html"}
            assert "$1,120.00" in parts["text/plain"] and "sess-big" in parts["text/html"]

        records = await pool.fetch("SELECT value FROM bus_log WHERE topic = $1", TOPIC_ALERT)
        deliveries = [decode(bytes(r["value"])).data for r in records]
        assert all(isinstance(d, AlertDelivery) and d.outcome == "delivered" for d in deliveries)
        assert {d.channel for d in deliveries} == {"slack:platform-em", "teams:platform", "pagerduty:platform-oncall",
                                                   "webhook:finops-bi", "email:platform-em"}
    logged = repr(logs)
    assert PD_KEY not in logged and SIGNING not in logged and f":{rx.port}/" not in logged



async def test_email_authenticates_with_smtp_credentials_from_the_secrets_directory(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """SMTP user and password mounted as secret files are used to log in before the email is sent."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "smtp_username").write_text("alerter\n")
    (secrets / "smtp_password").write_text("correct horse\n")
    routes = "targets:\n  email:em: {to: em@platform.example}\nroutes:\n  - notify: [email:em]\n"
    with smtp_server(Login("alerter", "correct horse")) as (inbox, smtp_port):
        settings = settings_for(db_url, tmp_path, routes, smtp_port=smtp_port, secrets_file=secrets)
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(crossing())
            await eventually(lambda: size(inbox.to("em@platform.example")), what="the authenticated email")
    assert inbox.logins == [b"alerter"]
    assert await count(pool, "SELECT count(*) FROM alert_dead_letters") == 0
