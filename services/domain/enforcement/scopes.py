"""The scopes a request falls in, and the names of budget scopes. Pure: no I/O.

A scope is one of ``key:<id>``, ``developer:<name>``, ``team:<name>`` or ``org``. A request is
checked against every scope it falls in: its virtual key, its developer, its team and the org.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spendgate.domain.errors import ConfigError

ORG = "org"
KINDS = ("key", "developer", "team")
_NAME = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,198}[^\x00-\x1f\x7f\s])?$")
"""Names as virtual keys carry them (free text, trimmed): no control characters, at most 200 long."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is spent for: the virtual key and the developer and team it belongs to."""

    key_id: str
    developer: str
    team: str

    def scopes(self) -> tuple[str, ...]:
        """Every scope the request falls in, narrowest first."""
        return (f"key:{self.key_id}", f"developer:{self.developer}", f"team:{self.team}", ORG)


def parse_scope(text: str) -> str:
    """Validate a scope written by a person (``team:platform``, ``org``); return it normalised.

    Raises :class:`ConfigError` naming the accepted forms.
    """
    scope = text.strip()
    if scope == ORG:
        return scope
    kind, sep, name = scope.partition(":")
    if not sep or kind not in KINDS or not _NAME.match(name.strip()):
        raise ConfigError(
            f"bad scope {text!r}: use key:<id>, developer:<name>, team:<name> or org"
        )
    return f"{kind}:{name.strip()}"


def scope_label(scope: str) -> str:
    """Human wording of a scope for messages: ``team platform``, ``developer alice``, ``the org``."""
    if scope == ORG:
        return "the org"
    kind, _, name = scope.partition(":")
    return f"{kind} {name}"
