"""The channel port and the HTTP plumbing the webhook channels share.

A channel sends one rendered message to one target. Failures become :class:`DeliveryError` with a
``retriable`` flag, the HTTP status and any ``Retry-After``; its text never contains the target's URL
or credentials, which are secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from spendgate.domain.alerts import Action, Message, SessionLine
from spendgate.domain.errors import SpendgateError
from spendgate.domain.money import format_usd


class DeliveryError(SpendgateError):
    """A delivery attempt failed; ``retriable`` says whether trying again can help."""

    retriable = True

    def __init__(self, message: str, *, retriable: bool = True, http_status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.http_status = http_status
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    name: str

    async def send(self, message: Message, action: Action) -> int | None:
        """Deliver; returns the receiver's HTTP status (None for non-HTTP channels)."""
        ...


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _redact(text: str, url: str) -> str:
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if secret and secret != "/":
            text = text.replace(secret, "…")
    return text


async def post_json(session: aiohttp.ClientSession, url: str, body: bytes, *, timeout_s: float,
                    headers: Mapping[str, str] | None = None) -> int:
    """POST a JSON body; the status on 2xx, else a :class:`DeliveryError` (5xx, 408, 429 retriable)."""
    all_headers = {"Content-Type": "application/json", "User-Agent": "spendgate-alerter"}
    all_headers.update(headers or {})
    try:
        async with session.post(url, data=body, headers=all_headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return resp.status
            retriable = resp.status >= 500 or resp.status in (408, 429)
            raise DeliveryError(
                f"receiver answered HTTP {resp.status}", retriable=retriable, http_status=resp.status,
                retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = _redact(str(exc), url) or "timed out"
        raise DeliveryError(f"{type(exc).__name__}: {detail}", retriable=True) from exc


def session_text(s: SessionLine) -> str:
    repo = s.repo or "no repo"
    return f"{s.session_id} · {s.developer} · {repo} · {format_usd(s.cost_micros)} ({s.requests} requests)"


def plain_text(message: Message) -> str:
    """The message as plain text: for email, webhooks and logs-free fallbacks."""
    out = [message.title, "", message.summary, ""]
    out += [f"{f.label}: {f.value}" for f in message.facts]
    if message.sessions:
        out += ["", "Top sessions by cost this period:"]
        out += [f"  {i}. {session_text(s)}" for i, s in enumerate(message.sessions, 1)]
    if message.lines:
        out += ["", *message.lines]
    out += ["", f"spendgate alert {message.alert_id} · scope {message.scope}"]
    return "\n".join(out)
