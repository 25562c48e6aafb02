"""A tap on a server-sent-events stream: finds usage without holding the stream back.

Responses streams carry usage only in ``response.completed`` (or ``response.incomplete`` /
``response.failed``) → ``response.usage``; Chat Completions streams carry it in a final chunk with
empty ``choices`` when ``stream_options.include_usage`` is set. Chunks are relayed as they come and
parsed when the outcome is needed; only events that may hold usage or an error are decoded. Delta
events are kept raw so that, if the client walks away or the stream breaks, the text streamed so
far can be counted offline.
"""

from __future__ import annotations

from typing import Any

import msgspec

from spendgate.proxy.usage import Usage, count_tokens, final_message, usage_from_document

_TERMINAL = {"response.completed": "completed", "response.incomplete": "completed",
             "response.failed": "failed", "error": "failed"}


class StreamTap:
    """Feed it the upstream's bytes; it tells what to relay and what the stream cost.

    Without ``strip_usage_chunk`` every chunk is relayed unchanged the moment it arrives and merely
    kept; the events are parsed once, when the outcome is asked for (end of stream, abort), and only
    those that can carry usage or an error are decoded. With ``strip_usage_chunk`` (the proxy added
    ``include_usage`` itself) the tap must look at each event as it passes: it relays whole events
    only and drops the usage-only chunk.
    """

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self._usage: Usage | None = None
        self._outcome: str | None = None
        self._final: bool | None = None
        self._buffer = b""
        self._raw: list[bytes] = []
        self._parsed_upto = 0
        self._deltas: list[bytes] = []

    @property
    def usage(self) -> Usage | None:
        self._parse_raw()
        return self._usage

    @property
    def outcome(self) -> str | None:
        """``completed`` once a terminal success event (or chat's ``[DONE]``) went by; ``failed``."""
        self._parse_raw()
        return self._outcome

    @property
    def final_message(self) -> bool | None:
        """Whether the answer ended with an assistant message rather than a tool call (None: not seen)."""
        self._parse_raw()
        return self._final

    def feed(self, chunk: bytes) -> bytes:
        """Take ``chunk``; return the bytes to relay to the client now."""
        if not self.strip_usage_chunk:
            self._raw.append(chunk)
            return chunk
        data = self._buffer + chunk if self._buffer else chunk
        end = data.rfind(b"\n\n")
        if end < 0 and b"\r" in data:
            end = data.rfind(b"\r\n\r\n")
        if end < 0:
            self._buffer = data
            return b""
        complete, self._buffer = data[: end + 2], data[end + 2 :].lstrip(b"\r\n")
        return self._scan(complete, keep=True)

    def flush(self) -> bytes:
        """At end of stream: what is left to relay (a last event that lacked its blank line)."""
        if not self.strip_usage_chunk:
            return b""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return rest
        return self._scan(rest + b"\n\n", keep=True)

    def _unparsed(self) -> bytes | None:
        """The kept stream joined (CRLF folded to LF) when more of it arrived since the last parse, else
        None."""
        if self._parsed_upto == len(self._raw):
            return None
        data = b"".join(self._raw)
        self._raw = [data]
        self._parsed_upto = 1
        return data.replace(b"\r\n", b"\n") if b"\r" in data else data

    def _parse_raw(self) -> None:
        """Find usage and outcome in the kept stream. They sit at its end, so the events are walked
        backwards only as far as the last real usage block, then those few are read in order."""
        data = None if self.strip_usage_chunk else self._unparsed()
        if data is None:
            return
        tail: list[bytes] = []
        for block in reversed(data.split(b"\n\n")):
            if b'"usage"' in block or b"error" in block or b"[DONE]" in block:
                tail.append(block)
                if _has_usage(block):
                    break
        self._usage, self._outcome, self._final = None, None, None
        for block in reversed(tail):
            self._on_event(block)
        self._deltas.clear()  # rebuilt from the whole stream if an estimate is ever needed

    def _scan(self, complete: bytes, *, keep: bool = False) -> bytes:
        if b"\r" in complete:
            complete = complete.replace(b"\r\n", b"\n")
        relay: list[bytes] = []
        for block in complete.split(b"\n\n"):
            if not block.strip():
                continue
            if self._on_event(block) and keep:
                relay.append(block)
        return b"".join(b + b"\n\n" for b in relay)

    def _on_event(self, block: bytes) -> bool:
        """Inspect one event; return False when it must not reach the client."""
        if b"delta" in block:
            self._deltas.append(block)  # text for estimates; decoded only if ever needed
        if b'"usage"' not in block and b"error" not in block and b"[DONE]" not in block:
            return True
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
            self._outcome = self._outcome or "completed"
            return True
        try:
            doc = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return True
        if not isinstance(doc, dict):
            return True
        kind = doc.get("type") or name.decode(errors="replace")
        if kind in _TERMINAL:
            self._outcome = _TERMINAL[kind]
            if isinstance(doc.get("response"), dict):
                self._final = final_message(doc["response"])
        elif "choices" in doc and (final := final_message(doc)) is not None:
            self._final = final
        found = usage_from_document(doc)
        if found is not None:
            self._usage = found
            if "choices" in doc:  # chat: the usage chunk has no choices; the stream is as good as done
                self._outcome = self._outcome or "completed"
                return bool(doc.get("choices")) or not self.strip_usage_chunk
        return True

    def streamed_text(self) -> str:
        if not self.strip_usage_chunk:
            self._parse_raw()
            data = self._raw[0] if self._raw else b""
            self._deltas = [b for b in data.replace(b"\r\n", b"\n").split(b"\n\n") if b"delta" in b]
        parts: list[str] = []
        for block in self._deltas:
            for line in block.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                try:
                    doc = msgspec.json.decode(line[5:].lstrip(b" "))
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    continue
                if isinstance(doc, dict):
                    _collect_text(doc, parts)
        return "".join(parts)

    def estimated_output_tokens(self) -> int:
        """Tokens of the text streamed so far, counted offline (for aborted and broken streams)."""
        return count_tokens(self.streamed_text())


def _has_usage(block: bytes) -> bool:
    """Whether an event carries a real usage block (not the ``"usage": null`` of ordinary chunks)."""
    at = block.find(b'"usage"')
    while at >= 0:
        rest = block[at + 7 : at + 16].lstrip(b": ")
        if rest.startswith(b"{"):
            return True
        at = block.find(b'"usage"', at + 7)
    return False


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
