"""PagerDuty Events API v2: ``trigger`` when an alert fires, ``resolve`` when its period resets, both
with the alert's stable ``dedup_key`` (one incident per scope and period, however often delivered)."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from spendgate.alerter.channels import post_json
from spendgate.domain.alerts import Action, Message

MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


def payload(message: Message, action: Action, routing_key: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "routing_key": routing_key, "event_action": action, "dedup_key": message.incident_key[:MAX_DEDUP_KEY],
    }
    if action == "resolve":
        return base
    details: dict[str, Any] = {f.label: f.value for f in message.facts}
    if message.sessions:
        details["top_sessions"] = [msgspec.to_builtins(s) for s in message.sessions]
    return base | {
        "client": "spendgate",
        "payload": {
            "summary": message.summary[:MAX_SUMMARY],
            "source": "spendgate",
            "severity": message.severity,
            "timestamp": message.created_at.isoformat(),
            "component": message.scope,
            "group": message.team or message.cost_center or "org",
            "class": message.kind,
            "custom_details": details,
        },
    }


class PagerDutyChannel:
    def __init__(self, name: str, url: str, routing_key: str, session: aiohttp.ClientSession, *,
                 timeout_s: float) -> None:
        self.name, self._url, self._key, self._session = name, url, routing_key, session
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"PagerDutyChannel({self.name!r})"

    async def send(self, message: Message, action: Action) -> int | None:
        body = msgspec.json.encode(payload(message, action, self._key))
        return await post_json(self._session, self._url, body, timeout_s=self._timeout_s)
