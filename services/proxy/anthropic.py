"""Anthropic's Messages API on the gateway: the key Claude Code sends, the upstream's headers, Claude
Code's attribution, and errors in Anthropic's shape.

What the real CLI sends is in ``docs/claude-code.md``. In short: the virtual key comes as ``x-api-key``
(``ANTHROPIC_API_KEY``) or ``Authorization: Bearer`` (``ANTHROPIC_AUTH_TOKEN``); the session is the
``X-Claude-Code-Session-Id`` header (also ``session_id`` inside the JSON string ``metadata.user_id``);
the repo appears only in the system prompt (``Primary working directory: …``). A refusal must be a 429
with ``x-should-retry: false`` for the CLI to stop at once and show the message verbatim; any other
status is retried for minutes or shown as a generic error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from spendgate.proxy.attribution import Attribution
from spendgate.proxy.forwarding import upstream_headers
from spendgate.proxy.normalise import MAX_ERROR_CHARS, MAX_ID_CHARS, MAX_REPO_CHARS, clean, clean_text
from spendgate.proxy.stream_end import broken_stream_message

PATH_PREFIX = "/v1/messages"
ANTHROPIC_VERSION = "2023-06-01"
"""Sent upstream when the client named none (every Anthropic SDK and Claude Code name one)."""
CLAUDE_CODE = "claude-code"
SESSION_HEADER = "x-claude-code-session-id"
_WORKDIR_MARK = "Primary working directory: "
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
                429: "rate_limit_error", 529: "overloaded_error"}
_FINAL_STATUSES = frozenset({400, 401, 403, 404, 413, 415, 429})
"""Our own answers a retry cannot change: sent with ``x-should-retry: false`` (Claude Code would
otherwise retry a 401 or 429 ten times over three minutes)."""


def serves(path: str) -> bool:
    """Whether a raw request path (or an endpoint name) is one of Anthropic's routes."""
    return path == PATH_PREFIX or path.startswith((PATH_PREFIX + "/", PATH_PREFIX + "?"))


def virtual_key(headers: Mapping[str, str], raw_path: str) -> str | None:
    """The ``x-api-key`` a client sent on an Anthropic route (``Authorization: Bearer`` is read first by
    the handler; either works)."""
    if not serves(raw_path):
        return None
    return headers.get("x-api-key", "").strip() or None


def anthropic_headers(client: CIMultiDictProxy[str], upstream_key: str | None) -> CIMultiDict[str]:
    """What goes to Anthropic: the client's headers without its credentials (``x-api-key`` and
    ``Authorization`` both carry the virtual key), the gateway's key as ``x-api-key``, and the client's
    ``anthropic-version`` / ``anthropic-beta`` as sent."""
    out = upstream_headers(client, None)
    out.setdefault("anthropic-version", ANTHROPIC_VERSION)
    if upstream_key:
        out["x-api-key"] = upstream_key
    return out


class _Metadata(msgspec.Struct):
    user_id: Any = None


class _Body(msgspec.Struct):
    metadata: Any = None
    system: Any = None


_body_decoder = msgspec.json.Decoder(_Body)


def attribute(headers: Mapping[str, str], body: bytes) -> Attribution:
    """Session, repo and client of a Messages request (Claude Code's, or any Anthropic client's)."""
    try:
        doc = _body_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        doc = _Body()
    session = headers.get(SESSION_HEADER) or _user_id_session(doc.metadata) or headers.get("x-spendgate-session")
    agent = headers.get("user-agent", "")
    client = CLAUDE_CODE if agent.startswith("claude-cli/") else headers.get("x-spendgate-client")
    return Attribution(session_id=clean(session, MAX_ID_CHARS), turn_id=clean(headers.get("x-spendgate-turn"),
                                                                             MAX_ID_CHARS),
                       repo=clean(_working_directory(doc.system), MAX_REPO_CHARS), client=clean(client, MAX_ID_CHARS))


def _user_id_session(metadata: Any) -> str | None:
    """``session_id`` inside ``metadata.user_id``, a JSON string in Claude Code's requests."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id.startswith("{"):
        return None
    try:
        inner = msgspec.json.decode(user_id)
    except (msgspec.DecodeError, RecursionError):
        return None
    session = inner.get("session_id") if isinstance(inner, dict) else None
    return session if isinstance(session, str) else None


def _working_directory(system: Any) -> str | None:
    texts = [system] if isinstance(system, str) else [
        b.get("text") for b in system if isinstance(b, dict)] if isinstance(system, list) else []
    for text in texts:
        if isinstance(text, str) and (at := text.find(_WORKDIR_MARK)) >= 0:
            line = text[at + len(_WORKDIR_MARK):].split("\n", 1)[0].strip()
            return line or None
    return None


_enc = msgspec.json.Encoder()


def error_body(status: int, message: str, extra: Mapping[str, Any] | None = None) -> bytes:
    error = {"type": _ERROR_TYPES.get(status, "api_error"), "message": clean_text(message, MAX_ERROR_CHARS),
             **(extra or {})}
    return _enc.encode({"type": "error", "error": error})


def translate_error(response: web.StreamResponse) -> web.StreamResponse:
    """The gateway's own OpenAI-format error (``{"error": {...}}``) in Anthropic's shape; anything else
    (a success, an error Anthropic itself sent, a stream already under way) as it is.

    The error keeps its extra fields (a budget refusal's scope, spend and reset time); a refusal that
    names its reset gets ``retry-after`` in seconds to it (Claude Code gives up at once past 60)."""
    if response.prepared or response.status < 400 or not isinstance(response, web.Response):
        return response
    body = response.body
    if not isinstance(body, bytes) or not body.startswith(b'{"error"'):
        return response
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return response
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or doc.get("type") == "error":
        return response
    message = str(error.get("message") or "spendgate refused the request.")
    extra = {k: v for k, v in error.items() if k not in ("message", "type", "param") and v is not None}
    response.body = error_body(response.status, message, extra)
    response.content_type = "application/json"
    if response.status in _FINAL_STATUSES:
        response.headers["x-should-retry"] = "false"
    resets_at = error.get("resets_at")
    if response.status == 429 and isinstance(resets_at, int) and resets_at > time.time():
        response.headers.setdefault("retry-after", str(int(resets_at - time.time()) + 1))
    response.headers.pop("WWW-Authenticate", None)
    return response


def terminal_error_event(reason: str) -> bytes:
    """The ``error`` event that ends a Messages stream the upstream broke off."""
    return b"event: error\ndata: " + error_body(500, broken_stream_message(reason)) + b"\n\n"
