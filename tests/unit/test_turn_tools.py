"""What a request records about its turn: the tool outputs of the current turn's tail and how many failed
(read in the retry detector's one parse), and whether the answer was a final message."""

from __future__ import annotations

import msgspec

from spendgate.domain.enforcement.retry import RetryDetector, input_items, turn_tools
from spendgate.proxy import fake_anthropic
from spendgate.proxy.anthropic_usage import AnthropicTap, answer_of_message
from spendgate.proxy.fake_streams import chat_body, responses_body, responses_events
from spendgate.proxy.tap import StreamTap
from spendgate.proxy.usage import answer_of

USAGE = (100, 0, 10, 0)


def _call(i: int, cmd: str) -> dict[str, object]:
    return {"type": "function_call", "name": "shell", "call_id": f"c{i}", "arguments": f'{{"cmd": "{cmd}"}}'}


def _out(i: int, output: str) -> dict[str, object]:
    return {"type": "function_call_output", "call_id": f"c{i}", "output": output}


def _body(*items: dict[str, object]) -> bytes:
    return msgspec.json.encode({"model": "gpt-5.1", "input": list(items)})


def test_turn_tools_counts_only_the_current_turn_and_its_failures() -> None:
    """Outputs after the last user message count; exit codes, error text and JSON exit_code mark failures."""
    raw = _body({"type": "message", "role": "user", "content": "old turn"}, _call(0, "ls"),
                _out(0, "Process exited with code 1"),
                {"type": "message", "role": "user", "content": "new turn"},
                _call(1, "ls"), _out(1, "Process exited with code 0\nfile"),
                _call(2, "cat x"), _out(2, 'Exit code: 2\nno such file'),
                _call(3, "patch"), _out(3, "error: patch does not apply"),
                _call(4, "run"), _out(4, '{"output": "x", "metadata": {"exit_code": 127}}'),
                {"type": "reasoning"}, _call(5, "echo"), _out(5, "fine, no errors here"))
    tools = turn_tools(input_items(raw))
    assert (tools.outputs, tools.failures) == (5, 3)


def test_the_retry_verdict_carries_the_tools_and_anthropic_is_error_counts() -> None:
    """The detector's one parse hands the counts on; a Claude Code tool_result with is_error is a failure."""
    messages = {"model": "claude-sonnet-4-5", "messages": [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"c": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                      "content": "permission denied"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "Bash", "input": {"c": "pwd"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "/home"}]}]}
    verdict = RetryDetector().observe("s", raw=msgspec.json.encode(messages), owner="alice")
    assert verdict.tools is not None and (verdict.tools.outputs, verdict.tools.failures) == (2, 1)
    assert RetryDetector().observe("s", raw=_body({"type": "message", "role": "user"}), owner="a").tools is None


def test_final_message_of_responses_chat_and_anthropic_answers() -> None:
    """An answer ending in a tool call is not final; one ending in a message is, streamed or not."""
    for tool in (True, False):
        assert answer_of(msgspec.json.encode(responses_body(1, "gpt-5.1", "a b", USAGE, tool)))[1] is (not tool)
        tap = StreamTap()
        tap.feed(b"".join(responses_events(1, "gpt-5.1", "a b", USAGE, tool, 2)))
        assert tap.final_message is (not tool)
        command = "ls" if tool else None
        body = fake_anthropic.message_body(1, "claude-sonnet-4-5", "hi", (10, 0, 0, 0, 5), command)
        assert answer_of_message(msgspec.json.encode(body))[1] is (not tool)
        anthropic = AnthropicTap()
        anthropic.feed(b"".join(fake_anthropic.message_events(1, "claude-sonnet-4-5", "hi", (10, 0, 0, 0, 5),
                                                              command, 2)))
        assert anthropic.final_message is (not tool)
    assert answer_of(msgspec.json.encode(chat_body(1, "gpt-4.1-mini", "hi", USAGE)))[1] is True
    failed = StreamTap()
    failed.feed(b"".join(responses_events(1, "gpt-5.1", "a b", USAGE, False, 2, failed=True)))
    assert failed.final_message is None and failed.outcome == "failed"
