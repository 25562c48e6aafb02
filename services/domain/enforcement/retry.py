"""Retry-loop detection per session, from the request's own input items. Pure: no I/O.

Codex (and Claude Code, whose Messages history is read as the same items) re-sends the whole history
every request, so a loop is visible in one body: the tail of the
current turn holds the same ``function_call`` (name + arguments) again and again, each followed by a
``function_call_output`` that failed (``Process exited with code N``, N ≠ 0). A streak of ``k``
identical failing calls is ``k − 1`` retries. Identical re-sent bodies are counted per session as well,
but only when the re-send follows a failure: the previous identical request ended in an error (an error
status, a broken stream, a retry refusal: :meth:`RetryDetector.outcome`; not a pause) or the body itself
ends in a failed tool call. Two successes in a row are never a retry (a client with a fixed ``prompt_cache_key`` sends
the same body again on purpose). A different command, a success or a new user message ends the streak.

Sessions are namespaced by their owner (the developer, from the key: never from a header), so another
key holder sending someone else's session id neither adds to nor resets that session's count. And
every count is kept per owner as well as per session, the larger winning: a client that changes its
session id on every request (or trims the history to the last call) is still counted, by the
consecutive requests of the developer that end in the same failing command, or re-send the same body
after a failure.

A request whose history shows at least one retry is *retry spend* (flag it on the usage event). Once a
session has made ``cap`` retries (default 3, per scope configurable, at least 1), the next request is
refused: the loop is stopped before the model can pay for another attempt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import msgspec

_EXIT = re.compile(r"(?:Process exited with code|[Ee]xit code:?|\"exit_code\"\s*:)\s*(-?\d+)")
_EXIT_MARKERS = (b"Process exited with code", b"xit code", b"exit_code")
""":data:`_EXIT`'s phrases, found in an output's raw JSON with ``bytes.find`` (a regex scan of every output
of a turn cost as much as decoding the whole body)."""
_CODE_AFTER = re.compile(rb'[\\":\s]{0,8}(-?\d+)')
_ERROR_STARTS = (b'"error', b'"Error', b'"ERROR', b'"failed', b'"Failed')
"""A string output that starts by saying it failed (``error: patch does not apply``), as raw JSON."""
_OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
COMMAND_MAX_CHARS = 200
MAX_SEEN_OUTPUTS = 512
"""Tool outputs whose verdict a session remembers (:func:`turn_tools`); forgotten all at once past it."""
FINGERPRINT_HEAD, FINGERPRINT_TAIL = 1_024, 4_096


@dataclass(frozen=True, slots=True)
class RetryVerdict:
    kind: Literal["none", "tool_call", "resend"]
    retries: int
    """Consecutive retries so far (0: not a retry)."""
    cap: int
    tool_name: str | None = None
    command: str | None = None
    """The failing command as a person would read it (``ls /nope``), or None for a resend."""
    first_exhaustion: bool = False
    """True on the first refusal of this loop: publish ``RetryLoopDetected`` once."""
    tools: TurnTools | None = None
    """The tool outputs of the current turn's tail (:func:`turn_tools`), for the usage event."""

    @property
    def retry(self) -> bool:
        """This request's spend is retry spend."""
        return self.retries > 0

    @property
    def exhausted(self) -> bool:
        """Refuse the request: the session used up its retry budget."""
        return self.retries >= max(self.cap, 1)


NO_RETRY = RetryVerdict("none", 0, 0)


@dataclass(frozen=True, slots=True)
class TurnTools:
    """What the current turn's tail says about its tools: how many outputs came back, how many failed."""

    outputs: int
    failures: int


@dataclass(frozen=True, slots=True)
class FailingStreak:
    name: str
    arguments: str
    count: int


def _text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, Sequence):
        return "\n".join(str(p.get("text", "")) for p in output if isinstance(p, Mapping))
    return json.dumps(output) if output is not None else ""


def failed_output(output: Any) -> bool:
    """Whether a tool output reports a non-zero exit code."""
    m = _EXIT.search(_text(output))
    return m is not None and int(m.group(1)) != 0


