"""Bedrock Converse answers in the OpenAI shape the client asked for (pure).

A ``converse`` answer (``output.message.content``, ``stopReason``, ``usage``) becomes a Responses body
(``output_text`` message and ``function_call`` items) or a Chat Completions body (``content`` and
``tool_calls``). A ``converse-stream`` answer, event by event (``messageStart``, ``contentBlockStart`` /
``Delta`` / ``Stop``, ``messageStop``, ``metadata``), becomes the Responses SSE events Codex reads
(``response.created``, ``response.output_item.added``, ``response.output_text.delta``,
``response.function_call_arguments.delta``, ... ``response.completed`` with usage) or Chat Completions
chunks (ending with the usage chunk when asked for, then ``[DONE]``). An exception event in the stream
becomes ``response.failed`` or an error chunk.

Usage: Converse's ``inputTokens`` counts only the input neither read from nor written to the prompt
cache; OpenAI's ``input_tokens`` counts all of it. So the client sees ``input_tokens`` = ``inputTokens``
+ ``cacheReadInputTokens`` + ``cacheWriteInputTokens``, the reads as ``cached_tokens`` and the writes as
``cache_write_tokens`` (the name Azure OpenAI uses in ``input_tokens_details``). The proxy meters the
Converse counts themselves (:func:`usage_from_converse`, with the writes split by lifetime from
``cacheDetails``), not the OpenAI-shaped copy: the generic OpenAI usage reader does not price cache writes.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec

from spendgate.proxy.bedrock_request import ConverseCall
from spendgate.proxy.normalise import MAX_ERROR_CHARS, clean_text, tokens
from spendgate.proxy.usage import ANOMALY, Usage

_enc = msgspec.json.Encoder()
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
           "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
           "model_context_window_exceeded": "length"}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _count(value: Any) -> int:
    """A reported count as an int (absurd values pass through: the usage reader flags them)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def openai_usage(usage: Any, api: str) -> dict[str, Any] | None:
    """Converse ``usage`` as OpenAI's usage block (``api``: ``responses`` or ``chat``); None without one."""
    if not isinstance(usage, dict):
        return None
    read, written = _count(usage.get("cacheReadInputTokens")), _count(usage.get("cacheWriteInputTokens"))
    total_in = _count(usage.get("inputTokens")) + read + written
    out = _count(usage.get("outputTokens"))
    if api == "chat":
        return {"prompt_tokens": total_in, "completion_tokens": out, "total_tokens": total_in + out,
                "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
                "completion_tokens_details": {"reasoning_tokens": 0}}
    return {"input_tokens": total_in, "input_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": total_in + out}


def usage_from_converse(usage: Any) -> Usage | None:
    """Converse ``usage`` as the proxy meters it: every input token in ``input_tokens``, the reads in
    ``cached_tokens``, the writes as 5-minute or (per ``cacheDetails``) 1-hour cache writes; an
    impossible count is an anomaly (the proxy meters its estimate)."""
    if not isinstance(usage, dict):
        return None
    counts = [tokens(usage.get(name)) for name in (
        "inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens", "outputTokens")]
    details = usage.get("cacheDetails")
    hour = [tokens(d.get("inputTokens")) for d in details if isinstance(d, dict) and d.get("ttl") == "1h"] \
        if isinstance(details, list) else []
    if None in counts or None in hour:
        return ANOMALY
    plain, read, written, output = (int(c or 0) for c in counts)
    write_1h = min(written, sum(int(h or 0) for h in hour))
    return Usage(plain + read + written, read, output, 0, cache_write_5m_tokens=written - write_1h,
                 cache_write_1h_tokens=write_1h)


def finish_reason(stop_reason: Any) -> str:
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _arguments(value: Any) -> str:
    return _enc.encode(value if isinstance(value, dict) else {}).decode()


