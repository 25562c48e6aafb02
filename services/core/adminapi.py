"""The HTTP side of ``--api URL``: call a running admin API with the admin token, decode its JSON.

Any area's read command can read through the admin API with this (``spendgate report``, ``keys list``,
``forecast``, ``alerts dead``); the typed documents stay with the area that owns them. aiohttp is
imported only when a call is made, so a command on the database does not pay for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from spendgate.domain.errors import ConfigError, SpendgateError

if TYPE_CHECKING:
    import aiohttp

    from spendgate.core.config import Settings

T = TypeVar("T")

SAME_AS_DATABASE = (400, 404, 409)
"""Statuses whose message reads as the database source's error does (``no budget for org``)."""


class AdminApi:
    """A running admin API at ``base_url`` (``http://127.0.0.1:8081``), called with the admin token."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.http, self.base_url, self.token = session, base_url.rstrip("/"), token

    async def call(self, method: str, path: str, result: type[T], *, query: Mapping[str, str] | None = None,
                   body: Any = None) -> T:
        """``method path`` decoded as ``result``; an error status is a :class:`SpendgateError` with the
        API's message (as the database source words it for 400, 404 and 409)."""
        import aiohttp

        try:
            async with self.http.request(
                method, self.base_url + path, params=query, json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    try:
                        message = msgspec.json.decode(raw)["error"]["message"]
                    except (msgspec.DecodeError, KeyError, TypeError):
                        message = raw.decode(errors="replace")[:500]
                    if resp.status in SAME_AS_DATABASE:
                        raise SpendgateError(message)
                    raise SpendgateError(f"admin API {resp.status}: {message}")
                try:
                    return msgspec.json.decode(raw, type=result)
                except msgspec.DecodeError as exc:
                    raise SpendgateError(f"{self.base_url} did not answer as the admin API does: {exc}") from None
        except aiohttp.ClientError as exc:
            raise SpendgateError(f"cannot reach the admin API at {self.base_url}: {exc}") from exc
        except ValueError as exc:  # yarl: not a URL at all
            raise SpendgateError(f"--api {self.base_url!r} is not a URL such as http://127.0.0.1:8081 ({exc})") \
                from None


@contextlib.asynccontextmanager
async def open_admin_api(settings: Settings, api_url: str) -> AsyncIterator[AdminApi]:
    """The admin API at ``api_url``, with ``SPENDGATE_ADMIN_TOKEN``; a clear error without the token."""
    import aiohttp

    token = settings.api_token or settings.admin_token
    if token is None:
        raise ConfigError("--api needs a credential: set SPENDGATE_API_TOKEN to a named API token "
                          "(spendgate tokens create) or SPENDGATE_ADMIN_TOKEN to the break-glass token")
    async with aiohttp.ClientSession() as http:
        yield AdminApi(http, api_url, token.get_secret_value())
