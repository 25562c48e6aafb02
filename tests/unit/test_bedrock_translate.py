"""OpenAI requests to Bedrock Converse and Converse answers back, both ways, with no I/O: what is
translated, what is refused, and that the usage the client sees meters exactly (cache reads and writes)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.proxy.bedrock_request import ConverseCall, Untranslatable, translate
from spendgate.proxy.bedrock_response import StreamTranslator, answer_body, usage_from_converse
from spendgate.proxy.tap import StreamTap
from spendgate.proxy.usage import Usage

TOOL = {"type": "function", "name": "exec_command", "description": "Run a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
USAGE = {"inputTokens": 1000, "outputTokens": 50, "totalTokens": 3100, "cacheReadInputTokens": 1792,
         "cacheWriteInputTokens": 258}


def _translate(template: str, doc: dict[str, Any]) -> ConverseCall:
    return translate(template, json.dumps(doc).encode())


def test_codex_responses_request_becomes_converse() -> None:
    """Instructions and developer messages become system blocks; user text, a function call and its
    output become alternating user/assistant turns; reasoning items and options are dropped."""
    call = _translate("/responses", {
        "model": "claude-sonnet-4-5", "instructions": "You are Codex.", "stream": True, "store": False,
        "reasoning": {"effort": "medium"}, "include": ["reasoning.encrypted_content"], "max_output_tokens": 4096,
        "tools": [TOOL], "tool_choice": "auto", "parallel_tool_calls": False,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: none"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env>cwd</env>"}]},
            {"role": "user", "content": "list the files"},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "README.md\n"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "One file."}]},
        ]})
    assert (call.api, call.model, call.stream) == ("responses", "claude-sonnet-4-5", True)
    assert call.body == {
        "system": [{"text": "You are Codex."}, {"text": "Sandbox: none"}],
        "messages": [
            {"role": "user", "content": [{"text": "<env>cwd</env>"}, {"text": "list the files"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "call_1", "name": "exec_command", "input": {"cmd": "ls"}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "README.md\n"}]}}]},
            {"role": "assistant", "content": [{"text": "One file."}]},
        ],
        "inferenceConfig": {"maxTokens": 4096},
        "toolConfig": {"tools": [{"toolSpec": {"name": "exec_command", "description": "Run a command",
                                               "inputSchema": {"json": TOOL["parameters"]}}}]},
    }


def test_chat_request_becomes_converse() -> None:
    """Chat's system message, tool calls, tool messages, named tool_choice, max_tokens, stop and
    temperature; include_usage is kept for the stream's translation."""
    call = _translate("/chat/completions", {
        "model": "claude-haiku-4-5", "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": 300, "temperature": 0.2, "top_p": 1, "stop": "END",
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_9", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "4 C"},
        ]})
    assert (call.api, call.include_usage) == ("chat", True)
    assert call.body["system"] == [{"text": "Be brief."}]
    assert call.body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_9", "name": "get_weather", "input": {"city": "Oslo"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_9", "content": [{"text": "4 C"}]}}]},
    ]
    assert call.body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.2, "topP": 1, "stopSequences": ["END"]}
    assert call.body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


@pytest.mark.parametrize(("template", "doc", "param"), [
    ("/responses", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:"}]}]},
     "input[0].content[0]"),
    ("/responses", {"input": "hi", "tools": [TOOL, {"name": "no_type"}]}, "tools[1]"),
    ("/responses", {"input": "hi", "tools": [TOOL], "tool_choice": {"type": "web_search"}}, "tool_choice"),
    ("/responses", {"input": [{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}]}, "input[0]"),
    ("/responses", {"input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format"),
    ("/responses", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]},
     "input[0].arguments"),
    ("/responses", {"input": [{"type": "local_shell_call", "call_id": "c"}]}, "input[0]"),
    ("/responses", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
                    "tools": [TOOL], "tool_choice": "none"}, "tool_choice"),
    ("/chat/completions", {"n": 2, "messages": [{"role": "user", "content": "hi"}]}, "n"),
    ("/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0]"),
    ("/chat/completions", {"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    ("/chat/completions", {"response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "x"}]},
     "response_format"),
    ("/embeddings", {"input": "hi"}, None),
])
def test_what_is_not_translated_is_refused_naming_the_field(template: str, doc: dict[str, Any],
                                                            param: str | None) -> None:
    """Images, hosted tools, structured output, n > 1, odd items and other routes: refused, naming the field."""
    with pytest.raises(Untranslatable) as refused:
        _translate(template, {"model": "claude-sonnet-4-5", **doc})
    assert refused.value.param == param and refused.value.message


def test_a_default_max_tokens_fills_in_only_when_the_client_names_none() -> None:
    """bedrock.default_max_tokens becomes maxTokens for a request without a limit, never over the client's."""
    none = translate("/responses", b'{"model": "m", "input": "hi"}', default_max_tokens=8192)
    named = translate("/chat/completions", b'{"model": "m", "max_completion_tokens": 64, "messages": '
                                           b'[{"role": "user", "content": "hi"}]}', default_max_tokens=8192)
    assert none.body["inferenceConfig"] == {"maxTokens": 8192}
    assert named.body["inferenceConfig"] == {"maxTokens": 64}
    assert "inferenceConfig" not in translate("/responses", b'{"model": "m", "input": "hi"}').body