class InputItem(msgspec.Struct, frozen=True):
    """The fields of a Responses ``input`` item the detector reads (everything else is skipped)."""

    type: str = "message"
    role: str | None = None
    name: str | None = None
    arguments: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"null")
    """A ``custom_tool_call``'s input (its arguments), left undecoded until needed."""
    call_id: str | None = None
    output: msgspec.Raw = msgspec.Raw(b"null")
    """Left undecoded: only the outputs at the tail of the history are ever read (saves ~30 µs)."""
    is_error: bool = False
    """An Anthropic ``tool_result`` the client marked ``is_error``."""


class _Body(msgspec.Struct):
    input: list[InputItem] | str | None = None


_body_decoder = msgspec.json.Decoder(_Body)


class _Block(msgspec.Struct, frozen=True):
    type: str = "text"
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"null")
    tool_use_id: str | None = None
    content: msgspec.Raw = msgspec.Raw(b"null")
    is_error: bool = False


class _Message(msgspec.Struct, frozen=True):
    role: str = "user"
    content: list[_Block] | str | None = None


class _Messages(msgspec.Struct):
    messages: list[_Message] | None = None


_messages_decoder = msgspec.json.Decoder(_Messages)


def input_items(raw: bytes) -> list[InputItem]:
    """The input items of a raw request body (typed decode: ~3× faster than ``json.loads``); an Anthropic
    Messages body with tool results is read as the same items (:func:`_from_messages`)."""
    if b'"tool_result"' in raw and (found := _from_messages(raw)):
        return found  # one decode of a Claude Code body, not two
    try:
        items = _body_decoder.decode(raw).input
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    return items if isinstance(items, list) else []


def _from_messages(raw: bytes) -> list[InputItem]:
    """Claude Code's history as Responses items: a ``tool_use`` block is a ``function_call`` (arguments:
    its input as JSON), a ``tool_result`` its ``function_call_output``; a user message without tool
    results is a new turn; ``system`` items inside ``messages`` (Claude Code sends them) are skipped."""
    try:
        messages = _messages_decoder.decode(raw).messages or []
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    items: list[InputItem] = []
    for message in messages:
        blocks = message.content if isinstance(message.content, list) else []
        if message.role == "user" and not any(b.type == "tool_result" for b in blocks):
            items.append(InputItem(type="message", role="user"))
            continue
        for block in blocks:
            if block.type == "tool_use":
                items.append(InputItem(type="function_call", name=block.name, call_id=block.id,
                                       arguments=bytes(block.input).decode()))
            elif block.type == "tool_result":
                items.append(InputItem(type="function_call_output", call_id=block.tool_use_id, output=block.content,
                                       is_error=block.is_error))
    return items


def items_of(body: Mapping[str, Any]) -> list[InputItem]:
    """The input items of an already parsed body (re-encoded: for replays and tests, not the hot path)."""
    try:
        return input_items(msgspec.json.encode({"input": body.get("input")}))
    except (TypeError, msgspec.EncodeError):
        return []


def failing_streak(items: Sequence[InputItem]) -> FailingStreak | None:
    """The run of identical failing tool calls at the end of the current turn, if any.

    One backwards pass that stops at the first item breaking the run: an output always follows its
    call, so walking backwards meets each output before its call.
    """
    outputs: dict[str | None, msgspec.Raw] = {}
    streak: FailingStreak | None = None
    for item in reversed(items):
        kind = item.type
        if kind in _OUTPUT_TYPES:
            outputs[item.call_id] = item.output
            continue
        if kind == "reasoning" or (kind == "message" and item.role == "assistant"):
            continue
        if kind not in ("function_call", "custom_tool_call"):
            break  # a user message (a new turn) or anything else ends the streak
        if item.call_id not in outputs or not failed_output(_decoded(outputs[item.call_id])):
            break
        name = item.name or ""
        args = item.arguments if item.arguments is not None else _as_text(_decoded(item.input))
        if streak is None:
            streak = FailingStreak(name, args, 1)
        elif (name, args) == (streak.name, streak.arguments):
            streak = FailingStreak(name, args, streak.count + 1)
        else:
            break
    return streak


