"""Anthropic Messages usage, streamed and not, normalised to :class:`~spendgate.proxy.usage.Usage`.

Anthropic counts input in three parts: ``input_tokens`` (neither read from nor written to the cache),
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` (split by lifetime in
``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``). spendgate's ``Usage``
counts every input token in ``input_tokens`` (OpenAI's convention), the reads in ``cached_tokens`` and
the writes in ``cache_write_5m_tokens`` / ``cache_write_1h_tokens``. A stream reports usage in
``message_start`` (input, and ``output_tokens`` so far) and ``message_delta`` (cumulative
``output_tokens``, and sometimes the input counts again); the last non-null value of each count wins.
A stream broken off before its ``message_delta`` reports no usage: the proxy estimates it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from spendgate.proxy.normalise import tokens
from spendgate.proxy.tap import StreamTap
from spendgate.proxy.usage import ANOMALY, Usage

_TERMINAL = {"message_stop": "completed", "error": "failed"}
_HEAD_EVENTS = 4
"""message_start is the first event (a ``ping`` may come first or second)."""


def usage_from_anthropic(block: Any) -> Usage | None:
    """Read one Anthropic ``usage`` object (a message's, or the merge of a stream's)."""
    if not isinstance(block, dict) or not ("input_tokens" in block or "output_tokens" in block):
        return None
    split = block.get("cache_creation")
    split = split if isinstance(split, dict) else {}
    counts = [tokens(block.get(name)) for name in (
        "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")]
    lifetimes = [tokens(split.get(name)) for name in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")]
    if None in counts or None in lifetimes:
        return ANOMALY
    plain, read, written, output = (int(c or 0) for c in counts)
    write_5m, write_1h = (int(c or 0) for c in lifetimes)
    # A split that does not add up: the unexplained part is priced as a 5-minute write (never under-metered
    # below what the total says; a 1-hour write is named explicitly when Anthropic makes one).
    write_5m += max(0, written - write_5m - write_1h)
    return Usage(plain + read + write_5m + write_1h, read, output, 0,
                 cache_write_5m_tokens=write_5m, cache_write_1h_tokens=write_1h)


def usage_from_message(body: bytes) -> Usage | None:
    """Usage of a non-streamed Messages answer (or ``None`` if it has none)."""
    return answer_of_message(body)[0]


def answer_of_message(body: bytes) -> tuple[Usage | None, bool | None]:
    """Usage and whether the answer is final (``stop_reason`` other than ``tool_use``), from one decode."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    return usage_from_anthropic(doc.get("usage")), stop_is_final(doc.get("stop_reason"))


def stop_is_final(stop_reason: Any) -> bool | None:
    """An Anthropic ``stop_reason`` other than ``tool_use`` ends the turn with the model's answer."""
    return stop_reason != "tool_use" if isinstance(stop_reason, str) else None


class AnthropicTap(StreamTap):
    """A :class:`StreamTap` for Messages streams: relays every chunk untouched; the usage is the merge of
    ``message_start``'s and ``message_delta``'s, the outcome ``completed`` at ``message_stop`` and
    ``failed`` at an ``error`` event."""

    def __init__(self) -> None:
        super().__init__(strip_usage_chunk=False)

    def _parse_raw(self) -> None:
        data = self._unparsed()
        if data is None:
            return
        merged: dict[str, Any] = {}
        saw_delta = False
        self._usage, self._outcome, self._final = None, None, None
        blocks = data.split(b"\n\n")
        # message_start opens the stream; message_delta, message_stop (or an error) close it: read those
        # ends only, not the deltas in between (a long answer has thousands).
        head = next(([b] for b in blocks[:_HEAD_EVENTS] if b"message_start" in b), [])
        tail: list[bytes] = []
        for block in reversed(blocks):
            if b"content_block" in block[:48]:
                break  # back in the content: nothing before it closes the stream
            if b"message_stop" in block or b"error" in block or b"message_delta" in block:
                tail.append(block)
                if b"message_delta" in block and b'"usage"' in block:
                    break
        for block in head + tail[::-1]:
            doc = _event_data(block)
            kind = doc.get("type") if doc is not None else None
            if kind in _TERMINAL:
                self._outcome = _TERMINAL[kind]
            if kind == "message_start" and isinstance(doc, dict):
                message = doc.get("message")
                _merge(merged, message.get("usage") if isinstance(message, dict) else None)
            elif kind == "message_delta" and isinstance(doc, dict):
                _merge(merged, doc.get("usage"))
                delta = doc.get("delta")
                self._final = stop_is_final(delta.get("stop_reason")) if isinstance(delta, dict) else None
                saw_delta = True
        # Without message_delta the output count is message_start's placeholder: no usage, so the proxy
        # meters its estimate (output counted from the streamed text), as for a broken OpenAI stream.
        self._usage = usage_from_anthropic(merged) if saw_delta else None

    def streamed_text(self) -> str:
        self._parse_raw()
        data = (self._raw[0] if self._raw else b"").replace(b"\r\n", b"\n")
        parts: list[str] = []
        for block in data.split(b"\n\n"):
            if b"content_block_delta" not in block:
                continue
            doc = _event_data(block)
            delta = doc.get("delta") if doc is not None else None
            if isinstance(delta, dict):
                for name in ("text", "partial_json", "thinking"):
                    if isinstance(delta.get(name), str):
                        parts.append(delta[name])
        return "".join(parts)


def _merge(into: dict[str, Any], usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for name, value in usage.items():
        if value is not None:
            into[name] = value


def _event_data(block: bytes) -> dict[str, Any] | None:
    lines = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        doc = msgspec.json.decode(b"\n".join(lines))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None
