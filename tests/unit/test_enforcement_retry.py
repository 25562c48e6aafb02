"""Retry-loop detection from Codex request bodies."""

from __future__ import annotations

import json
from typing import Any

from spendgate.domain.enforcement import RetryDetector
from spendgate.domain.enforcement.retry import failed_output, failing_streak, input_items, items_of

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list /nope"}]}


def call(i: int, cmd: str, code: int) -> list[dict[str, Any]]:
    """One exec_command call and its output, as Codex re-sends them (chunk id and wall time differ)."""
    return [
        {"type": "reasoning", "summary": [], "encrypted_content": f"r{i}"},
        {"type": "function_call", "name": "exec_command", "arguments": json.dumps({"cmd": cmd}), "call_id": f"c{i}"},
        {"type": "function_call_output", "call_id": f"c{i}",
         "output": f"Chunk ID: {i:04x}\nWall time: 0.0{i} seconds\nProcess exited with code {code}\nOutput:\nerr\n"},
    ]


def body(*calls: list[dict[str, Any]]) -> dict[str, Any]:
    items: list[dict[str, Any]] = [USER]
    for c in calls:
        items.extend(c)
    return {"model": "gpt-5.1", "input": items, "stream": True}


def test_exit_codes_decide_failure() -> None:
    """Non-zero 'Process exited with code N' (or exit_code metadata) is a failure; zero is a success."""
    assert failed_output("Process exited with code 2")
    assert not failed_output("Process exited with code 0")
    assert failed_output([{"type": "input_text", "text": "Exit code: 1"}])
    assert failed_output('{"output": "x", "metadata": {"exit_code": 127}}')
    assert not failed_output("no code here")


def test_identical_failing_calls_form_a_streak() -> None:
    """Three identical failing calls at the end of a turn are a streak of 3 (two retries)."""
    b = body(*(call(i, "ls /nope", 2) for i in range(3)))
    s = failing_streak(items_of(b))
    assert s is not None and (s.name, s.count) == ("exec_command", 3)
    assert failing_streak(input_items(json.dumps(b).encode())) == s


def test_cap_refuses_the_request_after_the_third_retry() -> None:
    """With cap 3: retries are flagged from the second failure, and the request after 3 retries is refused."""
    det = RetryDetector(default_cap=3)
    seen = []
    for n in range(1, 6):
        v = det.observe("s1", body(*(call(i, "ls /nope", 2) for i in range(n))))
        seen.append((v.retries, v.retry, v.exhausted, v.first_exhaustion))
    assert seen == [(0, False, False, False), (1, True, False, False), (2, True, False, False),
                    (3, True, True, True), (4, True, True, False)]


def test_refusal_names_the_failing_command() -> None:
    """An exhausted verdict carries the tool name and the command as a person reads it."""
    v = RetryDetector(default_cap=1).observe("s1", body(call(0, "pytest -x", 1), call(1, "pytest -x", 1)))
    assert v.exhausted and (v.kind, v.tool_name, v.command) == ("tool_call", "exec_command", "pytest -x")


def test_a_different_command_resets_the_count() -> None:
    """A different failing command in between breaks the streak."""
    v = RetryDetector().observe("s1", body(call(0, "ls /nope", 2), call(1, "ls /nope", 2), call(2, "ls /tmp/x", 2),
                                           call(3, "ls /nope", 2)))
    assert v.retries == 0 and not v.retry


def test_a_success_resets_the_count() -> None:
    """The same command succeeding ends the loop."""
    calls = [call(i, "make", 2) for i in range(4)] + [call(9, "make", 0)]
    assert not RetryDetector(default_cap=1).observe("s1", body(*calls)).retry


def test_a_new_user_message_starts_a_new_turn() -> None:
    """After the developer writes again, old failures no longer count."""
    b = body(*(call(i, "ls /nope", 2) for i in range(5)))
    b["input"].append(USER)
    assert RetryDetector().observe("s1", b).retries == 0


def test_per_scope_cap_overrides_the_default() -> None:
    """A cap passed per request (the scope's retry_cap) replaces the detector's default."""
    b = body(*(call(i, "ls /nope", 2) for i in range(3)))
    assert not RetryDetector(default_cap=3).observe("s1", b).exhausted
    assert RetryDetector(default_cap=3).observe("s2", b, cap=2).exhausted


