"""An incremental tap on a server-sent-events stream: finds usage without holding the stream back.

Responses streams carry usage only in ``response.completed`` (or ``response.incomplete`` /
``response.failed``) → ``response.usage``; Chat Completions streams carry it in a final chunk with
empty ``choices`` when ``stream_options.include_usage`` is set. Only events that may hold usage are
decoded; delta events are kept raw so that, if the client walks away or the stream breaks, the
text streamed so far can be counted offline.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .usage import Usage, count_tokens, usage_from_document

_TERMINAL = {"response.completed": "completed", "response.incomplete": "completed",
             "response.failed": "failed", "error": "failed"}


class StreamTap:
    """Feed it the upstream's bytes; it tells what to relay and what the stream cost.

    With ``strip_usage_chunk`` (the proxy added ``include_usage`` itself) the tap relays whole events
    only and drops the usage-only chunk; otherwise every chunk is relayed unchanged as it arrives.
    """

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.usage: Usage | None = None
        self.outcome: str | None = None
        """``completed`` once a terminal success event (or chat's ``[DONE]``) went by; ``failed``."""
        self._buffer = b""
        self._deltas: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        """Parse ``chunk``; return the bytes to relay to the client now."""
        data = self._buffer + chunk if self._buffer else chunk
        end = data.rfind(b"\n\n")
        if end < 0 and b"\r" in data:
            end = data.rfind(b"\r\n\r\n")
        if end < 0:
            self._buffer = data
            return b"" if self.strip_usage_chunk else chunk
        complete, self._buffer = data[: end + 2], data[end + 2 :].lstrip(b"\r\n")
        if not self.strip_usage_chunk:
            self._scan(complete)
            return chunk
        return self._scan(complete, keep=True)

    def flush(self) -> bytes:
        """At end of stream: parse a final event that lacked its blank line; return what is left."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return rest if self.strip_usage_chunk else b""
        kept = self._scan(rest + b"\n\n", keep=self.strip_usage_chunk)
        return kept if self.strip_usage_chunk else b""

    def _scan(self, complete: bytes, *, keep: bool = False) -> bytes:
        if b"\r" in complete:
            complete = complete.replace(b"\r\n", b"\n")
        relay: list[bytes] = []
        for block in complete.split(b"\n\n"):
            if not block.strip():
                continue
            if self._on_event(block) or not keep:
                relay.append(block)
        return b"".join(b + b"\n\n" for b in relay) if keep else b""

    def _on_event(self, block: bytes) -> bool:
        """Inspect one event; return False when it must not reach the client."""
        name = b""
        data_lines: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data_lines.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if not data_lines:
            return True
        data = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
        if data == b"[DONE]":
            self.outcome = self.outcome or "completed"
            return True
        if name.endswith(b".delta") or (not name and b'"delta"' in data):
            self._deltas.append(data)
            if not name and b'"usage"' not in data:
                return True
        if name and name.decode(errors="replace") not in _TERMINAL and b'"usage"' not in data:
            return True
        if b'"usage"' not in data and b'"error"' not in data:
            return True
        try:
            doc = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return True
        if not isinstance(doc, dict):
            return True
        kind = doc.get("type") or name.decode(errors="replace")
        if kind in _TERMINAL:
            self.outcome = _TERMINAL[kind]
        found = usage_from_document(doc)
        if found is not None:
            self.usage = found
            if "choices" in doc:  # chat: the usage chunk has no choices; the stream is as good as done
                self.outcome = self.outcome or "completed"
                return bool(doc.get("choices")) or not self.strip_usage_chunk
        return True

    def streamed_text(self) -> str:
        parts: list[str] = []
        for raw in self._deltas:
            try:
                doc = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                continue
            if isinstance(doc, dict):
                _collect_text(doc, parts)
        return "".join(parts)

    def estimated_output_tokens(self) -> int:
        """Tokens of the text streamed so far, counted offline (for aborted and broken streams)."""
        return count_tokens(self.streamed_text())


def _collect_text(doc: dict[str, Any], parts: list[str]) -> None:
    delta = doc.get("delta")
    if isinstance(delta, str):  # Responses: output_text, function_call_arguments, reasoning deltas
        parts.append(delta)
        return
    for choice in doc.get("choices") or ():
        d = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(d, dict):
            continue
        for field in ("content", "reasoning_content", "refusal"):
            if isinstance(d.get(field), str):
                parts.append(d[field])
        for call in d.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                parts.append(fn["arguments"])
