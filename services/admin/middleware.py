"""The admin API's JSON errors and the admin-token comparison (the identity chain in
:mod:`spendgate.admin.console.auth_chain` uses it).

The token is compared in constant time (``hmac.compare_digest`` over SHA-256 digests, so neither
content nor length leaks through timing). A virtual key is never an admin credential: it simply does
not match. Without a configured token every call is refused.
"""

from __future__ import annotations

import hashlib
import hmac

import asyncpg
import msgspec
from aiohttp import web

from spendgate.admin.openapi import Error, ErrorBody, Handler
from spendgate.admin.window import WindowError
from spendgate.core.logs import get_logger
from spendgate.domain.errors import MAX_MESSAGE_CHARS, ConfigError, SpendgateError

log = get_logger(__name__)

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """An error meant for the caller: status, machine type and a clear message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = _encoder.encode(Error(error=ErrorBody(type=kind, message=message)))
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def unreadable(status: int) -> web.Response:
    """aiohttp's own parse errors on the admin port (a header or request line too long, a malformed
    request), as the API's JSON error, echoing nothing (a header may hold the admin token)."""
    if status >= 500:
        return error_response(500, "internal", "internal error; see the admin service log")
    return error_response(status, "bad_request", "could not read this HTTP request (a header or the request "
                                                 "line is malformed or too large)")


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(value), content_type="application/json")


def token_matches(presented: str, expected: str | None) -> bool:
    """Constant-time comparison of the presented bearer token with the admin token."""
    if not expected:
        return False
    return hmac.compare_digest(hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(expected.encode()).digest())


def presented_token(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; unexpected ones are logged with the traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.kind, exc.message)
    except (WindowError, msgspec.ValidationError, msgspec.DecodeError, ConfigError, ValueError) as exc:
        message = exc.message if isinstance(exc, SpendgateError) else str(exc)
        return error_response(400, "bad_request", message[:MAX_MESSAGE_CHARS])
    except RecursionError:  # a JSON body nested thousands deep, decoded or walked
        return error_response(400, "bad_request", "the request body nests too deeply")
    except (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        return error_response(400, "bad_request", "text in the request has characters PostgreSQL cannot "
                              "store (such as NUL)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, kinds.get(exc.status, "bad_request"), exc.reason, allow)
    except Exception:  # supervisor: the one place an unexpected error turns into a 500
        log.exception("admin API request failed", path=request.path, method=request.method)
        return error_response(500, "internal", "internal error; see the admin service log")
