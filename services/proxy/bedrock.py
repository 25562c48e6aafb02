"""AWS Bedrock behind the OpenAI routes: a configured model's request goes to Bedrock's Converse API.

The handler asks :meth:`BedrockUpstream.serves` with the model a request is forwarded with (after any
downgrade) and, on ``/v1/responses`` and ``/v1/chat/completions``, gets from :meth:`BedrockUpstream.open`
a :class:`BedrockAnswer` in place of the OpenAI upstream's response: the same ``status``, ``headers``,
``read()`` and ``content.iter_any()`` the relay and the stream tap already consume, with the body already
in the OpenAI shape the client asked for (:mod:`spendgate.proxy.bedrock_request`,
:mod:`spendgate.proxy.bedrock_response`). Metering, enforcement, attribution and the usage event are the
proxy's own, unchanged.

Requests are signed with SigV4 (botocore's ``SigV4Auth``, service ``bedrock``) with the credentials of
botocore's standard chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, a
profile, SSO, container or instance roles), resolved once at start; temporary credentials are refreshed
by botocore, in a thread. Streamed answers are AWS event-stream frames
(``application/vnd.amazon.eventstream``), read with :mod:`spendgate.proxy.eventstream`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from spendgate.core.config_providers import BedrockSettings
from spendgate.core.logs import get_logger
from spendgate.domain.errors import ConfigError
from spendgate.proxy import errors
from spendgate.proxy.bedrock_request import ConverseCall, Untranslatable, translate
from spendgate.proxy.bedrock_response import StreamTranslator, answer_body, usage_from_converse
from spendgate.proxy.eventstream import FrameError, FrameReader, HeaderValue
from spendgate.proxy.normalise import MAX_ID_CHARS, clean
from spendgate.proxy.tap import StreamTap
from spendgate.proxy.usage import Usage

if TYPE_CHECKING:
    from botocore.credentials import Credentials

SIGNING_NAME = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
log = get_logger(__name__)
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_exceeded"}


def load_credentials(settings: BedrockSettings) -> Credentials:
    """The AWS credentials botocore's chain finds (blocking: call it in a thread); a ConfigError naming
    what to set when there are none."""
    import botocore.exceptions
    import botocore.session

    try:
        found = botocore.session.Session(profile=settings.profile).get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigError(f"bedrock: cannot load AWS credentials: {exc}") from None
    if found is None:
        raise ConfigError("bedrock: models are configured but no AWS credentials were found: set "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), "
                          "or AWS_PROFILE / bedrock.profile")
    return found


class BedrockUpstream:
    """Bedrock's Converse API for the models of ``settings.models`` (client name → Bedrock model id)."""

    def __init__(self, settings: BedrockSettings, credentials: Credentials, http: aiohttp.ClientSession) -> None:
        assert settings.region is not None  # the settings refuse models without a region
        self.models = dict(settings.models)
        self.default_max_tokens = settings.default_max_tokens
        self.region = settings.region
        self.endpoint = (settings.endpoint_url or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        self.credentials = credentials
        self.http = http

    def serves(self, model: str) -> bool:
        return model in self.models

    async def open(self, template: str, body: bytes, model: str) -> BedrockAnswer:
        """Translate, sign and send the request; the answer is translated as it is read."""
        try:
            call = translate(template, body, default_max_tokens=self.default_max_tokens)
        except Untranslatable as exc:
            return BedrockAnswer.error(400, exc.message, code="unsupported_for_bedrock", param=exc.param)
        action = "converse-stream" if call.stream else "converse"
        url = f"{self.endpoint}/model/{urllib.parse.quote(self.models[model], safe='')}/{action}"
        data = msgspec.json.encode(call.body)
        headers = await self._signed_headers(url, data, EVENT_STREAM if call.stream else "application/json")
        upstream = await self.http.post(URL(url, encoded=True), data=data, headers=headers, allow_redirects=False)
        request_id = upstream.headers.get("x-amzn-RequestId") or uuid.uuid4().hex
        if upstream.status >= 400 or not call.stream:
            async with upstream:
                try:
                    raw = await upstream.read()
                except aiohttp.ClientPayloadError:
                    return BedrockAnswer.error(502, "spendgate: Bedrock broke off its answer.", code="upstream_error")
            if upstream.status >= 400:
                return _bedrock_error(upstream.status, upstream.headers, raw, request_id)
            return BedrockAnswer.body(call, raw, request_id)
        return BedrockAnswer(200, _headers("text/event-stream", request_id), stream=(upstream, call, request_id))

    async def _signed_headers(self, url: str, data: bytes, accept: str) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import RefreshableCredentials

        creds = self.credentials
        if isinstance(creds, RefreshableCredentials) and creds.refresh_needed():
            await asyncio.to_thread(creds.get_frozen_credentials)  # refreshes over the network: not on the loop
        frozen = creds.get_frozen_credentials()
        request = AWSRequest(method="POST", url=url, data=data,
                             headers={"Content-Type": "application/json", "Accept": accept})
        SigV4Auth(frozen, SIGNING_NAME, self.region).add_auth(request)
        return dict(request.headers.items())


def _headers(content_type: str, request_id: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({"Content-Type": content_type, "x-request-id": request_id}))


def _bedrock_error(status: int, headers: Any, raw: bytes, request_id: str) -> BedrockAnswer:
    """Bedrock's error (``{"message"}``, its kind in ``x-amzn-ErrorType``) in OpenAI's shape, same status."""
    kind = clean((headers.get("x-amzn-ErrorType") or "").split(":", 1)[0], MAX_ID_CHARS) or "BedrockError"
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        doc = None
    message = doc.get("message") or doc.get("Message") if isinstance(doc, dict) else None
    log.warning("bedrock refused the request", status=status, error_type=kind, request_id=request_id)
    type_ = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return BedrockAnswer.error(status, f"bedrock: {kind}: {message if isinstance(message, str) else 'no message'}",
                               code=kind, type_=type_, request_id=request_id)


class BedrockAnswer:
    """Bedrock's answer as the relay reads an upstream response (``status``, ``headers``, ``read()``,
    ``content.iter_any()``, ``async with``), already in the client's OpenAI shape; :attr:`usage` and
    :meth:`tap` give the metering Converse's own counts."""

    def __init__(self, status: int, headers: CIMultiDictProxy[str], *, data: bytes = b"",
                 stream: tuple[aiohttp.ClientResponse, ConverseCall, str] | None = None,
                 usage: Usage | None = None) -> None:
        self.status = status
        self.headers = headers
        self._data = data
        self._stream = stream
        self._usage = usage
        self._translator: StreamTranslator | None = None
        self.content = self

    @property
    def usage(self) -> Usage | None:
        """What Bedrock reported: the answer's ``usage``, or the stream's ``metadata`` once it went by."""
        return self._translator.usage if self._translator is not None else self._usage

    def tap(self, *, strip_usage_chunk: bool) -> StreamTap:
        """The stream tap for this answer: relays (and strips) as any tap, meters :attr:`usage`."""
        return BedrockTap(self, strip_usage_chunk=strip_usage_chunk)

    @classmethod
    def error(cls, status: int, message: str, *, code: str, type_: str | None = None, param: str | None = None,
              request_id: str | None = None) -> BedrockAnswer:
        body = errors.error_body(message, type_=type_ or _ERROR_TYPES.get(status, "server_error"), code=code,
                                 param=param)
        return cls(status, _headers("application/json", request_id or uuid.uuid4().hex), data=body)

    @classmethod
    def body(cls, call: ConverseCall, raw: bytes, request_id: str) -> BedrockAnswer:
        try:
            doc = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return cls.error(502, "spendgate: Bedrock answered with a body that is not JSON.", code="upstream_error")
        return cls(200, _headers("application/json", request_id), data=answer_body(call, doc, _short(request_id)),
                   usage=usage_from_converse(doc.get("usage")) if isinstance(doc, dict) else None)

    async def read(self) -> bytes:
        return self._data

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The translated stream, event by event as Bedrock sends them."""
        if self._stream is None:
            if self._data:
                yield self._data
            return
        upstream, call, request_id = self._stream
        translator = self._translator = StreamTranslator(call, _short(request_id))
        frames = FrameReader()
        async for chunk in upstream.content.iter_any():
            try:
                whole = frames.feed(chunk)
            except FrameError as exc:  # relay what came before the bad frame, then end as a broken stream
                out = b"".join(_translate_frame(translator, f.headers, f.payload) for f in exc.frames)
                if out:
                    yield out
                raise aiohttp.ClientPayloadError(f"Bedrock's event stream is corrupt ({exc})") from None
            out = b"".join(_translate_frame(translator, f.headers, f.payload) for f in whole)
            if out:
                yield out
        tail = translator.close()
        if tail:
            yield tail

    async def __aenter__(self) -> BedrockAnswer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._stream is not None:
            self._stream[0].release()


class BedrockTap(StreamTap):
    """A :class:`StreamTap` whose usage is Bedrock's own, cache writes and all (the translated stream's
    OpenAI usage block carries them only for the client to read)."""

    def __init__(self, answer: BedrockAnswer, *, strip_usage_chunk: bool) -> None:
        super().__init__(strip_usage_chunk=strip_usage_chunk)
        self._answer = answer

    @property
    def usage(self) -> Usage | None:
        return self._answer.usage


def _translate_frame(translator: StreamTranslator, headers: dict[str, HeaderValue], payload: bytes) -> bytes:
    kind = headers.get(":message-type")
    try:
        doc = msgspec.json.decode(payload) if payload else {}
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        doc = {}
    if kind == "event":
        return translator.event(str(headers.get(":event-type", "")), doc)
    if kind == "exception":
        message = doc.get("message") if isinstance(doc, dict) else None
        name = clean(str(headers.get(":exception-type", "")), MAX_ID_CHARS) or "exception"
        log.warning("bedrock stream ended with an exception", error_type=name)
        return translator.exception(name, message if isinstance(message, str) else "no message")
    if kind == "error":
        return translator.exception(clean(str(headers.get(":error-code", "")), MAX_ID_CHARS) or "error",
                                    str(headers.get(":error-message", "")))
    return b""


def _short(request_id: str) -> str:
    return request_id.replace("-", "")[:32] or f"{time.time_ns():x}"