def test_hosted_and_namespace_tools_are_dropped() -> None:
    """Codex's web_search and its namespace of sub-agent tools are left out; its function tools go."""
    call = _translate("/responses", {"model": "claude-sonnet-4-5", "input": "hi", "tools": [
        TOOL, {"type": "namespace", "name": "multi_agent_v1", "tools": [TOOL]},
        {"type": "web_search", "external_web_access": True}, {"type": "custom", "name": "apply_patch"}]})
    assert [t["toolSpec"]["name"] for t in call.body["toolConfig"]["tools"]] == ["exec_command"]
    only_hosted = _translate("/responses", {"model": "claude-sonnet-4-5", "input": "hi",
                                            "tools": [{"type": "web_search"}]})
    assert "toolConfig" not in only_hosted.body


def test_hostile_bodies_are_refused_not_raised() -> None:
    """Not JSON, not an object, deeply nested or wrongly typed: Untranslatable, never another exception."""
    for raw in (b"{nope", b"[]", b"[" * 100_000, b'{"input": 5}', b'{"messages": "x"}'):
        for template in ("/responses", "/chat/completions"):
            with pytest.raises(Untranslatable):
                translate(template, raw)


def _call(api: str, *, stream: bool = False, include_usage: bool = False) -> ConverseCall:
    return ConverseCall({}, api, "claude-sonnet-4-5", stream, include_usage)


def _cost(usage: Usage) -> int:
    price = PriceTable().lookup("claude-sonnet-4-5").price
    return cost_micros(price, input_tokens=usage.input_tokens, cached_tokens=usage.cached_tokens,
                       output_tokens=usage.output_tokens, cache_write_5m_tokens=usage.cache_write_5m_tokens,
                       cache_write_1h_tokens=usage.cache_write_1h_tokens)


# claude-sonnet-4-5 per 1M tokens: $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output
HAND_COST = (1000 * 3_000_000 + 1792 * 300_000 + 258 * 3_750_000 + 50 * 15_000_000 + 500_000) // 1_000_000


def test_converse_usage_is_metered_exactly_with_cache_writes_by_lifetime() -> None:
    """Every input token counted once, reads and writes apart, 1-hour writes from cacheDetails; the cost
    is the hand-computed one; an impossible count is an anomaly, a missing block nothing."""
    usage = usage_from_converse(USAGE)
    assert usage == Usage(3050, 1792, 50, 0, cache_write_5m_tokens=258)
    assert _cost(usage) == HAND_COST
    split = usage_from_converse({**USAGE, "cacheDetails": [{"ttl": "1h", "inputTokens": 200},
                                                           {"ttl": "5m", "inputTokens": 58}]})
    assert split is not None and (split.cache_write_5m_tokens, split.cache_write_1h_tokens) == (58, 200)
    assert _cost(split) == (1000 * 3_000_000 + 1792 * 300_000 + 58 * 3_750_000 + 200 * 6_000_000
                            + 50 * 15_000_000 + 500_000) // 1_000_000
    absurd = usage_from_converse({**USAGE, "outputTokens": 10**30})
    assert absurd is not None and absurd.anomalous
    assert usage_from_converse(None) is None


def test_converse_answer_becomes_responses_and_chat_bodies_metered_exactly() -> None:
    """Text and a toolUse become an output_text message and a function_call item (or content and
    tool_calls); the client's usage counts all of Converse's input parts."""
    converse = {"output": {"message": {"role": "assistant", "content": [
        {"text": "Running it."}, {"toolUse": {"toolUseId": "tooluse_1", "name": "exec_command",
                                              "input": {"cmd": "ls"}}}]}},
        "stopReason": "tool_use", "usage": USAGE}
    responses = msgspec.json.decode(answer_body(_call("responses"), converse, "abc"))
    assert responses["status"] == "completed" and responses["model"] == "claude-sonnet-4-5"
    assert [i["type"] for i in responses["output"]] == ["message", "function_call"]
    assert responses["output"][0]["content"][0]["text"] == "Running it."
    assert (responses["output"][1]["call_id"], json.loads(responses["output"][1]["arguments"])) == (
        "tooluse_1", {"cmd": "ls"})
    assert responses["usage"]["input_tokens"] == 1000 + 1792 + 258
    chat = msgspec.json.decode(answer_body(_call("chat"), converse, "abc"))
    [choice] = chat["choices"]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("tool_calls", "Running it.")
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "exec_command", "arguments": '{"cmd":"ls"}'}
    assert responses["usage"]["input_tokens_details"] == {"cached_tokens": 1792, "cache_write_tokens": 258}
    assert (chat["usage"]["prompt_tokens"], chat["usage"]["completion_tokens"]) == (3050, 50)