def turn_tools(items: Sequence[InputItem], seen: dict[str, bool] | None = None) -> TurnTools:
    """Count the tool outputs of the current turn (the items after its last user message) and how many
    failed: a non-zero exit code, an output that starts with ``error``/``failed``, or Anthropic's
    ``is_error``. Read from the raw JSON of each output, never decoded. ``seen`` (the session's, by
    ``call_id``) remembers what earlier requests found: the turn's history is re-sent every request, so
    only the new outputs are read (~2 µs each; a turn's tail may hold dozens)."""
    outputs = failures = 0
    for item in reversed(items):
        if item.type in _OUTPUT_TYPES:
            outputs += 1
            key = item.call_id
            failed = seen.get(key) if seen is not None and key is not None else None
            if failed is None:
                failed = item.is_error or raw_output_failed(bytes(item.output))
                if seen is not None and key is not None:
                    if len(seen) >= MAX_SEEN_OUTPUTS:
                        seen.clear()
                    seen[key] = failed
            failures += failed
        elif item.type == "message" and item.role == "user":
            break
    return TurnTools(outputs, failures)


def raw_output_failed(raw: bytes) -> bool:
    """:func:`failed_output` on an output's raw JSON, plus outputs that start by saying they failed."""
    if raw.startswith(_ERROR_STARTS):
        return True
    for marker in _EXIT_MARKERS:
        at = raw.find(marker)
        if at >= 0 and (m := _CODE_AFTER.match(raw, at + len(marker))) is not None:
            return int(m.group(1)) != 0
    return False


def _decoded(raw: msgspec.Raw) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if value is not None else ""


def command_text(arguments: str) -> str:
    """``{"cmd": "ls /nope"}`` → ``ls /nope``; anything else as given, shortened."""
    text = arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        cmd = parsed.get("cmd", parsed.get("command"))
        if isinstance(cmd, list):
            text = " ".join(str(c) for c in cmd)
        elif isinstance(cmd, str):
            text = cmd
    return text if len(text) <= COMMAND_MAX_CHARS else text[: COMMAND_MAX_CHARS - 1] + "…"


def fingerprint(data: bytes) -> bytes:
    """Identity of a request body for resend counting: its length, head and tail.

    Codex bodies only grow at the end (the history is append-only), so two different requests of a
    session differ in length or tail; hashing 5 KB instead of the whole ~40 KB keeps this ~5 µs.
    """
    h = hashlib.blake2b(len(data).to_bytes(8, "big"), digest_size=16)
    h.update(data[:FINGERPRINT_HEAD])
    h.update(data[-FINGERPRINT_TAIL:])
    return h.digest()


@dataclass(slots=True)
class _State:
    digest: bytes = b""
    resends: int = 0
    failed: bool = False
    """The last request of the session failed (error status, broken stream, refusal)."""
    retry_cost_micros: int = 0
    reported: str | None = None
    """The loop already announced, so ``first_exhaustion`` fires once per loop."""
    command: tuple[str, str] | None = None
    """The failing command (name, arguments) the owner's last request ended with (owner states only)."""
    command_runs: int = 0
    """Consecutive requests of the owner ending with ``command``."""
    outputs_failed: dict[str, bool] = field(default_factory=dict)
    """Whether each tool output (by ``call_id``) already read in this session failed."""


