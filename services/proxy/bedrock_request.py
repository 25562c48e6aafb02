"""OpenAI requests (Responses, Chat Completions) as Bedrock Converse requests (pure).

What is translated: text (``input_text`` / ``output_text`` parts, plain strings), the instructions and
every ``system`` / ``developer`` message (into Converse's top-level ``system``, in order), function
tools (``toolConfig.tools[].toolSpec``), ``tool_choice`` (``auto``, ``required`` → ``any``, a named
function → ``tool``), function calls (``toolUse`` in an assistant message) and their outputs
(``toolResult`` in a user message), and ``max_output_tokens`` / ``max_tokens`` /
``max_completion_tokens``, ``temperature``, ``top_p`` and ``stop`` into ``inferenceConfig``. Converse
wants turns that alternate between ``user`` and ``assistant``: consecutive items of one role are merged
into one message.

What is refused (:class:`Untranslatable`, answered as a 400 in OpenAI's error shape): images, files and
audio, ``n`` above 1, a structured-output format (``text.format`` / ``response_format`` other than
text), history items other than messages, function calls and their outputs (``custom_tool_call``,
``web_search_call`` …), ``tool_choice: none`` while the history holds tool calls, a ``tool_choice`` that
names anything but a function, and anything that is not the documented shape.

What is dropped: tools other than ``function`` (hosted tools such as ``web_search``, ``namespace``
groups, ``custom`` tools). Codex offers ``web_search`` and a ``namespace`` of sub-agent tools with every
request; refusing them would refuse every Codex turn, so the model simply does not get them. Also
dropped: reasoning items a client sends back, ``reasoning`` settings, ``store``, ``include``,
``prompt_cache_key``, ``client_metadata`` and similar options, which have no Converse counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

CONVERSE_TEMPLATES = ("/responses", "/chat/completions")
"""The route templates whose requests are translated; every other route is refused for a Bedrock model."""
_DROPPED_ITEMS = frozenset({"reasoning", "item_reference"})


class Untranslatable(Exception):
    """The request asks for something spendgate does not translate to Converse."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class ConverseCall:
    """A translated request: the Converse body and what the answer's translation needs to know."""

    body: dict[str, Any]
    api: str
    """``responses`` or ``chat``: the shape the client asked in, and gets back."""
    model: str
    """The model name the client used (what the answer names)."""
    stream: bool
    include_usage: bool
    """Chat streams only: the client (or the proxy, to strip it later) asked for the usage chunk."""


def translate(template: str, raw: bytes, *, default_max_tokens: int | None = None) -> ConverseCall:
    """The Converse request for an OpenAI request body sent to ``template`` (``default_max_tokens`` when it
    names no limit); raises :class:`Untranslatable`."""
    if template not in CONVERSE_TEMPLATES:
        raise Untranslatable(f"spendgate serves Bedrock models on /v1/responses and /v1/chat/completions only, "
                             f"not on /v1{template}.")
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise Untranslatable("The request body is not JSON.") from None
    if not isinstance(doc, dict):
        raise Untranslatable("The request body must be a JSON object.")
    turns = _Turns()
    if template == "/responses":
        _responses(doc, turns)
        api, max_key = "responses", "max_output_tokens"
    else:
        _chat(doc, turns)
        api, max_key = "chat", "max_completion_tokens" if "max_completion_tokens" in doc else "max_tokens"
    body: dict[str, Any] = {"messages": turns.messages}
    if turns.system:
        body["system"] = [{"text": t} for t in turns.system]
    inference = _inference(doc, max_key)
    if default_max_tokens is not None:
        inference.setdefault("maxTokens", default_max_tokens)
    if inference:
        body["inferenceConfig"] = inference
    tools = _tool_config(doc, api, history_has_tools=turns.has_tool_blocks)
    if tools is not None:
        body["toolConfig"] = tools
    stream_options = doc.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return ConverseCall(body, api, str(doc.get("model") or ""), doc.get("stream") is True, include_usage)


