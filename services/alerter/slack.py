"""Slack incoming webhook: a Block Kit message (header, summary, fields, top sessions, context)."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from spendgate.alerter.channels import post_json, session_text
from spendgate.domain.alerts import Action, Message

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_FIELDS = 10


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION_CHARS]}}


def _chunks(lines: list[str]) -> list[str]:
    out, current = [], ""
    for line in lines:
        line = line[:MAX_SECTION_CHARS]
        if current and len(current) + len(line) + 1 > MAX_SECTION_CHARS:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def payload(message: Message) -> dict[str, Any]:
    """The webhook body: ``text`` is the notification fallback, ``blocks`` the Block Kit layout."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150], "emoji": True}},
        _section(message.summary),
    ]
    if message.facts:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{f.label}*\n{f.value}"[:2000]} for f in message.facts[:MAX_FIELDS]
        ]})
    if message.sessions:
        blocks.append({"type": "divider"})
        lines = ["*Top sessions by cost this period*"]
        lines += [f"{i}. `{session_text(s)}`" for i, s in enumerate(message.sessions, 1)]
        blocks.extend(_section(c) for c in _chunks(lines))
    if message.lines:
        blocks.append({"type": "divider"})
        blocks.extend(_section(c) for c in _chunks(message.lines))
    blocks = blocks[: MAX_BLOCKS - 1]
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"spendgate · {message.scope} · alert {message.alert_id}"}
    ]})
    return {"text": message.summary[:MAX_SECTION_CHARS], "blocks": blocks}


class SlackChannel:
    def __init__(self, name: str, url: str, session: aiohttp.ClientSession, *, timeout_s: float) -> None:
        self.name, self._url, self._session, self._timeout_s = name, url, session, timeout_s

    def __repr__(self) -> str:
        return f"SlackChannel({self.name!r})"

    async def send(self, message: Message, action: Action) -> int | None:
        return await post_json(self._session, self._url, msgspec.json.encode(payload(message)),
                               timeout_s=self._timeout_s)
