"""A fake AWS Bedrock runtime for tests and demos: ``converse`` and ``converse-stream``, SigV4 checked.

Shapes from the Bedrock API reference ("Converse", "ConverseStream", "TokenUsage", "Common errors"):
``POST /model/{modelId}/converse`` answers ``{"output": {"message"}, "stopReason", "usage", "metrics"}``;
``/converse-stream`` answers AWS event-stream frames (``application/vnd.amazon.eventstream``: prelude,
CRC32s, string headers ``:event-type`` / ``:message-type`` / ``:content-type``, a JSON payload) carrying
``messageStart``, ``contentBlockStart`` / ``Delta`` / ``Stop``, ``messageStop`` and ``metadata`` with the
usage. Errors are ``{"message"}`` with the kind in ``x-amzn-ErrorType``.

Every request's SigV4 signature is recomputed with botocore from the fake's known credentials and the
request as it arrived (method, raw path, the signed headers, the body): an unknown access key is a 403
``UnrecognizedClientException``, a wrong signature or a stale ``X-Amz-Date`` a 403
``InvalidSignatureException``, a missing one a 403 ``MissingAuthenticationTokenException``. The body is
checked as Bedrock does (turns start with ``user`` and alternate, no empty text, ``toolConfig`` present
when the history holds tool blocks): a 400 ``ValidationException`` otherwise.

Scenarios, taken in order from ``script`` (``text`` when it is used up): ``text``, ``tool`` (text, then
a ``toolUse`` of the request's first tool), ``error:<status>``, ``exception`` (a stream ending in a
``throttlingException`` frame), ``cut`` (a stream that ends before ``messageStop``), ``corrupt`` (a
stream whose fifth frame has a flipped byte).
"""

from __future__ import annotations

import binascii
import hmac
import itertools
import re
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TEST_ACCESS_KEY_ID = "AKIASPENDGATETEST001"
TEST_SECRET_ACCESS_KEY = "spendgate/fake+bedrock/secret-key-for-tests0"
TEST_REGION = "us-east-1"
MAX_SKEW_S = 300
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request,\s*"
                   r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})")
_enc = msgspec.json.Encoder()


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (string headers only)."""
    encoded = b"".join(len(k.encode()).to_bytes(1, "big") + k.encode() + b"\x07" + len(v.encode()).to_bytes(2, "big")
                       + v.encode() for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_frame(kind: str, doc: dict[str, Any]) -> bytes:
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 _enc.encode({**doc, "p": "abcdefgh"}))  # Bedrock pads payloads with a "p" field


def exception_frame(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 _enc.encode({"message": message}))


def check_signature(method: str, url: str, headers: Any, body: bytes, secrets: dict[str, str], region: str,
                    now: float) -> tuple[str, str] | None:
    """None when the request carries a valid SigV4 signature by one of ``secrets`` (access key → secret
    key) for ``region`` and service ``bedrock``; else Bedrock's error kind and message."""
    found = _AUTH.fullmatch(headers.get("Authorization", "").strip())
    amz_date = headers.get("X-Amz-Date", "")
    if found is None or not amz_date:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    access_key, day, scope_region, service, signed, signature = found.groups()
    secret = secrets.get(access_key)
    if secret is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "InvalidSignatureException", "X-Amz-Date is not a date."
    if abs(now - when) > MAX_SKEW_S:
        return "InvalidSignatureException", f"Signature expired: {amz_date} is more than 5 minutes from now."
    if (day, scope_region, service) != (amz_date[:8], region, "bedrock") or "host" not in signed.split(";"):
        return "InvalidSignatureException", "Credential should be scoped to a valid region and service 'bedrock'."
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers.get(name, "") for name in signed.split(";")})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret, headers.get("X-Amz-Security-Token")), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        return "InvalidSignatureException", ("The request signature we calculated does not match the signature you "
                                             "provided. Check your AWS Secret Access Key and signing method.")
    return None


def validation_problem(doc: Any) -> str | None:
    """What Bedrock's own validation would refuse in a Converse body, or None."""
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles[0] != "user":
        return "A conversation must start with a user message."
    if any(a == b for a, b in itertools.pairwise(roles)) or set(roles) - {"user", "assistant"}:
        return "A conversation must alternate between user and assistant roles."
    blocks = [b for m in messages for b in (m.get("content") or [])]
    if any(isinstance(b, dict) and b.get("text") == "" for b in blocks):
        return "The text field in the ContentBlock object is blank."
    if any(isinstance(b, dict) and ("toolUse" in b or "toolResult" in b) for b in blocks) and "toolConfig" not in doc:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


