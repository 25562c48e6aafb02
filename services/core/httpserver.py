"""aiohttp's HTTP server with its low-level errors answered in the service's own API format.

aiohttp answers a request it cannot parse (a header longer than ``max_field_size``, a request line
longer than ``max_line_size``, a malformed request) itself, in plain text that quotes the parser's
message, which can hold the offending header (a virtual key, the admin token), and logs it with the
traceback. :class:`QuietAppRunner` serves connections with :class:`QuietRequestHandler`, which answers
those with the service's ``answer(status)`` (OpenAI's error format on the proxy, the admin API's JSON
error on the admin port) without echoing anything, and logs only the status and the error's class. A
connection that does not finish its request headers within ``header_timeout_s`` is closed: aiohttp's
keep-alive timer runs from the moment a connection opens until a request is complete, so it is that
timer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from spendgate.core.logs import get_logger

log = get_logger(__name__)

Answer = Callable[[int], web.StreamResponse]
"""The response to a request aiohttp could not read, by status (400, 413, 431, ... or 500)."""


class QuietRequestHandler(RequestHandler):  # type: ignore[type-arg]
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.warning("unreadable HTTP request", status=status, error=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        answer: Answer = self._manager.answer  # type: ignore[union-attr]
        response = answer(status)
        response.force_close()
        return response


class QuietServer(Server):  # type: ignore[type-arg]
    answer: Answer

    def __call__(self) -> RequestHandler:  # type: ignore[type-arg]
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are served by :class:`QuietRequestHandler`, answering what
    aiohttp cannot read with ``answer``."""

    def __init__(self, app: web.Application, *, answer: Answer, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._answer = answer

    async def _make_server(self) -> Server:  # type: ignore[type-arg]
        server = await super()._make_server()
        server.__class__ = QuietServer
        server.answer = self._answer  # type: ignore[attr-defined]
        return server


def server_kwargs(*, header_timeout_s: float, max_header_bytes: int) -> dict[str, Any]:
    """Handler arguments for :class:`QuietAppRunner`: header limits and the header timeout."""
    return {"keepalive_timeout": header_timeout_s, "max_line_size": max_header_bytes,
            "max_field_size": max_header_bytes}