def answer_body(call: ConverseCall, doc: Any, response_id: str) -> bytes:
    """A ``converse`` answer (decoded JSON) as the client's non-streamed OpenAI answer."""
    doc = doc if isinstance(doc, dict) else {}
    output = doc.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    blocks = message.get("content") if isinstance(message, dict) else None
    texts: list[str] = []
    calls: list[tuple[str, str, str]] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, dict):
            calls.append((str(use.get("toolUseId") or ""), str(use.get("name") or ""), _arguments(use.get("input"))))
    finish = finish_reason(doc.get("stopReason"))
    usage = openai_usage(doc.get("usage"), call.api)
    if call.api == "chat":
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
        if calls:
            msg["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                                 for i, n, a in calls]
        return _enc.encode({"id": f"chatcmpl-{response_id}", "object": "chat.completion", "created": int(time.time()),
                            "model": call.model, "choices": [{"index": 0, "message": msg, "finish_reason": finish,
                                                              "logprobs": None}], "usage": usage})
    items: list[dict[str, Any]] = []
    if texts:
        items.append(_message_item(f"msg_{response_id}_0", "".join(texts), done=True))
    for n, (call_id, name, args) in enumerate(calls):
        items.append(_call_item(f"fc_{response_id}_{n}", call_id, name, args, done=True))
    return _enc.encode(_response(response_id, call.model, _status(finish), items, usage, finish))


def _status(finish: str) -> str:
    return "incomplete" if finish in _INCOMPLETE else "completed"


def _response(response_id: str, model: str, status: str, output: list[Any], usage: dict[str, Any] | None,
              finish: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    incomplete = {"reason": _INCOMPLETE[finish]} if status == "incomplete" and finish in _INCOMPLETE else None
    return {"id": f"resp_{response_id}", "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "output": output, "usage": usage, "error": error, "incomplete_details": incomplete}


def _message_item(item_id: str, text: str, *, done: bool) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": "completed" if done else "in_progress", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}] if done else []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, *, done: bool) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": "completed" if done else "in_progress",
            "call_id": call_id, "name": name, "arguments": arguments}


def _sse(doc: dict[str, Any]) -> bytes:
    return b"event: " + str(doc["type"]).encode() + b"\ndata: " + _enc.encode(doc) + b"\n\n"


class _Item:
    """One output item of a streamed answer: the Converse content block it comes from, what it holds."""

    def __init__(self, output_index: int, item_id: str, call_id: str | None = None, name: str = "") -> None:
        self.output_index, self.item_id, self.call_id, self.name = output_index, item_id, call_id, name
        self.parts: list[str] = []

    def done(self) -> dict[str, Any]:
        text = "".join(self.parts)
        if self.call_id is None:
            return _message_item(self.item_id, text, done=True)
        return _call_item(self.item_id, self.call_id, self.name, text or "{}", done=True)


class StreamTranslator:
    """Feed it the Converse stream's events in order; it returns the bytes of the OpenAI stream to relay.

    :meth:`event` takes each event (its ``:event-type`` and decoded payload), :meth:`exception` an exception
    message of the stream, :meth:`close` the end of the stream (what is still owed: the chat ``[DONE]``
    after a ``messageStop`` whose ``metadata`` never came; nothing if the stream broke before its end,
    so the proxy ends it with its own error event).
    """

    def __init__(self, call: ConverseCall, response_id: str) -> None:
        self.call, self.response_id = call, response_id
        self._seq = itertools.count()
        self._items: dict[int, _Item] = {}
        self._finished: list[_Item] = []
        self._outputs = itertools.count()
        self._tool_calls = itertools.count()
        self._finish: str | None = None
        self._started = False
        self._ended = False
        self._created = int(time.time())
        self.usage: Usage | None = None
        """The stream's usage as the proxy meters it, once its ``metadata`` event went by."""

    def event(self, kind: str, payload: Any) -> bytes:
        if self._ended or not isinstance(payload, dict):
            return b""
        if kind == "metadata":
            self.usage = usage_from_converse(payload.get("usage"))
        if self.call.api == "chat":
            return self._chat(kind, payload)
        return self._responses(kind, payload)

    def exception(self, kind: str, message: str) -> bytes:
        """An exception message in the stream (``throttlingException``, ``modelStreamErrorException`` …)."""
        if self._ended:
            return b""
        self._ended = True
        text = clean_text(f"bedrock: {kind}: {message}", MAX_ERROR_CHARS)
        if self.call.api == "chat":
            error = {"message": text, "type": "server_error", "code": kind, "param": None}
            # named "error" so the proxy's tap ends the request as failed; the OpenAI SDKs raise it either way
            return b"event: error\ndata: " + _enc.encode({"error": error}) + b"\n\n"
        response = _response(self.response_id, self.call.model, "failed", [i.done() for i in self._finished], None,
                             error={"code": kind, "message": text})
        return self._head() + _sse({"type": "response.failed", "sequence_number": next(self._seq),
                                    "response": response})

    def close(self) -> bytes:
        if self._ended or self._finish is None:
            return b""
        self._ended = True
        if self.call.api == "chat":
            return b"data: [DONE]\n\n"
        return self._completed(None)

    # Responses ---------------------------------------------------------------------------------------

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = _response(self.response_id, self.call.model, "in_progress", [], None)
        return _sse({"type": "response.created", "sequence_number": next(self._seq), "response": response}) + \
            _sse({"type": "response.in_progress", "sequence_number": next(self._seq), "response": response})

    def _responses(self, kind: str, p: dict[str, Any]) -> bytes:
        out = self._head()
        index = p.get("contentBlockIndex")
        if kind == "contentBlockStart" and isinstance(index, int):
            start = p.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(use, dict):
                out += self._open(index, str(use.get("toolUseId") or ""), str(use.get("name") or ""))
        elif kind == "contentBlockDelta" and isinstance(index, int):
            delta = p.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            use = delta.get("toolUse")
            if isinstance(delta.get("text"), str):
                out += self._open(index) + self._delta(index, delta["text"], "response.output_text.delta")
            elif isinstance(use, dict) and isinstance(use.get("input"), str):
                out += self._open(index, "", "") + self._delta(index, use["input"],
                                                               "response.function_call_arguments.delta")
        elif kind == "contentBlockStop" and isinstance(index, int):
            out += self._close_item(index)
        elif kind == "messageStop":
            out += b"".join(self._close_item(i) for i in list(self._items))
            self._finish = finish_reason(p.get("stopReason"))
        elif kind == "metadata":
            out += b"".join(self._close_item(i) for i in list(self._items))
            self._finish = self._finish or "stop"
            self._ended = True
            out += self._completed(openai_usage(p.get("usage"), "responses"))
        return out

    def _open(self, index: int, call_id: str | None = None, name: str = "") -> bytes:
        """The item for content block ``index``, announced the first time it is seen."""
        if index in self._items:
            return b""
        n = next(self._outputs)
        prefix = "msg" if call_id is None else "fc"
        item = self._items[index] = _Item(n, f"{prefix}_{self.response_id}_{n}", call_id, name)
        announced = _message_item(item.item_id, "", done=False) if call_id is None else _call_item(
            item.item_id, call_id, name, "", done=False)
        out = _sse({"type": "response.output_item.added", "sequence_number": next(self._seq), "output_index": n,
                    "item": announced})
        if call_id is None:
            out += _sse({"type": "response.content_part.added", "sequence_number": next(self._seq),
                         "item_id": item.item_id, "output_index": n, "content_index": 0,
                         "part": {"type": "output_text", "text": "", "annotations": []}})
        return out

    def _delta(self, index: int, piece: str, kind: str) -> bytes:
        item = self._items[index]
        item.parts.append(piece)
        doc: dict[str, Any] = {"type": kind, "sequence_number": next(self._seq), "item_id": item.item_id,
                               "output_index": item.output_index, "delta": piece}
        if item.call_id is None:
            doc["content_index"] = 0
        return _sse(doc)

    def _close_item(self, index: int) -> bytes:
        item = self._items.pop(index, None)
        if item is None:
            return b""
        self._finished.append(item)
        done = item.done()
        common = {"item_id": item.item_id, "output_index": item.output_index}
        if item.call_id is None:
            text = done["content"][0]["text"]
            out = _sse({"type": "response.output_text.done", "sequence_number": next(self._seq), **common,
                        "content_index": 0, "text": text})
            out += _sse({"type": "response.content_part.done", "sequence_number": next(self._seq), **common,
                         "content_index": 0, "part": done["content"][0]})
        else:
            out = _sse({"type": "response.function_call_arguments.done", "sequence_number": next(self._seq),
                        **common, "arguments": done["arguments"]})
        return out + _sse({"type": "response.output_item.done", "sequence_number": next(self._seq),
                           "output_index": item.output_index, "item": done})

    def _completed(self, usage: dict[str, Any] | None) -> bytes:
        finish = self._finish or "stop"
        status = _status(finish)
        output = [i.done() for i in sorted(self._finished, key=lambda i: i.output_index)]
        response = _response(self.response_id, self.call.model, status, output, usage, finish)
        return _sse({"type": f"response.{status}", "sequence_number": next(self._seq), "response": response})

    # Chat Completions --------------------------------------------------------------------------------

    def _chunk(self, choices: list[Any], usage: dict[str, Any] | None = None, *, with_usage: bool = False) -> bytes:
        doc: dict[str, Any] = {"id": f"chatcmpl-{self.response_id}", "object": "chat.completion.chunk",
                               "created": self._created, "model": self.call.model, "choices": choices}
        if self.call.include_usage:
            doc["usage"] = usage if with_usage else None
        return b"data: " + _enc.encode(doc) + b"\n\n"

    def _chat(self, kind: str, p: dict[str, Any]) -> bytes:
        index = p.get("contentBlockIndex")
        out = b""
        if not self._started:
            self._started = True
            out = self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        if kind == "contentBlockStart" and isinstance(index, int):
            start = p.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(use, dict):
                k = next(self._tool_calls)
                self._items[index] = _Item(k, "", str(use.get("toolUseId") or ""), str(use.get("name") or ""))
                call = {"index": k, "id": use.get("toolUseId"), "type": "function",
                        "function": {"name": use.get("name"), "arguments": ""}}
                out += self._chunk([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}])
        elif kind == "contentBlockDelta" and isinstance(index, int):
            delta = p.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            use = delta.get("toolUse")
            if isinstance(delta.get("text"), str):
                out += self._chunk([{"index": 0, "delta": {"content": delta["text"]}, "finish_reason": None}])
            elif isinstance(use, dict) and isinstance(use.get("input"), str) and index in self._items:
                call = {"index": self._items[index].output_index, "function": {"arguments": use["input"]}}
                out += self._chunk([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}])
        elif kind == "messageStop":
            self._finish = finish_reason(p.get("stopReason"))
            out += self._chunk([{"index": 0, "delta": {}, "finish_reason": self._finish}])
        elif kind == "metadata":
            self._ended = True
            if self.call.include_usage:
                out += self._chunk([], openai_usage(p.get("usage"), "chat"), with_usage=True)
            out += b"data: [DONE]\n\n"
        return out
