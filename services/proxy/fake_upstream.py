"""A fake OpenAI (and Anthropic) upstream for tests, benchmarks and demos (``spendgate fake-upstream``).

``/model/{id}/converse`` and ``/converse-stream`` answer as AWS Bedrock does, with the SigV4 signature
checked (:mod:`spendgate.proxy.fake_bedrock`).

``/v1/messages`` (streamed and not, ``tool_use`` blocks) and ``/v1/messages/count_tokens`` answer in
Anthropic's shapes (:mod:`spendgate.proxy.fake_anthropic`) with prompt-cache reads and writes in the usage.

Serves ``/v1/responses`` and ``/v1/chat/completions``, streamed (SSE, like OpenAI's) and not, with
realistic usage blocks (cached and reasoning tokens), a configurable latency and chunk pacing, and
scripted scenarios, chosen per request by the ``x-fake-scenario`` header or else taken in order from
the script (``POST /_fake/script {"scenarios": [...]}``):

- ``text``: an assistant message (the default);
- ``tool`` / ``tool:<command>``: an ``exec_command`` function call (Codex really runs it);
- ``error:<status>``: an OpenAI-format error with that status; ``error:<status>@<seconds>`` adds
  ``Retry-After: <seconds>`` (a 429 for the next N requests: N of them in the script);
- ``close``: the connection is closed before any answer (an upstream falling over);
- ``failed``: a stream that ends in ``response.failed``;
- ``truncated``: a stream that stops before ``response.completed`` (the connection is dropped);
- ``cut``: a stream that ends cleanly (EOF) before its terminal event, the way a broken-off proxy does;
- ``stall``: a stream that sends its first events, then nothing for an hour (read timeouts);
- ``mislabelled``: a normal stream served as ``text/plain`` instead of ``text/event-stream``;
- ``hang``: answers nothing for an hour (timeouts);
- ``absurd_usage``: a normal answer whose usage reports ``output_tokens`` 99999999999999999999999;
  ``negative_usage`` and ``string_usage`` report -1000 and ``"1000"``.

The providers' billing reports (OpenAI's organization Usage and Costs API, Anthropic's Usage & Cost Admin
API) answer from what was served, plus traffic injected with ``POST /_fake/bypass`` as if it had gone to
the provider around the gateway (:mod:`spendgate.proxy.fake_reports`; admin keys in :class:`FakeConfig`).

When the script is used up every request gets ``text``, so a Codex turn with a tool call finishes.

Azure OpenAI's shapes: ``/openai/deployments/{deployment}/chat/completions|responses`` (a dated
``api-version`` query required) and ``/openai/v1/chat/completions|responses``, both behind the
``api-key`` header (``azure_api_key`` when configured, else any non-empty key), answered 401 without it
in Azure's error shape; they then serve as the OpenAI routes do.
``GET /_fake/served`` returns what was served and billed: one record per model request. Every request
that reaches the fake, whatever its path, is kept in ``received`` (method, raw path, headers): tests of
what must never reach the provider assert on it. Beyond the model routes it serves the other routes in
spendgate's table with small canned answers: images (``n`` images), audio transcriptions and
translations (``duration`` seconds, from the ``x-fake-audio-seconds`` header, default 7), files,
batches, thread runs, file contents (from ``files``), and stored responses (``GET``/``DELETE /v1/responses/{id}``).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from spendgate.proxy import fake_anthropic, fake_reports
from spendgate.proxy.fake_bedrock import FakeBedrock
from spendgate.proxy.fake_streams import chat_body, chat_chunks, responses_body, responses_events

DEFAULT_TOOL_COMMAND = "echo spendgate-tool-ran"
ABSURD_TOKENS = 99999999999999999999999
USAGE_ANOMALIES: dict[str, Any] = {"absurd_usage": ABSURD_TOKENS, "negative_usage": -1_000, "string_usage": "1000"}
"""The ``output_tokens`` each usage-anomaly scenario reports."""


@dataclass
class FakeConfig:
    latency_ms: float = 0.0
    """Delay before the response headers."""
    chunks: int = 8
    """Text deltas per answer."""
    chunk_interval_ms: float = 0.0
    reasoning_tokens: int = 16
    record: bool = True
    """Keep a :class:`Served` record per request (off for long benchmarks)."""
    latency_jitter_ms: float = 0.0
    """Extra delay before the headers, drawn uniformly from [0, this) per request (seeded)."""
    output_tokens: list[int] | None = None
    """``[low, high]``: report output tokens drawn uniformly from this range (seeded) instead of the
    answer's word count plus ``reasoning_tokens`` (agent turns whose output varies widely)."""
    cached_share: float = 0.5
    """Share of the input reported as cached (in 64-token blocks)."""
    seed: int = 0
    openai_admin_key: str = fake_reports.OPENAI_ADMIN_KEY
    anthropic_admin_key: str = fake_reports.ANTHROPIC_ADMIN_KEY
    """What the billing report routes accept (Bearer / ``x-api-key``)."""
    azure_api_key: str | None = None
    """The ``api-key`` the Azure routes accept; unset: any non-empty one."""