class RetryDetector:
    """Per-session retry counting; bounded to ``max_sessions`` (least recently used forgotten)."""

    def __init__(self, *, default_cap: int = 3, max_sessions: int = 50_000) -> None:
        self.default_cap = default_cap
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _State] = OrderedDict()

    def observe(self, session_id: str | None, body: Mapping[str, Any] | None = None, *,
                raw: bytes | None = None, cap: int | None = None, owner: str | None = None) -> RetryVerdict:
        """Count this request's retries; call once per request, before forwarding it.

        Give the raw body (``raw``; decoded here, typed and fast) or the parsed one (``body``).
        ``owner`` (the developer the key belongs to) namespaces the session and is counted itself.
        """
        if raw is None and body is None:
            raise ValueError("observe needs the request body, raw or parsed")
        limit = self.default_cap if cap is None else cap
        items = input_items(raw) if raw is not None else items_of(body or {})
        states = self._states(session_id, owner)
        tools = turn_tools(items, states[0].outputs_failed if states else None)
        verdict = self._observe(states, items, raw, body, limit, owner)
        return replace(verdict, tools=tools) if tools.outputs else verdict

    def _observe(self, states: list[_State], items: list[InputItem], raw: bytes | None,
                 body: Mapping[str, Any] | None, limit: int, owner: str | None) -> RetryVerdict:
        streak = failing_streak(items)
        verdict = _tool_verdict(streak, limit) if streak is not None and streak.count > 1 else NO_RETRY
        if not states:
            return verdict
        digest = fingerprint(raw if raw is not None else msgspec.json.encode(body))
        for state in states:
            follows_failure = state.failed or streak is not None
            state.resends = state.resends + 1 if digest == state.digest and follows_failure else 0
            state.digest = digest
            state.failed = False  # until :meth:`outcome` says otherwise
            if state.resends > verdict.retries:
                verdict = RetryVerdict("resend", state.resends, limit)
        if owner:
            verdict = self._owner_command(states[-1], streak, verdict, limit)
        if verdict.exhausted:
            mark = f"{verdict.kind}:{verdict.tool_name}:{verdict.command}"
            if all(state.reported != mark for state in states):
                verdict = RetryVerdict(verdict.kind, verdict.retries, limit, verdict.tool_name,
                                       verdict.command, first_exhaustion=True)
            for state in states:
                state.reported = mark
        elif not verdict.retry:
            for state in states:
                state.reported = None
        return verdict

    @staticmethod
    def _owner_command(state: _State, streak: FailingStreak | None, verdict: RetryVerdict,
                       limit: int) -> RetryVerdict:
        """Count the owner's consecutive requests ending in the same failing command (whatever their
        session or how much history they carry)."""
        if streak is None:
            state.command, state.command_runs = None, 0
            return verdict
        command = (streak.name, streak.arguments)
        state.command_runs = state.command_runs + 1 if command == state.command else 1
        state.command = command
        if state.command_runs - 1 > verdict.retries:
            return _tool_verdict(FailingStreak(streak.name, streak.arguments, state.command_runs), limit)
        return verdict

    def outcome(self, session_id: str | None, *, failed: bool, owner: str | None = None) -> None:
        """How the session's last request ended: a failure makes an identical re-send a retry."""
        for key in _keys(session_id, owner):
            state = self._sessions.get(key)
            if state is not None:
                state.failed = failed

    def add_retry_cost(self, session_id: str | None, cost_micros: int, *, owner: str | None = None) -> None:
        """Count the real cost of a request that was retry spend (reported in ``RetryLoopDetected``)."""
        if session_id and cost_micros > 0:
            self._state(_session_key(session_id, owner)).retry_cost_micros += cost_micros

    def retry_cost_micros(self, session_id: str | None, *, owner: str | None = None) -> int:
        state = self._sessions.get(_session_key(session_id, owner)) if session_id else None
        return state.retry_cost_micros if state else 0

    def _states(self, session_id: str | None, owner: str | None) -> list[_State]:
        """The states a request counts in: its (namespaced) session's, then its owner's."""
        return [self._state(key) for key in _keys(session_id, owner)]

    def _state(self, session_id: str) -> _State:
        state = self._sessions.get(session_id)
        if state is None:
            state = self._sessions[session_id] = _State()
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        return state


def _session_key(session_id: str, owner: str | None) -> str:
    return f"{owner}\x00{session_id}" if owner else session_id


def _keys(session_id: str | None, owner: str | None) -> list[str]:
    keys = [_session_key(session_id, owner)] if session_id else []
    if owner:
        keys.append(f"{owner}\x00*")  # the owner's own state (no session key ends in NUL + "*")
    return keys


def _tool_verdict(streak: FailingStreak, cap: int) -> RetryVerdict:
    return RetryVerdict("tool_call", streak.count - 1, cap, streak.name, command_text(streak.arguments))
