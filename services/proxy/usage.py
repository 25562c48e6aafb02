"""Token usage as providers report it (Responses and Chat Completions shapes), and offline counting."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec

from spendgate.proxy.normalise import tokens

ENCODING = "o200k_base"


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    anomalous: bool = False
    """The upstream reported a count no request can have (see :func:`~spendgate.proxy.normalise.tokens`):
    the counts are zeroed and the proxy meters its own estimate instead."""
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    """Input tokens written to the prompt cache (Anthropic), part of ``input_tokens``."""


ANOMALY = Usage(0, 0, 0, 0, anomalous=True)


def _usage(*counts: Any) -> Usage:
    checked = [tokens(c) for c in counts]
    if None in checked:
        return ANOMALY
    i, c, o, r = (int(x or 0) for x in checked)
    return Usage(i, c, o, r)


def usage_from_block(block: Any) -> Usage | None:
    """Read a usage block: Responses (``input_tokens`` …) or Chat Completions (``prompt_tokens`` …)."""
    if not isinstance(block, dict):
        return None
    if "input_tokens" in block or "output_tokens" in block:
        in_details = block.get("input_tokens_details") or {}
        out_details = block.get("output_tokens_details") or {}
        return _usage(block.get("input_tokens"), _details(in_details, "cached_tokens"),
                      block.get("output_tokens"), _details(out_details, "reasoning_tokens"))
    if "prompt_tokens" in block or "completion_tokens" in block:
        in_details = block.get("prompt_tokens_details") or {}
        out_details = block.get("completion_tokens_details") or {}
        return _usage(block.get("prompt_tokens"), _details(in_details, "cached_tokens"),
                      block.get("completion_tokens"), _details(out_details, "reasoning_tokens"))
    return None


def _details(details: Any, name: str) -> Any:
    return details.get(name) if isinstance(details, dict) else None


def usage_from_document(doc: Any) -> Usage | None:
    """Usage of a whole (non-streamed) response body or of one streamed event's data."""
    if not isinstance(doc, dict):
        return None
    found = usage_from_block(doc.get("usage"))
    if found is None and isinstance(doc.get("response"), dict):
        found = usage_from_block(doc["response"].get("usage"))
    return found


def usage_from_body(body: bytes) -> Usage | None:
    return answer_of(body)[0]


def answer_of(body: bytes) -> tuple[Usage | None, bool | None]:
    """Usage and :func:`final_message` of a whole (non-streamed) response body, from one decode."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None, None
    return usage_from_document(doc), final_message(doc)


CLIENT_TOOL_CALLS = frozenset({"function_call", "custom_tool_call", "local_shell_call", "computer_call"})
"""Responses output items the client must run and answer in a next request: the turn goes on."""


def final_message(doc: Any) -> bool | None:
    """Whether a response (Responses: its ``output``; Chat Completions: ``finish_reason``) ended with an
    assistant message rather than a tool call the client must run; None when it does not say."""
    if not isinstance(doc, dict):
        return None
    output = doc.get("output")
    if isinstance(output, list) and output:
        return not any(isinstance(item, dict) and item.get("type") in CLIENT_TOOL_CALLS for item in output)
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        if isinstance(reason, str):
            return reason not in ("tool_calls", "function_call")
    return None


@functools.cache
def _encoding() -> Any:
    import quicktok

    return quicktok.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Exact o200k_base token count, offline."""
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))
