"""What crosses the gateway: header filtering both ways, the budget headers, the upstream URL, the shared
client session.

Model headers after a downgrade: Codex reads ``openai-model`` / ``x-openai-model`` and, when they name a
model other than the one it asked for, warns the developer that their account was "flagged ...
rerouted" (CODEX.md). The gateway drops both headers from a downgraded answer rather than rewriting
them to the requested model: a rewrite would tell every client that the flagship answered when it did
not. The body's ``model`` still names the model that answered, and ``x-spendgate-stage: downgrade``
says why (docs/enforcement.md, "Response headers").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from spendgate.domain.money import usd_str

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
})
_NOT_FORWARDED_UP = HOP_BY_HOP | {
    "host", "content-length", "authorization", "x-api-key", "accept-encoding", "api-key", "openai-organization",
    "openai-project", "cookie", "content-encoding",
}
_NOT_RELAYED_DOWN = HOP_BY_HOP | {"content-length", "content-encoding", "set-cookie", "server", "date"}
MODEL_HEADERS = ("openai-model", "x-openai-model")
STAGE_HEADER = "x-spendgate-stage"
REMAINING_HEADER = "x-spendgate-budget-remaining-usd"


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    value = headers.get("connection", "")
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def upstream_headers(client: CIMultiDictProxy[str], upstream_key: str | None) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones and its credentials, plus the upstream key.

    ``Authorization`` is replaced, never appended: the virtual key never leaves the gateway.
    """
    drop = _NOT_FORWARDED_UP | _connection_tokens(client)
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in client.items() if k.lower() not in drop and not k.lower().startswith("x-spendgate-")
    )
    out["Accept-Encoding"] = "identity"  # the tap reads the stream as it passes
    if upstream_key:
        out["Authorization"] = f"Bearer {upstream_key}"
    return out


def client_headers(upstream: CIMultiDictProxy[str], *, drop_model_headers: bool = False,
                   extra_drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The upstream's response headers minus hop-by-hop ones, any ``x-spendgate-*`` (ours to set), and
    the model headers after a rewrite."""
    drop = _NOT_RELAYED_DOWN | _connection_tokens(upstream) | {h.lower() for h in extra_drop}
    if drop_model_headers:
        drop |= set(MODEL_HEADERS)
    return CIMultiDict((k, v) for k, v in upstream.items()
                       if k.lower() not in drop and not k.lower().startswith("x-spendgate-"))


def budget_headers(stage: str, remaining_micros: int | None) -> list[tuple[str, str]]:
    """What any client can read of its budget on every response after the decision: the stage
    (``ok``, ``alert``, ``downgrade``, ``pause``) and, when a budget applies, what is left of the tightest
    one in decimal USD (``usd_str``: ``"0.012345"``, negative past it)."""
    headers = [(STAGE_HEADER, stage)]
    if remaining_micros is not None:
        headers.append((REMAINING_HEADER, usd_str(remaining_micros)))
    return headers


def upstream_url(base: str, upstream_path: str, query: str) -> URL:
    """The route table's ``upstream_path`` (``/responses``, ids validated) under the upstream base:
    ``https://api.openai.com/v1`` + ``/responses`` → ``https://api.openai.com/v1/responses``. Built as an
    already-encoded URL so nothing downstream decodes or folds it again; the query is passed as sent."""
    url = base.rstrip("/") + upstream_path
    return URL(f"{url}?{query}" if query else url, encoded=True)


def create_client_session(*, connect_timeout_s: float, read_timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
    # No cookie jar: the session is shared by every virtual key, so a cookie set for one developer's
    # request must never ride on another's (and filtering an empty jar per request is pure overhead).
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                 skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar())