@dataclass
class ServedConverse:
    """One Converse request the fake answered and the usage it billed (Converse's own counts)."""

    model_id: str
    action: str
    scenario: str
    input_tokens: int
    """Converse's ``inputTokens``: input neither read from nor written to the cache."""
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    access_key: str
    request: dict[str, Any]


@dataclass
class FakeBedrock:
    secrets: dict[str, str] = field(default_factory=lambda: {TEST_ACCESS_KEY_ID: TEST_SECRET_ACCESS_KEY})
    region: str = TEST_REGION
    cached_share: float = 0.5
    """Share of the input reported as read from the cache (64-token blocks); a quarter of the rest as written."""
    script: deque[str] = field(default_factory=deque)
    served: list[ServedConverse] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    """The error kind of every request refused for its signature."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model_id}/converse", self._converse)
        app.router.add_post("/model/{model_id}/converse-stream", self._converse)

    def usage(self, body_bytes: int, output: int) -> dict[str, int]:
        total = max(1, body_bytes // 4)
        read = int(total * self.cached_share) // 64 * 64
        written = (total - read) // 4
        plain = total - read - written
        return {"inputTokens": plain, "outputTokens": output, "totalTokens": total + output,
                "cacheReadInputTokens": read, "cacheWriteInputTokens": written}

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        refused = check_signature(request.method, f"{request.scheme}://{request.host}{request.raw_path}",
                                  request.headers, raw, self.secrets, self.region, time.time())
        if refused is not None:
            self.rejected.append(refused[0])
            return _error(403, *refused)
        try:
            doc = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return _error(400, "SerializationException", "The body is not JSON.")
        problem = validation_problem(doc)
        if problem is not None:
            return _error(400, "ValidationException", problem)
        scenario = self.script.popleft() if self.script else "text"
        if scenario.startswith("error:"):
            status = int(scenario.split(":", 1)[1])
            kind = "ThrottlingException" if status == 429 else "InternalServerException"
            return _error(status, kind, f"fake bedrock scripted failure {status}")
        stream = request.path.endswith("/converse-stream")
        words = [f"word{i}" for i in range(8)]
        tool = _first_tool(doc) if scenario == "tool" else None
        usage = self.usage(len(raw), len(words) + (12 if tool else 0))
        self.served.append(ServedConverse(
            request.match_info["model_id"], "converse-stream" if stream else "converse", scenario,
            usage["inputTokens"], usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"],
            usage["outputTokens"], _access_key(request.headers.get("Authorization", "")), doc))
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        tool_use = {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": tool,
                    "input": {"cmd": "echo spendgate-tool-ran"}} if tool else None
        if not stream:
            content: list[dict[str, Any]] = [{"text": " ".join(words)}]
            if tool_use:
                content.append({"toolUse": tool_use})
            body = {"output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": "tool_use" if tool_use else "end_turn", "usage": usage, "metrics": {"latencyMs": 7}}
            return web.Response(body=_enc.encode(body), content_type="application/json", headers=headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        for n, event in enumerate(_events(words, tool_use, usage)):
            if scenario == "cut" and n >= 4:
                break
            if scenario == "exception" and n >= 4:
                await response.write(exception_frame("throttlingException", "Too many tokens, please wait."))
                break
            if scenario == "corrupt" and n == 4:
                event = event[:20] + bytes([event[20] ^ 0xFF]) + event[21:]
            await response.write(event)
        await response.write_eof()
        return response


def _events(words: list[str], tool_use: dict[str, Any] | None, usage: dict[str, int]) -> list[bytes]:
    out = [event_frame("messageStart", {"role": "assistant"})]
    out += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w if i == 0 else " " + w}})
            for i, w in enumerate(words)]
    out.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    if tool_use is not None:
        out.append(event_frame("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
            "toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}}}))
        args = _enc.encode(tool_use["input"]).decode()
        half = len(args) // 2
        out += [event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}})
                for piece in (args[:half], args[half:])]
        out.append(event_frame("contentBlockStop", {"contentBlockIndex": 1}))
    out.append(event_frame("messageStop", {"stopReason": "tool_use" if tool_use else "end_turn"}))
    out.append(event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 7}}))
    return out


def _first_tool(doc: dict[str, Any]) -> str:
    tools = (doc.get("toolConfig") or {}).get("tools") or []
    spec = tools[0].get("toolSpec") if tools and isinstance(tools[0], dict) else None
    return str(spec.get("name")) if isinstance(spec, dict) else "exec_command"


def _access_key(authorization: str) -> str:
    found = _AUTH.fullmatch(authorization.strip())
    return found.group(1) if found else ""


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.Response(status=status, body=_enc.encode({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                                 "x-amzn-RequestId": str(uuid.uuid4())})
