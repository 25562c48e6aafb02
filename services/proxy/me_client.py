"""``spendgate me``'s side of ``GET /v1/spendgate/me``: ask a gateway, with a virtual key, what the key's
holder has left, and print it as a table, CSV or JSON.

Every failure a person can meet is one :class:`~spendgate.domain.errors.SpendgateError` line: no gateway
at the address, a key the gateway refuses, a server that is not a spendgate proxy (an OpenAI endpoint,
another gateway), an answer too large or too slow. The key is sent only when it looks like a spendgate
virtual key, so a real provider key in ``OPENAI_API_KEY`` is never sent anywhere by this command.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import msgspec

from spendgate.core.tables import Field, field, human, render, table
from spendgate.domain.errors import ConfigError, SpendgateError
from spendgate.proxy.me import OBJECT, Me
from spendgate.store.keys.store import looks_like_key

TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 1 << 20

BUDGET_FIELDS: list[Field] = [
    field("scope"), field("model"), field("period"), field("start", "date", header=None),
    field("spent_micros", "money", "spent"), field("budget_micros", "money", "budget"),
    field("remaining_micros", "money", "left"), field("stage"), field("resets_at", "time", "resets"),
]
SESSION_FIELDS: list[Field] = [
    field("session_id", header="session"), field("repo"), field("cost_micros", "money", "cost"),
    field("requests", "int"),
]


def me_url(base_url: str) -> str:
    """``…/v1/spendgate/me`` under a gateway's base URL (written with or without its ``/v1``)."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the base URL must be the gateway's http(s) URL, such as http://127.0.0.1:8080/v1, "
                          f"not {base_url[:200]!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}/spendgate/me"


async def fetch_me(base_url: str, key: str, *, sessions: int, timeout_s: float = TIMEOUT_S) -> Me:
    """The key holder's document from the gateway at ``base_url``; a one-line error otherwise."""
    url = me_url(base_url)
    if not looks_like_key(key.strip()):
        raise ConfigError("the key is not a spendgate virtual key (sk-sg-…): pass yours with --key or "
                          "OPENAI_API_KEY")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http, http.get(
                url, params={"sessions": str(sessions)}, headers={"Authorization": f"Bearer {key.strip()}"},
                allow_redirects=False) as resp:
            raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
            status = resp.status
    except (aiohttp.ClientError, OSError) as exc:
        raise SpendgateError(f"cannot reach the gateway at {url}: {exc.__class__.__name__}: {exc}") from None
    except TimeoutError:
        raise SpendgateError(f"the gateway at {url} did not answer within {timeout_s:g} s") from None
    return _decoded(url, status, raw)


def _decoded(url: str, status: int, raw: bytes) -> Me:
    if len(raw) > MAX_ANSWER_BYTES:
        raise SpendgateError(f"{url} answered more than {MAX_ANSWER_BYTES} bytes: not a spendgate gateway")
    if status == 401:
        raise SpendgateError(f"the gateway refused the key: {_message(raw) or 'unauthorised'}")
    if status == 200:
        try:
            me = msgspec.json.decode(raw, type=Me)
        except msgspec.DecodeError:
            me = None
        if me is not None and me.object == OBJECT:
            return me
    elif status in (400, 429, 503) and _message(raw):
        raise SpendgateError(f"the gateway answered {status}: {_message(raw)}")
    raise SpendgateError(f"{url} is not a spendgate gateway (it answered {status} without spendgate's "
                         "self-service document); check --base-url or OPENAI_BASE_URL")


def _message(raw: bytes) -> str | None:
    try:
        message = msgspec.json.decode(raw)["error"]["message"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return None
    return str(message)[:300].replace("\n", " ") if message else None


def show(me: Me, fmt: str) -> str:
    """JSON: the whole document; CSV: the budget lines; table: who, today, the budgets and the sessions."""
    if fmt != "table":
        return render(fmt, BUDGET_FIELDS, me.budgets, document=me)
    who = f"{me.developer}  team {me.team}" + (f"  cost center {me.cost_center}" if me.cost_center else "")
    parts = [f"{who}  key {me.key_prefix}",
             f"today {me.today.date} ({me.today.timezone}): {human(me.today.cost_micros, 'money')}", ""]
    parts.append(table(BUDGET_FIELDS, me.budgets) if me.budgets else "no budget applies to your requests")
    if me.top_sessions:
        parts += ["", "your costliest sessions this month", table(SESSION_FIELDS, me.top_sessions)]
    return "\n".join(parts)