class _Turns:
    """Converse messages built item by item, consecutive items of one role merged."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.system: list[str] = []
        self.has_tool_blocks = False

    def add(self, role: str, blocks: list[dict[str, Any]], *, tool: bool = False) -> None:
        if not blocks:
            return
        self.has_tool_blocks = self.has_tool_blocks or tool
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": blocks})


def _responses(doc: dict[str, Any], turns: _Turns) -> None:
    _refuse_format(doc.get("text"), "text.format")
    instructions = doc.get("instructions")
    if isinstance(instructions, str) and instructions:
        turns.system.append(instructions)
    items = doc.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise Untranslatable("'input' must be a string or a list of items.", "input")
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise Untranslatable("Every item of 'input' must be an object.", f"input[{n}]")
        kind = item.get("type", "message")
        if kind == "message":
            _message(item.get("role"), item.get("content"), turns, f"input[{n}]")
        elif kind == "function_call":
            turns.add("assistant", [_tool_use(item.get("call_id"), item.get("name"), item.get("arguments"),
                                              f"input[{n}]")], tool=True)
        elif kind == "function_call_output":
            turns.add("user", [_tool_result(item.get("call_id"), item.get("output"), f"input[{n}]")], tool=True)
        elif kind not in _DROPPED_ITEMS:
            raise Untranslatable(f"Input items of type {_name(kind)} are not translated for Bedrock models.",
                                 f"input[{n}]")


def _chat(doc: dict[str, Any], turns: _Turns) -> None:
    if doc.get("n") not in (None, 1):
        raise Untranslatable("Bedrock models answer one choice per request: 'n' must be 1.", "n")
    _refuse_format(doc.get("response_format"), "response_format")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Untranslatable("'messages' must be a non-empty list.", "messages")
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Untranslatable("Every message must be an object.", f"messages[{n}]")
        role = message.get("role")
        where = f"messages[{n}]"
        if role == "tool":
            turns.add("user", [_tool_result(message.get("tool_call_id"), message.get("content"), where)], tool=True)
            continue
        _message(role, message.get("content"), turns, where)
        calls = message.get("tool_calls") if role == "assistant" else None
        for k, call in enumerate(calls or ()):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or call.get("type", "function") != "function":
                raise Untranslatable("Only function tool calls are translated for Bedrock models.",
                                     f"{where}.tool_calls[{k}]")
            turns.add("assistant", [_tool_use(call.get("id"), fn.get("name"), fn.get("arguments"),
                                              f"{where}.tool_calls[{k}]")], tool=True)


def _message(role: Any, content: Any, turns: _Turns, where: str) -> None:
    texts = _texts(content, where)
    if role in ("system", "developer"):
        turns.system.extend(texts)
    elif role in ("user", "assistant"):
        turns.add(role, [{"text": t} for t in texts])
    else:
        raise Untranslatable(f"Messages with role {_name(role)} are not translated for Bedrock models.",
                             f"{where}.role")


def _texts(content: Any, where: str) -> list[str]:
    """The non-empty texts of a message's content (Converse refuses empty text blocks)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise Untranslatable("A message's content must be a string or a list of parts.", f"{where}.content")
    texts: list[str] = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            if part["text"]:
                texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise Untranslatable(f"Content parts of type {_name(kind)} (images, files, audio) are not translated "
                                 "for Bedrock models; send text.", f"{where}.content[{k}]")
    return texts


def _tool_use(call_id: Any, name: Any, arguments: Any, where: str) -> dict[str, Any]:
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise Untranslatable("A function call needs its call id and name.", where)
    try:
        args = msgspec.json.decode(arguments) if isinstance(arguments, str) and arguments else {}
    except (msgspec.DecodeError, RecursionError):
        raise Untranslatable("A function call's arguments must be a JSON object.", f"{where}.arguments") from None
    if not isinstance(args, dict):
        raise Untranslatable("A function call's arguments must be a JSON object.", f"{where}.arguments")
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": args}}


def _tool_result(call_id: Any, output: Any, where: str) -> dict[str, Any]:
    if not isinstance(call_id, str) or not call_id:
        raise Untranslatable("A function call's output needs the call id it answers.", where)
    texts = [output] if isinstance(output, str) else _texts(output, where)
    content = [{"text": t} for t in texts if t] or [{"text": ""}]
    return {"toolResult": {"toolUseId": call_id, "content": content}}


def _refuse_format(spec: Any, param: str) -> None:
    fmt = spec.get("format") if isinstance(spec, dict) and param == "text.format" else spec
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in (None, "text"):
        raise Untranslatable(f"Structured output ({param} {_name(kind)}) is not translated for Bedrock models.",
                             param)


def _inference(doc: dict[str, Any], max_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name, kinds in ((max_key, "maxTokens", (int,)), ("temperature", "temperature", (int, float)),
                             ("top_p", "topP", (int, float))):
        value = doc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise Untranslatable(f"'{key}' must be a number.", key)
        out[name] = value
    stop = doc.get("stop")
    if isinstance(stop, str):
        out["stopSequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out["stopSequences"] = stop
    elif stop is not None:
        raise Untranslatable("'stop' must be a string or a list of strings.", "stop")
    return out


def _tool_config(doc: dict[str, Any], api: str, *, history_has_tools: bool) -> dict[str, Any] | None:
    tools = doc.get("tools") or []
    if not isinstance(tools, list):
        raise Untranslatable("'tools' must be a list.", "tools")
    specs = [_tool_spec(tool, api, f"tools[{n}]") for n, tool in enumerate(tools)
             if not (isinstance(tool, dict) and isinstance(tool.get("type"), str) and tool["type"] != "function")]
    choice = doc.get("tool_choice")
    if choice == "none":
        if history_has_tools:
            raise Untranslatable("Bedrock has no tool_choice 'none' for a conversation that holds tool calls.",
                                 "tool_choice")
        return None
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        fn = choice.get("function") if api == "chat" else choice
        name = fn.get("name") if isinstance(fn, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            raise Untranslatable("tool_choice must be 'auto', 'required', 'none' or a named function.", "tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice not in (None, "auto"):
        raise Untranslatable("tool_choice must be 'auto', 'required', 'none' or a named function.", "tool_choice")
    return config


def _tool_spec(tool: Any, api: str, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise Untranslatable("Every tool must be an object with a type.", where)
    fn = tool.get("function") if api == "chat" else tool
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise Untranslatable("A function tool needs a name.", where)
    parameters = fn.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise Untranslatable("A function tool's parameters must be a JSON Schema object.", f"{where}.parameters")
    spec: dict[str, Any] = {"name": fn["name"], "inputSchema": {"json": parameters}}
    if isinstance(fn.get("description"), str) and fn["description"]:
        spec["description"] = fn["description"]
    return {"toolSpec": spec}


def _name(value: Any) -> str:
    return repr(value[:40]) if isinstance(value, str) else "(none)" if value is None else "(not a string)"