def test_a_max_tokens_stop_is_an_incomplete_response() -> None:
    """stopReason max_tokens: Responses status incomplete (max_output_tokens), chat finish_reason length."""
    converse = {"output": {"message": {"content": [{"text": "cut"}]}}, "stopReason": "max_tokens", "usage": USAGE}
    doc = msgspec.json.decode(answer_body(_call("responses"), converse, "x"))
    assert (doc["status"], doc["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    chat = msgspec.json.decode(answer_body(_call("chat"), converse, "x"))
    assert chat["choices"][0]["finish_reason"] == "length"


def _converse_events(*, tool: bool = True) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in ("Hel", "lo")]
    events.append(("contentBlockStop", {"contentBlockIndex": 0}))
    if tool:
        events.append(("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
            "toolUseId": "tooluse_7", "name": "exec_command"}}}))
        events += [("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": p}}})
                   for p in ('{"cmd":', '"ls"}')]
        events.append(("contentBlockStop", {"contentBlockIndex": 1}))
    events.append(("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
    events.append(("metadata", {"usage": USAGE, "metrics": {"latencyMs": 9}}))
    return events


def _sse_docs(stream: bytes) -> list[Any]:
    return [msgspec.json.decode(line[6:]) for line in stream.split(b"\n")
            if line.startswith(b"data: ") and line != b"data: [DONE]"]


def test_converse_stream_becomes_the_responses_events_codex_reads() -> None:
    """created, a text item with its deltas, a function_call item with argument deltas, completed with
    the usage; the stream ends as completed for the proxy's tap and the metered usage is Converse's."""
    translator = StreamTranslator(_call("responses", stream=True), "r1")
    stream = b"".join(translator.event(k, p) for k, p in _converse_events()) + translator.close()
    docs = _sse_docs(stream)
    types = [d["type"] for d in docs]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types.count("response.output_text.delta") == 2 and types.count("response.function_call_arguments.delta") == 2
    assert types[-1] == "response.completed"
    assert [d["sequence_number"] for d in docs] == list(range(len(docs)))
    final = docs[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert (final["output"][1]["call_id"], final["output"][1]["arguments"]) == ("tooluse_7", '{"cmd":"ls"}')
    assert final["usage"]["input_tokens"] == 3050
    tap = StreamTap()
    tap.feed(stream)
    assert tap.outcome == "completed" and translator.usage == usage_from_converse(USAGE)


def test_converse_stream_becomes_chat_chunks_and_the_usage_chunk_can_be_stripped() -> None:
    """Role, content and tool_call deltas, finish_reason, the usage chunk, [DONE]; the proxy's tap strips
    the usage chunk it asked for and still meters it."""
    translator = StreamTranslator(_call("chat", stream=True, include_usage=True), "c1")
    stream = b"".join(translator.event(k, p) for k, p in _converse_events()) + translator.close()
    assert stream.endswith(b"data: [DONE]\n\n") and stream.count(b"[DONE]") == 1
    docs = _sse_docs(stream)
    deltas = [d["choices"][0]["delta"] for d in docs if d["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Hello"
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert calls[0]["id"] == "tooluse_7" and "".join(c["function"]["arguments"] for c in calls) == '{"cmd":"ls"}'
    assert [d["choices"][0]["finish_reason"] for d in docs if d["choices"]][-1] == "tool_calls"
    tap = StreamTap(strip_usage_chunk=True)
    relayed = tap.feed(stream) + tap.flush()
    assert b'"prompt_tokens"' not in relayed and relayed.endswith(b"data: [DONE]\n\n")
    assert tap.outcome == "completed" and translator.usage == usage_from_converse(USAGE)


def test_stream_exception_fails_the_response_and_a_cut_stream_owes_nothing() -> None:
    """An exception frame ends the Responses stream with response.failed (chat: an error chunk); a stream
    that breaks before messageStop gets no invented end (the proxy adds its own error event)."""
    for api, marker in (("responses", b"response.failed"), ("chat", b'"code":"throttlingException"')):
        translator = StreamTranslator(_call(api, stream=True), "e1")
        out = b"".join(translator.event(k, p) for k, p in _converse_events()[:3])
        out += translator.exception("throttlingException", "Too many tokens")
        assert marker in out and translator.close() == b""
        tap = StreamTap()
        tap.feed(out)
        assert tap.outcome == "failed"
        cut = StreamTranslator(_call(api, stream=True), "e2")
        assert b"[DONE]" not in b"".join(cut.event(k, p) for k, p in _converse_events()[:3])
        assert cut.close() == b""


def test_stream_without_metadata_completes_without_usage() -> None:
    """messageStop but no metadata: the stream ends cleanly with no usage (the proxy estimates it)."""
    translator = StreamTranslator(_call("responses", stream=True), "n1")
    stream = b"".join(translator.event(k, p) for k, p in _converse_events(tool=False)[:-1]) + translator.close()
    tap = StreamTap()
    tap.feed(stream)
    assert tap.outcome == "completed" and tap.usage is None and translator.usage is None
