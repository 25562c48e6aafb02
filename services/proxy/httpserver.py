"""The proxy's HTTP server: aiohttp's, with its low-level errors answered in OpenAI's format.

aiohttp answers a request it cannot parse (a header longer than ``max_field_size``, a malformed request
line) itself, in plain text that quotes the parser's message, which can hold the offending header (a
virtual key), and logs it with the traceback. :class:`QuietRequestHandler` answers those in OpenAI's
error format without echoing anything and logs only the status and the error's class. A connection
that does not finish its request headers within ``header_timeout_s`` is closed: aiohttp's keep-alive
timer runs from the moment a connection opens until a request is complete, so it is that timer.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from spendgate.core.logs import get_logger
from spendgate.proxy import errors

log = get_logger(__name__)


class QuietRequestHandler(RequestHandler):  # type: ignore[type-arg]
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.warning("unreadable HTTP request", status=status, error=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = (errors.bad_http(status) if status < 500 else errors.error_response(
            500, "spendgate hit an internal error; the request was not completed.", type_="server_error",
            code="internal_error"))
        response.force_close()
        return response


class QuietServer(Server):  # type: ignore[type-arg]
    def __call__(self) -> RequestHandler:  # type: ignore[type-arg]
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are served by :class:`QuietRequestHandler`."""

    async def _make_server(self) -> Server:  # type: ignore[type-arg]
        server = await super()._make_server()
        server.__class__ = QuietServer
        return server


def server_kwargs(*, header_timeout_s: float, max_header_bytes: int) -> dict[str, Any]:
    """Handler arguments for :class:`QuietAppRunner`: header limits and the header timeout."""
    return {"keepalive_timeout": header_timeout_s, "max_line_size": max_header_bytes,
            "max_field_size": max_header_bytes}