@dataclass
class Served:
    """One model request the fake answered, with the usage it reported (what it "billed")."""

    path: str
    model: str
    scenario: str
    stream: bool
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    reported: bool
    session_id: str | None
    authorization: str | None
    tool_output: str | None = None
    turn_metadata: str | None = None
    """The ``x-codex-turn-metadata`` header as received."""
    """The output of the tool call this request reports back (Codex ran the command), if any."""
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    """Input written to the prompt cache (``/v1/messages`` only)."""
    api_key: str | None = None
    """The ``x-api-key`` header as received (the Anthropic routes' credential)."""
    served_at: float = field(default_factory=time.time)
    """When it was served (Unix seconds): the day the billing reports put it on."""

    def billed(self) -> fake_reports.Billed:
        """This request as the provider bills it (every served request is billed, cut streams included)."""
        anthropic = self.path.startswith("/v1/messages")
        return fake_reports.Billed(
            "anthropic" if anthropic else "openai", datetime.fromtimestamp(self.served_at, UTC).date(), self.model,
            fake_reports.key_id(self.api_key if anthropic else self.authorization), self.input_tokens,
            self.cached_tokens, self.cache_write_5m_tokens, self.cache_write_1h_tokens, self.output_tokens)


@dataclass(frozen=True)
class Received:
    """One HTTP request as it reached the fake (before routing)."""

    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    config: FakeConfig = field(default_factory=FakeConfig)
    script: deque[str] = field(default_factory=deque)
    served: list[Served] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    bypass: list[fake_reports.Billed] = field(default_factory=list)
    """Billed traffic that never went through the gateway (``POST /_fake/bypass``)."""
    files: dict[str, bytes] = field(default_factory=dict)
    """File contents by id, served at ``GET /v1/files/{id}/content`` (tests put batch input files here)."""
    bedrock: FakeBedrock = field(default_factory=FakeBedrock)
    """AWS Bedrock's Converse API at ``/model/{id}/converse[-stream]`` (:mod:`spendgate.proxy.fake_bedrock`)."""
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _rng: random.Random | None = None

    def _random(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(self.config.seed)
        return self._rng

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            if not request.path.startswith("/_fake/") and self.config.record:
                body = await request.read() if request.body_exists else b""
                self.received.append(Received(request.method, request.raw_path, dict(request.headers), body))
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[record])
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/images/edits", self._images)
        app.router.add_post("/v1/images/variations", self._images)
        app.router.add_post("/v1/audio/transcriptions", self._audio)
        app.router.add_post("/v1/audio/translations", self._audio)
        app.router.add_post("/v1/files", self._object("file"))
        app.router.add_get("/v1/files", self._object("list"))
        app.router.add_get("/v1/files/{id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._object("batch"))
        app.router.add_get("/v1/batches/{id}", self._object("batch"))
        app.router.add_post("/v1/threads/runs", self._object("thread.run"))
        app.router.add_post("/v1/threads/{id}/runs", self._object("thread.run"))
        app.router.add_get("/v1/responses/{id}", self._object("response"))
        app.router.add_delete("/v1/responses/{id}", self._object("response"))
        app.router.add_post("/v1/responses", self._model_request)
        app.router.add_post("/v1/chat/completions", self._model_request)
        app.router.add_post("/v1/responses/compact", self._model_request)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self.bedrock.add_routes(app)
        fake_reports.Reports(self._billed, openai_admin_key=self.config.openai_admin_key,
                             anthropic_admin_key=self.config.anthropic_admin_key).routes(app)
        app.router.add_post("/_fake/bypass", self._add_bypass)
        app.router.add_post("/openai/deployments/{deployment}/{route:chat/completions|responses}", self._azure)
        app.router.add_post("/openai/v1/{route:chat/completions|responses}", self._azure)
        app.router.add_post("/_fake/script", self._set_script)
        app.router.add_get("/_fake/served", self._served)
        app.router.add_post("/_fake/reset", self._reset)
        return app

    def usage_for(self, body_bytes: int, text: str) -> tuple[int, int, int, int]:
        """Usage: ~4 bytes per input token, ``cached_share`` of it cached in 64-token blocks; output from
        the text (deterministic) or drawn from ``output_tokens`` (seeded)."""
        input_tokens = max(1, body_bytes // 4)
        cached = int(input_tokens * self.config.cached_share) // 64 * 64
        reasoning = self.config.reasoning_tokens
        output = len(text.split()) + reasoning
        if self.config.output_tokens:
            low, high = self.config.output_tokens
            output = self._random().randint(low, high)
            reasoning = min(reasoning, output)
        return input_tokens, cached, output, reasoning

    async def _model_request(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return _error(400, "fake upstream: body is not JSON", "invalid_request_error")
        scenario = request.headers.get("x-fake-scenario") or self._next_scenario(body)
        latency_ms = self.config.latency_ms
        if self.config.latency_jitter_ms:
            latency_ms += self._random().uniform(0, self.config.latency_jitter_ms)
        if scenario == "hang":
            await asyncio.sleep(3600)
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if (failure := _scripted_failure(scenario, request, _openai_failure)) is not None:
            return failure
        model = str(body.get("model") or "gpt-5.1")
        chat = request.path.endswith("/chat/completions")
        stream = bool(body.get("stream"))
        seq = next(self._ids)
        text = " ".join(f"word{i}" for i in range(self.config.chunks))
        tool_cmd = scenario.split(":", 1)[1] if scenario.startswith("tool:") else DEFAULT_TOOL_COMMAND
        tool = scenario.startswith("tool")
        if tool:
            text = msgspec.json.encode({"cmd": tool_cmd}).decode()
        usage = self.usage_for(len(raw), text)
        if scenario in USAGE_ANOMALIES:
            usage = (usage[0], usage[1], USAGE_ANOMALIES[scenario], usage[3])
        include_usage = not chat or not stream or bool((body.get("stream_options") or {}).get("include_usage"))
        reported = scenario not in ("truncated", "cut", "stall") and include_usage
        if self.config.record:
            self.served.append(Served(
                request.path, model, scenario, stream, *usage, reported=reported,
                session_id=request.headers.get("session-id") or request.headers.get("session_id"),
                authorization=request.headers.get("Authorization"), tool_output=_tool_output(body),
                turn_metadata=request.headers.get("x-codex-turn-metadata"),
            ))
        headers = {"x-request-id": f"req_fake_{seq:08d}", "openai-model": model, "x-openai-model": model}
        if not stream:
            doc = chat_body(seq, model, text, usage) if chat else responses_body(seq, model, text, usage, tool)
            return web.Response(body=msgspec.json.encode(doc), content_type="application/json", headers=headers)
        content_type = "text/plain; charset=utf-8" if scenario == "mislabelled" else "text/event-stream"
        response = web.StreamResponse(headers={**headers, "Content-Type": content_type,
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        events = (chat_chunks(seq, model, text, usage, include_usage, self.config.chunks) if chat
                  else responses_events(seq, model, text, usage, tool, self.config.chunks,
                                        failed=scenario == "failed"))
        interval = self.config.chunk_interval_ms / 1000
        for i, event in enumerate(events):
            if scenario in ("truncated", "cut") and i >= 4:
                break
            if scenario == "stall" and i >= 4:
                await asyncio.sleep(3600)
            await response.write(event)
            if interval and (chat or b".delta" in event[:60]):
                await asyncio.sleep(interval)
        if scenario == "truncated":
            # Drop the connection mid-stream, the way a broken upstream does.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API: scenarios ``text``, ``tool`` / ``tool:<command>`` (a ``Bash``
        tool_use), ``error:<status>`` / ``error:<status>@<seconds>`` (with ``retry-after``), ``close``,
        ``cut`` (EOF before ``message_stop``); the script is taken only by requests that offer tools."""
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return _anthropic_error(400, "fake upstream: body is not JSON")
        # A request without tools (Claude Code's side tasks, such as a session title) gets text and leaves the
        # script to the main requests.
        scenario = request.headers.get("x-fake-scenario") or (
            self._next_scenario(body) if body.get("tools") else "text")
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        if (failure := _scripted_failure(scenario, request, _anthropic_failure)) is not None:
            return failure
        model = str(body.get("model") or "claude-sonnet-4-5")
        stream = body.get("stream") is True
        seq = next(self._ids)
        text = " ".join(f"word{i}" for i in range(self.config.chunks))
        command = (scenario.split(":", 1)[1] if scenario.startswith("tool:") else DEFAULT_TOOL_COMMAND) \
            if scenario.startswith("tool") else None
        total, read, w5, w1 = fake_anthropic.split_usage(len(raw), self.config.cached_share)
        output = len(text.split()) if command is None else 16
        usage = (total, read, w5, w1, output)
        if self.config.record:
            self.served.append(Served(
                request.path, model, scenario, stream, total, read, output, 0, reported=scenario != "cut",
                session_id=request.headers.get("x-claude-code-session-id"),
                authorization=request.headers.get("Authorization"), tool_output=fake_anthropic.tool_result_text(body),
                cache_write_5m_tokens=w5, cache_write_1h_tokens=w1, api_key=request.headers.get("x-api-key"),
            ))
        headers = {"request-id": f"req_fake_{seq:08d}"}
        if not stream:
            doc = fake_anthropic.message_body(seq, model, text, usage, command)
            return web.Response(body=msgspec.json.encode(doc), content_type="application/json", headers=headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        for i, event in enumerate(fake_anthropic.message_events(seq, model, text, usage, command, self.config.chunks)):
            if scenario == "cut" and i >= 3:
                break
            await response.write(event)
            if self.config.chunk_interval_ms and b"content_block_delta" in event[:40]:
                await asyncio.sleep(self.config.chunk_interval_ms / 1000)
        await response.write_eof()
        return response

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        """Azure OpenAI: the key in ``api-key`` (Azure's 401 otherwise), ``api-version`` on the deployment
        form; then the route as OpenAI serves it."""
        key = request.headers.get("api-key", "")
        if not key or (self.config.azure_api_key is not None and key != self.config.azure_api_key):
            body = {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong "
                                                        "API endpoint."}}
            return web.json_response(body, status=401)
        if "deployment" in request.match_info and not request.query.get("api-version"):
            body = {"error": {"code": "MissingApiVersionParameter",
                              "message": "The api-version query parameter (?api-version=) is required."}}
            return web.json_response(body, status=400)
        return await self._model_request(request)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        raw = await request.read()
        return web.json_response({"input_tokens": max(1, len(raw) // 4)})

    async def _images(self, request: web.Request) -> web.Response:
        n = 1
        if request.content_type == "application/json":
            n = int((await request.json()).get("n") or 1)
        data = [{"b64_json": "aW1hZ2U="} for _ in range(n)]
        return web.json_response({"created": 1_700_000_000, "data": data})

    async def _audio(self, request: web.Request) -> web.Response:
        seconds = float(request.headers.get("x-fake-audio-seconds", "7"))
        return web.json_response({"text": "hello", "usage": {"type": "duration", "seconds": seconds}})

    async def _file_content(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["id"])
        if content is None:
            return _error(404, "fake upstream: no such file", "invalid_request_error")
        return web.Response(body=content, content_type="application/octet-stream")

    @staticmethod
    def _object(kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({"id": request.match_info.get("id", f"{kind}_1"), "object": kind,
                                      "status": "queued"})
        return handler

    def _next_scenario(self, _body: dict[str, Any]) -> str:
        """The next scripted scenario; ``text`` when the script is used up (so a turn that reported a
        tool's output gets a final answer)."""
        return self.script.popleft() if self.script else "text"

    async def _models(self, _request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
                for m in ("gpt-5.1", "gpt-5.1-mini", "gpt-4.1-mini")]
        return web.json_response({"object": "list", "data": data})

    async def _set_script(self, request: web.Request) -> web.Response:
        doc = await request.json()
        self.script.extend(str(s) for s in doc.get("scenarios", []))
        if "config" in doc:
            for k, v in doc["config"].items():
                if not hasattr(self.config, k):
                    return web.json_response({"error": f"unknown config field {k!r}"}, status=400)
                setattr(self.config, k, v)
        return web.json_response({"script": list(self.script)})

    def _billed(self) -> list[fake_reports.Billed]:
        return [s.billed() for s in self.served] + self.bypass

    async def _add_bypass(self, request: web.Request) -> web.Response:
        try:
            lines = fake_reports.bypass_lines(await request.read())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.bypass.extend(lines)
        return web.json_response({"requests": sum(b.requests for b in lines)})

    async def _served(self, _request: web.Request) -> web.Response:
        return web.json_response({"served": [asdict(s) for s in self.served]})

    async def _reset(self, _request: web.Request) -> web.Response:
        self.served.clear()
        self.bypass.clear()
        self.received.clear()
        self.script.clear()
        return web.json_response({"ok": True})


def _tool_output(body: dict[str, Any]) -> str | None:
    items = body.get("input")
    if isinstance(items, list) and items and isinstance(items[-1], dict) \
            and items[-1].get("type") == "function_call_output":
        output = items[-1].get("output")
        return output if isinstance(output, str) else msgspec.json.encode(output).decode()
    return None


def _anthropic_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=fake_anthropic.error_body(status, message),
                        content_type="application/json",
                        headers={"request-id": f"req_fake_err_{int(time.time() * 1000)}"})


def _error(status: int, message: str, type_: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "code": type_, "param": None}}
    return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json",
                        headers={"x-request-id": f"req_fake_err_{int(time.time() * 1000)}"})


async def run_fake_upstream(host: str, port: int, config: FakeConfig, stop: asyncio.Event) -> None:
    runner = web.AppRunner(FakeUpstream(config).app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=2048, reuse_address=True).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _openai_failure(status: int) -> web.Response:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    return _error(status, f"fake upstream scripted failure {status}", kind)


def _anthropic_failure(status: int) -> web.Response:
    return _anthropic_error(status, f"fake upstream scripted failure {status}")


def _scripted_failure(scenario: str, request: web.Request,
                      failure: Callable[[int], web.Response]) -> web.Response | None:
    """The scripted ``error:<status>[@<retry-after>]`` and ``close`` scenarios, the same on both APIs but for
    the error's shape; None for any other scenario."""
    if scenario.startswith("error:"):
        status, _, after = scenario.split(":", 1)[1].partition("@")
        response = failure(int(status))
        if after:
            response.headers["Retry-After"] = after  # header names are case-insensitive
        return response
    if scenario == "close":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)  # never sent: the connection is gone
    return None
