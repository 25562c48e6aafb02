"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received"): a
message whose attachment is an Adaptive Card 1.4 (title, summary, FactSet, top sessions)."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from spendgate.alerter.channels import post_json, session_text
from spendgate.domain.alerts import Action, Message

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
_COLOR = {"info": "Default", "warning": "Warning", "error": "Attention", "critical": "Attention"}


def _text(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **extra}


def card(message: Message) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _text(message.title, weight="Bolder", size="Medium", style="heading", color=_COLOR[message.severity]),
        _text(message.summary),
    ]
    if message.facts:
        body.append({"type": "FactSet", "facts": [{"title": f.label, "value": f.value} for f in message.facts]})
    if message.sessions:
        body.append(_text("Top sessions by cost this period", weight="Bolder", separator=True))
        body.extend(_text(f"{i}. {session_text(s)}", spacing="None") for i, s in enumerate(message.sessions, 1))
    if message.lines:
        body.append(_text("\n\n".join(message.lines), separator=True))
    body.append(_text(f"spendgate · {message.scope} · alert {message.alert_id}", isSubtle=True, size="Small"))
    return {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4", "body": body}


def payload(message: Message) -> dict[str, Any]:
    return {"type": "message", "attachments": [
        {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card(message)}
    ]}


class TeamsChannel:
    def __init__(self, name: str, url: str, session: aiohttp.ClientSession, *, timeout_s: float) -> None:
        self.name, self._url, self._session, self._timeout_s = name, url, session, timeout_s

    def __repr__(self) -> str:
        return f"TeamsChannel({self.name!r})"

    async def send(self, message: Message, action: Action) -> int | None:
        return await post_json(self._session, self._url, msgspec.json.encode(payload(message)),
                               timeout_s=self._timeout_s)
