"""OpenAI-format error responses: ``{"error": {"message", "type", "code"}}`` with the right status.

A message never carries more than :data:`~spendgate.proxy.normalise.MAX_ERROR_CHARS` characters or a
control character, whatever a client put in the value it names; the upstream's address and the
connection error are logged, never told to the client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec
from aiohttp import web

from spendgate.core.logs import get_logger
from spendgate.proxy.normalise import MAX_ERROR_CHARS, MAX_MODEL_CHARS, clean_text

log = get_logger(__name__)

_encoder = msgspec.json.Encoder()


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> bytes:
    return _encoder.encode({"error": {"message": clean_text(message, MAX_ERROR_CHARS), "type": type_,
                                      "code": code, "param": param}})


def error_response(
    status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
    param: str | None = None, headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status, body=error_body(message, type_=type_, code=code, param=param),
        content_type="application/json", headers=headers,
    )


def body_too_large(limit_bytes: int) -> web.Response:
    return error_response(413, f"Request body is larger than this gateway's limit of {limit_bytes} bytes.",
                          code="request_too_large")


def body_timeout(timeout_s: float) -> web.Response:
    response = error_response(408, f"The request body did not arrive within {timeout_s:g} s.", code="body_timeout")
    response.force_close()  # the rest of the body may still come: it must not be read as the next request
    return response


def unauthorized(message: str) -> web.Response:
    return error_response(401, message, code="invalid_api_key",
                          headers={"WWW-Authenticate": 'Bearer realm="spendgate"'})


def unknown_model(model: str) -> web.Response:
    shown = clean_text(model, MAX_MODEL_CHARS)
    return error_response(400, f"The model '{shown}' has no price in this gateway's pricing table, so spendgate "
                               "cannot meter it. Ask your spendgate admin to add it.",
                          code="model_not_found", param="model")


def upstream_unreachable(detail: str) -> web.Response:
    """The detail (it names the upstream's host) goes to the log only."""
    log.warning("upstream unreachable", detail=clean_text(detail, MAX_ERROR_CHARS))
    return error_response(502, "spendgate could not reach the upstream provider.",
                          type_="upstream_error", code="upstream_unreachable")


def upstream_timeout(timeout_s: float) -> web.Response:
    return error_response(504, f"The upstream provider did not answer within {timeout_s:g} s (timeout).",
                          type_="upstream_error", code="upstream_timeout")


def model_not_served(model: str) -> web.Response:
    shown = clean_text(model, MAX_MODEL_CHARS)
    return error_response(400, f"No upstream configured in this gateway serves the model '{shown}'. Ask your "
                               "spendgate admin to add it to an upstream's models.",
                          code="model_not_found", param="model")


def upstreams_resting(retry_after_s: float) -> web.Response:
    """Every upstream for the model is resting (open circuit or Retry-After): nothing was sent."""
    seconds = max(1, math.ceil(retry_after_s))
    return error_response(502, "Every upstream provider for this model is unavailable (failing or rate "
                               f"limited); retry in {seconds} s.", type_="upstream_error",
                          code="upstream_unavailable", headers={"Retry-After": str(seconds)})


def not_found() -> web.Response:
    return error_response(404, "spendgate does not serve this path; OpenAI routes live under /v1/.",
                          code="not_found")


def route_refused(status: int, message: str, code: str) -> web.Response:
    return error_response(status, message, code=code)


def bad_request(message: str, code: str = "invalid_request_body", param: str | None = None) -> web.Response:
    return error_response(400, message, code=code, param=param)


def model_required() -> web.Response:
    return error_response(400, "spendgate meters this route by the model named in the request body: name a "
                               "'model' (a stored prompt without one cannot be priced).",
                          code="model_required", param="model")


def unsupported_encoding() -> web.Response:
    return error_response(415, "spendgate does not accept compressed request bodies: send them with no "
                               "Content-Encoding.", code="unsupported_content_encoding")


def paused() -> web.Response:
    return error_response(429, "Your spendgate budget is paused: this route spends money, so it is refused "
                               "until the budget resets or is raised.",
                          type_="usage_limit_reached", code="budget_paused")


def unreadable(status: int) -> web.Response:
    """aiohttp's own parse errors (a header too long, two Content-Lengths, a malformed request line), without
    echoing; a 500 when aiohttp failed on its own.

    aiohttp gives no path with these (the request was never read), so the route's API is unknown: the body
    is in both APIs' shapes at once, OpenAI's ``{"error": {"message", "type", "code"}}`` plus Anthropic's
    top-level ``"type": "error"`` (an Anthropic client on ``/v1/messages`` got an OpenAI-only body before)."""
    if status >= 500:
        status, message, type_, code = 500, "spendgate hit an internal error; the request was not completed.", \
            "api_error", "internal_error"
    else:
        message = "spendgate could not read this HTTP request (a header or the request line is malformed or too large)."
        type_, code = "invalid_request_error", "bad_http_request"
    body = _encoder.encode({"type": "error", "error": {"message": message, "type": type_, "code": code,
                                                       "param": None}})
    return web.Response(status=status, body=body, content_type="application/json")


def metrics_unauthorized() -> web.Response:
    return error_response(401, "The metrics endpoint needs 'Authorization: Bearer <metrics token>'.",
                          code="invalid_metrics_token", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


def websocket_refused() -> web.Response:
    """Codex's built-in provider tries a WebSocket first and falls back to HTTP streaming on 426."""
    return error_response(426, "spendgate serves the Responses API over HTTP streaming, not WebSockets.",
                          code="websocket_unsupported", headers={"Upgrade": "http/1.1"})
