"""Bodies and SSE events in Anthropic's Messages shapes, for the fake upstream.

Shapes from Anthropic's API reference ("Messages", "Streaming Messages"): a stream is ``message_start``
(the message with its input usage and ``output_tokens`` 1), per content block ``content_block_start`` /
``content_block_delta`` (``text_delta`` or, for a ``tool_use`` block, ``input_json_delta``) /
``content_block_stop``, then ``message_delta`` (``stop_reason`` and the cumulative ``output_tokens``)
and ``message_stop``. Errors are ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

AnthropicUsage = tuple[int, int, int, int, int]
"""All input tokens, cache reads, 5-minute cache writes, 1-hour cache writes, output tokens."""
TOOL_NAME = "Bash"
"""Claude Code's shell tool: ``{"command": ..., "description": ...}``."""
_enc = msgspec.json.Encoder()


def split_usage(body_bytes: int, cached_share: float) -> tuple[int, int, int, int]:
    """Input of a request of ``body_bytes``: ~4 bytes a token; ``cached_share`` of it read from the cache
    (64-token blocks), a half of the rest written to it (a quarter of that for an hour)."""
    total = max(1, body_bytes // 4)
    read = int(total * cached_share) // 64 * 64
    written = (total - read) // 2
    write_1h = written // 4
    return total, read, written - write_1h, write_1h


def usage_block(u: AnthropicUsage, *, output: int | None = None) -> dict[str, Any]:
    total, read, w5, w1, out = u
    return {"input_tokens": total - read - w5 - w1, "cache_creation_input_tokens": w5 + w1,
            "cache_read_input_tokens": read, "output_tokens": out if output is None else output,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
            "service_tier": "standard"}


def _content(seq: int, text: str, tool_command: str | None) -> dict[str, Any]:
    if tool_command is not None:
        return {"type": "tool_use", "id": f"toolu_fake_{seq:08d}", "name": TOOL_NAME,
                "input": {"command": tool_command, "description": "Run the command"}}
    return {"type": "text", "text": text}


def message_body(seq: int, model: str, text: str, usage: AnthropicUsage, tool_command: str | None) -> dict[str, Any]:
    return {"id": f"msg_fake_{seq:08d}", "type": "message", "role": "assistant", "model": model,
            "content": [_content(seq, text, tool_command)],
            "stop_reason": "tool_use" if tool_command is not None else "end_turn", "stop_sequence": None,
            "usage": usage_block(usage)}


def _event(name: str, doc: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _enc.encode({"type": name, **doc}) + b"\n\n"


def message_events(seq: int, model: str, text: str, usage: AnthropicUsage, tool_command: str | None,
                   chunks: int) -> Iterator[bytes]:
    start = message_body(seq, model, text, usage, tool_command)
    start.update(content=[], stop_reason=None, usage=usage_block(usage, output=1))
    yield _event("message_start", {"message": start})
    if tool_command is not None:
        block = _content(seq, text, tool_command)
        yield _event("content_block_start", {"index": 0, "content_block": {**block, "input": {}}})
        args = _enc.encode(block["input"]).decode()
        pieces = [args[i:i + max(1, len(args) // chunks)] for i in range(0, len(args), max(1, len(args) // chunks))]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    else:
        yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        words = text.split(" ")
        deltas = [{"type": "text_delta", "text": w if i == 0 else " " + w} for i, w in enumerate(words)]
    for delta in deltas:
        yield _event("content_block_delta", {"index": 0, "delta": delta})
    yield _event("content_block_stop", {"index": 0})
    yield _event("message_delta", {"delta": {"stop_reason": "tool_use" if tool_command is not None else "end_turn",
                                             "stop_sequence": None}, "usage": {"output_tokens": usage[4]}})
    yield _event("message_stop", {})


def error_body(status: int, message: str) -> bytes:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
            529: "overloaded_error"}.get(status, "api_error")
    return _enc.encode({"type": "error", "error": {"type": kind, "message": message}})


def tool_result_text(body: dict[str, Any]) -> str | None:
    """The text of the ``tool_result`` in the last user message (what the client's tool printed)."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                return inner
            if isinstance(inner, list):
                return "".join(b.get("text", "") for b in inner if isinstance(b, dict))
    return None
