"""OpenAI-format error responses: ``{"error": {"message", "type", "code"}}`` with the right status."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder()


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> bytes:
    return _encoder.encode({"error": {"message": message, "type": type_, "code": code, "param": param}})


def error_response(
    status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
    param: str | None = None, headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status, body=error_body(message, type_=type_, code=code, param=param),
        content_type="application/json", headers=headers,
    )


def malformed_json(detail: str) -> web.Response:
    return error_response(400, f"We could not parse the JSON body of your request: {detail}",
                          code="invalid_json")


def body_too_large(limit_bytes: int) -> web.Response:
    return error_response(413, f"Request body is larger than this gateway's limit of {limit_bytes} bytes.",
                          code="request_too_large")


def unauthorized(message: str) -> web.Response:
    return error_response(401, message, code="invalid_api_key",
                          headers={"WWW-Authenticate": 'Bearer realm="spendgate"'})


def unknown_model(message: str, model: str) -> web.Response:
    return error_response(400, message, code="model_not_found", param="model")


def upstream_unreachable(detail: str) -> web.Response:
    return error_response(502, f"spendgate could not reach the upstream provider: {detail}",
                          type_="upstream_error", code="upstream_unreachable")


def upstream_timeout(timeout_s: float) -> web.Response:
    return error_response(504, f"The upstream provider did not answer within {timeout_s:g} s (timeout).",
                          type_="upstream_error", code="upstream_timeout")


def not_found(path: str) -> web.Response:
    return error_response(404, f"spendgate does not serve {path}; OpenAI routes live under /v1/.",
                          code="not_found")


def websocket_refused() -> web.Response:
    """Codex's built-in provider tries a WebSocket first and falls back to HTTP streaming on 426."""
    return error_response(426, "spendgate serves the Responses API over HTTP streaming, not WebSockets.",
                          code="websocket_unsupported", headers={"Upgrade": "http/1.1"})
