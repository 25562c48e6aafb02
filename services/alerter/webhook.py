"""Generic webhook: the message as JSON, signed with HMAC-SHA256.

Headers: ``X-Spendgate-Timestamp`` (Unix seconds) and ``X-Spendgate-Signature: v1=<hex>``, the
HMAC-SHA256 of ``"<timestamp>.<raw body>"`` under the shared signing secret. Receivers recompute it,
compare in constant time and reject stale timestamps (replay protection)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from spendgate.alerter.channels import plain_text, post_json
from spendgate.domain.alerts import Action, Message

TIMESTAMP_HEADER = "X-Spendgate-Timestamp"
SIGNATURE_HEADER = "X-Spendgate-Signature"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, header: str, *, now_s: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: a matching signature over a recent timestamp.

    Public API on purpose (nothing in spendgate calls it): the reference check for webhook receivers,
    documented in docs/alerts.md and exercised by the tests against what the channel sends."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def payload(message: Message, action: Action) -> dict[str, Any]:
    return {"type": "spendgate.alert", "action": action, "text": plain_text(message),
            "alert": msgspec.to_builtins(message)}


class WebhookChannel:
    def __init__(self, name: str, url: str, signing_secret: str, session: aiohttp.ClientSession, *,
                 timeout_s: float, clock_s: Callable[[], float] = time.time) -> None:
        self.name, self._url, self._secret, self._session = name, url, signing_secret, session
        self._timeout_s, self._clock_s = timeout_s, clock_s

    def __repr__(self) -> str:
        return f"WebhookChannel({self.name!r})"

    async def send(self, message: Message, action: Action) -> int | None:
        body = msgspec.json.encode(payload(message, action))
        ts = str(int(self._clock_s()))
        headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(self._secret, ts, body)}
        return await post_json(self._session, self._url, body, timeout_s=self._timeout_s, headers=headers)
