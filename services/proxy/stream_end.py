"""How a relayed stream ends when the upstream does not end it properly, and which answers are streams.

A stream that the upstream breaks off (connection dropped, EOF before its terminal event) or stalls
past the read timeout must not look like a clean answer: the client gets a terminal error event before
the end of the body. For the Responses API that is ``response.failed`` with ``error.code``
``server_error`` (Codex treats it as a stream error and retries up to ``stream_max_retries``, the same
as a stream that breaks without ``response.completed``); for Chat Completions it is an error chunk
``data: {"error": {...}}`` as OpenAI sends mid-stream (the OpenAI SDKs raise it).

Whether an answer is a stream is not taken from the upstream's ``Content-Type`` alone: a stream
labelled ``text/plain`` is still a stream when the request asked for one or its body starts like SSE,
so its usage is read and the usage chunk the proxy asked for is still stripped.
"""

from __future__ import annotations

import time

import msgspec

STREAM_BROKEN_CODE = "server_error"
_SSE_STARTS = (b"event:", b"data:", b":", b"id:", b"retry:")
_enc = msgspec.json.Encoder()


def relays_as_stream(*, status: int, content_type: str, requested_stream: bool) -> bool:
    """Relay (and tap) the answer as a stream: SSE by its label, or asked for and not labelled JSON."""
    if status >= 400:
        return False
    if "text/event-stream" in content_type:
        return True
    return requested_stream and "json" not in content_type


def looks_like_sse(data: bytes) -> bool:
    """A body that starts like server-sent events, whatever it was labelled."""
    return data.lstrip().startswith(_SSE_STARTS)


def broken_stream_message(reason: str) -> str:
    return f"spendgate: the upstream {reason}; the answer is incomplete. Retry the request."


def terminal_error_event(endpoint: str, reason: str) -> bytes:
    """The event that tells the client the stream broke (``reason``: what the upstream did)."""
    message = broken_stream_message(reason)
    if endpoint.endswith("/chat/completions"):
        error = {"message": message, "type": "server_error", "code": STREAM_BROKEN_CODE, "param": None}
        return b"data: " + _enc.encode({"error": error}) + b"\n\n"
    response = {
        "id": f"resp_spendgate_{time.time_ns():x}", "object": "response", "created_at": int(time.time()),
        "status": "failed", "output": [], "usage": None, "incomplete_details": None,
        "error": {"code": STREAM_BROKEN_CODE, "message": message},
    }
    doc = {"type": "response.failed", "response": response}
    return b"event: response.failed\ndata: " + _enc.encode(doc) + b"\n\n"
