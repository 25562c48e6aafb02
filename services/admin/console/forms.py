"""The console's forms: reading a POSTed form safely, and turning a refusal into the page again.

A form's fields are read with caps (:data:`MAX_FIELD_CHARS`, or a larger cap for the few big fields such
as a policy proposal), NUL and undecodable bytes refused, then converted into the *same* msgspec types
the JSON API decodes (``msgspec.convert``), so the console and the API validate with one set of rules.
Whatever a page's action refuses (a bad field, a rule of the shared functions, a missing permission)
becomes a :class:`Refused`, which the page answers by rendering itself again with the message and a
4xx status; never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Identity
from spendgate.admin.middleware import ApiError
from spendgate.core.logs import get_logger
from spendgate.domain.errors import ConfigError

log = get_logger(__name__)

MAX_FIELD_CHARS = 1_000
MAX_BIG_FIELD_BYTES = 512 * 1024
"""A policy proposal (pasted or uploaded) may be this large; a real one is a few kilobytes."""

T = TypeVar("T")

#: What each field wants, for the message when msgspec refuses it (its own names a regex).
HINTS = {
    "daily": "US dollars such as 120 or 99.50", "weekly": "US dollars such as 600",
    "monthly": "US dollars such as 2500", "by": "US dollars such as 200",
    "developer": "a name of letters, digits and . _ @ + - (at most 128)",
    "team": "a name of letters, digits and . _ @ + - (at most 128)",
    "cost_center": "a name of letters, digits and . _ @ + - (at most 128)",
    "until": "a time such as 2026-12-05T18:00 (UTC)", "reason": "a reason of 1 to 500 characters",
    "thresholds": "three whole percentages such as 80, 95, 110", "retry_cap": "a whole number from 0 to 1000",
    "at_pause": "refuse, cheapest or step_down", "timezone": "an IANA time zone such as Europe/Berlin",
    "cascades": "lines such as gpt-5.1: gpt-5.1-mini, gpt-4.1-mini", "days": "a whole number of days, 1 to 366",
}


class Refused(Exception):
    """An action the console will not do: the message is shown on the page, with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def forbidden(message: str) -> Refused:
    return Refused(message, 403)


async def read_form(request: web.Request, *, big: Collection[str] = ()) -> dict[str, str]:
    """The POSTed fields (urlencoded or multipart; an uploaded file as its UTF-8 text), capped and clean."""
    try:
        data = await request.post()
    except ValueError as exc:
        raise Refused(f"the form could not be read: {exc}") from None
    out: dict[str, str] = {}
    for name, value in data.items():
        limit = MAX_BIG_FIELD_BYTES if name in big else MAX_FIELD_CHARS
        if isinstance(value, web.FileField):
            raw = value.file.read(limit + 1)
            if len(raw) > limit:
                raise Refused(f"{name}: the file is too large (at most {limit // 1024} KiB)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused(f"{name}: the file is not UTF-8 text") from None
        else:
            text = str(value)
        if len(text) > limit:
            raise Refused(f"{name} is too long (at most {limit:,} characters)")
        if "\x00" in text:
            raise Refused(f"{name} contains a NUL character")
        out[name] = text
    return out


def convert(fields: dict[str, Any], into: type[T]) -> T:
    """``fields`` as the API's request type ``into``, with the API's validation; a clear :class:`Refused`."""
    try:
        return msgspec.convert(fields, into)
    except msgspec.ValidationError as exc:
        found = re.search(r"`\$\.([a-z_]+)", str(exc))
        field = found.group(1) if found else None
        if field is not None and field in HINTS:
            raise Refused(f"{field}: give {HINTS[field]}") from None
        raise Refused(str(exc)) from None


Action = Callable[[web.Request, Identity], Awaitable[web.StreamResponse]]
Page = Callable[..., Awaitable[web.StreamResponse]]


def action(page: Page) -> Callable[[Action], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A form's handler: runs ``act`` for the signed-in identity; a refusal (ours, the API functions' or a
    configuration rule's, a domain type's ``ValueError``) renders ``page`` again with the message and a 4xx status."""

    def wrap(act: Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            who = identity_of(request)
            try:
                return await act(request, who)
            except Refused as exc:
                message, status = exc.message, exc.status
            except ApiError as exc:
                message, status = exc.message, exc.status if 400 <= exc.status < 500 else 400
            except ConfigError as exc:
                message, status = exc.message, 400
            except ValueError as exc:  # a domain constructor's refusal of a value the form let through
                message, status = str(exc), 400
            log.info("console action refused", path=request.path, actor=who.actor, status=status)
            return await page(request, error=message, status=status)

        return handle

    return wrap


def see_other(location: str) -> web.HTTPSeeOther:
    """After a change, the page again by GET (a reload does not repeat the change)."""
    return web.HTTPSeeOther(location)
