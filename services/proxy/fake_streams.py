"""Bodies and SSE events in OpenAI's shapes, for the fake upstream (Responses and Chat Completions)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import msgspec

Usage4 = tuple[int, int, int, int]
_enc = msgspec.json.Encoder()


def _total(i: int, o: object) -> object:
    """``total_tokens``; the reported count as is when a usage-anomaly scenario made it something odd."""
    return i + o if type(o) is int else o


def responses_usage(u: Usage4) -> dict[str, Any]:
    i, c, o, r = u
    return {"input_tokens": i, "input_tokens_details": {"cached_tokens": c}, "output_tokens": o,
            "output_tokens_details": {"reasoning_tokens": r}, "total_tokens": _total(i, o)}


def chat_usage(u: Usage4) -> dict[str, Any]:
    i, c, o, r = u
    return {"prompt_tokens": i, "completion_tokens": o, "total_tokens": _total(i, o),
            "prompt_tokens_details": {"cached_tokens": c}, "completion_tokens_details": {"reasoning_tokens": r}}


def _item(seq: int, text: str, tool: bool, *, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if tool:
        return {"id": f"fc_{seq}", "type": "function_call", "status": status, "name": "exec_command",
                "call_id": f"call_{seq}", "arguments": text if done else ""}
    return {"id": f"msg_{seq}", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}] if done else []}


def _response(seq: int, model: str, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": f"resp_{seq}", "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "output": output, "usage": usage, "error": None, "incomplete_details": None}


def responses_body(seq: int, model: str, text: str, u: Usage4, tool: bool) -> dict[str, Any]:
    return _response(seq, model, "completed", [_item(seq, text, tool, done=True)], responses_usage(u))


def _sse(kind: str, doc: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _enc.encode(doc) + b"\n\n"


def _split(text: str, parts: int) -> list[str]:
    words = text.split(" ")
    if len(words) >= parts:
        per = -(-len(words) // parts)
        return [" ".join(words[i : i + per]) + (" " if i + per < len(words) else "")
                for i in range(0, len(words), per)]
    size = -(-len(text) // max(parts, 1))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def responses_events(seq: int, model: str, text: str, u: Usage4, tool: bool, chunks: int, *,
                     failed: bool = False) -> Iterator[bytes]:
    n = itertools.count()
    yield _sse("response.created", {"type": "response.created", "sequence_number": next(n),
                                    "response": _response(seq, model, "in_progress", [], None)})
    yield _sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(n),
                                              "output_index": 0, "item": _item(seq, text, tool, done=False)})
    item_id = f"fc_{seq}" if tool else f"msg_{seq}"
    delta_kind = "response.function_call_arguments.delta" if tool else "response.output_text.delta"
    if not tool:
        yield _sse("response.content_part.added", {
            "type": "response.content_part.added", "sequence_number": next(n), "item_id": item_id,
            "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
    for piece in _split(text, chunks):
        yield _sse(delta_kind, {"type": delta_kind, "sequence_number": next(n), "item_id": item_id,
                                "output_index": 0, "content_index": 0, "delta": piece})
    if failed:
        error = {"code": "server_error", "message": "fake upstream scripted response.failed"}
        resp = _response(seq, model, "failed", [], responses_usage(u))
        resp["error"] = error
        yield _sse("response.failed", {"type": "response.failed", "sequence_number": next(n), "response": resp})
        return
    if tool:
        yield _sse("response.function_call_arguments.done", {
            "type": "response.function_call_arguments.done", "sequence_number": next(n), "item_id": item_id,
            "output_index": 0, "arguments": text})
    else:
        yield _sse("response.output_text.done", {
            "type": "response.output_text.done", "sequence_number": next(n), "item_id": item_id,
            "output_index": 0, "content_index": 0, "text": text})
        yield _sse("response.content_part.done", {
            "type": "response.content_part.done", "sequence_number": next(n), "item_id": item_id,
            "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}})
    done_item = _item(seq, text, tool, done=True)
    yield _sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(n),
                                             "output_index": 0, "item": done_item})
    yield _sse("response.completed", {"type": "response.completed", "sequence_number": next(n),
                                      "response": _response(seq, model, "completed", [done_item],
                                                            responses_usage(u))})


def chat_body(seq: int, model: str, text: str, u: Usage4) -> dict[str, Any]:
    return {"id": f"chatcmpl-{seq}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": chat_usage(u)}


def chat_chunks(seq: int, model: str, text: str, u: Usage4, include_usage: bool, chunks: int) -> Iterator[bytes]:
    created = int(time.time())

    def chunk(choices: list[Any], usage: dict[str, Any] | None = None) -> bytes:
        doc: dict[str, Any] = {"id": f"chatcmpl-{seq}", "object": "chat.completion.chunk", "created": created,
                               "model": model, "choices": choices}
        if include_usage:
            doc["usage"] = usage
        return b"data: " + _enc.encode(doc) + b"\n\n"

    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for piece in _split(text, chunks):
        yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if include_usage:
        yield chunk([], chat_usage(u))
    yield b"data: [DONE]\n\n"