def test_identical_resent_requests_after_failures_are_retries() -> None:
    """The same body re-sent after each attempt failed is counted per session; a different body resets it."""
    det = RetryDetector(default_cap=3)
    b = body(call(0, "ls", 0))
    verdicts = []
    for _ in range(5):
        verdicts.append(det.observe("s1", b, raw=b"same"))
        det.outcome("s1", failed=True)
    assert [v.retries for v in verdicts] == [0, 1, 2, 3, 4]
    assert verdicts[3].exhausted and verdicts[3].kind == "resend" and verdicts[3].first_exhaustion
    assert det.observe("s1", b, raw=b"different").retries == 0
    assert det.observe("s2", b, raw=b"same").retries == 0


def test_identical_successful_requests_are_not_retries() -> None:
    """Two successes in a row with the same body (a fixed prompt_cache_key) are never a retry."""
    det = RetryDetector(default_cap=3)
    b = body(call(0, "ls", 0))
    for _ in range(6):
        assert det.observe("s1", b, raw=b"same").retries == 0
        det.outcome("s1", failed=False)


def test_a_resend_ending_in_a_failed_tool_call_is_a_retry() -> None:
    """A re-sent body whose history ends in a failed tool call counts even when the last answer succeeded."""
    det = RetryDetector(default_cap=9)
    raw = json.dumps(body(call(0, "ls /nope", 2))).encode()
    assert [det.observe("s1", raw=raw).retries for _ in range(3)] == [0, 1, 2]


def test_sessions_are_bounded() -> None:
    """The detector forgets the least recently used sessions beyond max_sessions."""
    det = RetryDetector(max_sessions=2)
    for s in ("a", "b", "c"):
        det.observe(s, {"input": []}, raw=b"x")
    assert det.observe("a", {"input": []}, raw=b"x").retries == 0


def test_raw_and_parsed_bodies_give_the_same_verdict() -> None:
    """observe on raw bytes (typed decode) counts exactly like observe on the parsed body."""
    b = body(*(call(i, "ls /nope", 2) for i in range(4)))
    raw = json.dumps(b).encode()
    from_raw = RetryDetector().observe("s1", raw=raw)
    from_body = RetryDetector().observe("s1", b, raw=raw)
    assert from_raw == from_body and from_raw.exhausted


def test_bodies_without_tool_history_are_not_retries() -> None:
    """A string input, malformed JSON or a Chat Completions body yields no tool-call streak."""
    det = RetryDetector()
    assert not det.observe("a", raw=b'{"input": "hello"}').retry
    assert not det.observe("b", raw=b"not json").retry
    assert not det.observe("c", {"messages": [{"role": "user", "content": "x"}]}).retry


def claude_body(n: int, *, code: int = 2, text_after: bool = False) -> bytes:
    """Claude Code's history: a user turn (after a ``system`` item inside ``messages``), then ``n`` Bash
    tool_use / tool_result rounds (``is_error`` and "Exit code N" for a failing command)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "reminder"},
                                      {"role": "user", "content": [{"type": "text", "text": "list /nope"}]}]
    for i in range(n):
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "Let me try."},
            {"type": "tool_use", "id": f"toolu_{i}", "name": "Bash", "input": {"command": "ls /nope"}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i}", "is_error": code != 0,
             "content": f"Exit code {code}\nls: cannot access '/nope'"}]})
    if text_after:
        messages.append({"role": "user", "content": [{"type": "text", "text": "try something else"}]})
    return json.dumps({"model": "claude-sonnet-4-5", "messages": messages, "stream": True}).encode()


def test_claude_code_failing_tool_results_form_a_streak() -> None:
    """Anthropic Messages bodies: identical failing Bash tool_use/tool_result rounds are a streak with the
    command readable; a success or a new user message ends it; the cap refuses as for Codex."""
    streak = failing_streak(input_items(claude_body(3)))
    assert streak is not None and (streak.name, streak.count) == ("Bash", 3)
    assert failing_streak(input_items(claude_body(3, code=0))) is None
    assert failing_streak(input_items(claude_body(3, text_after=True))) is None
    det = RetryDetector(default_cap=3)
    verdicts = [det.observe("s1", raw=claude_body(n)) for n in range(1, 5)]
    assert [v.retries for v in verdicts] == [0, 1, 2, 3] and verdicts[-1].exhausted
    assert verdicts[-1].command == "ls /nope"
