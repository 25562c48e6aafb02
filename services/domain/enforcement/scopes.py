"""The scopes a request falls in, and the names of budget scopes. Pure: no I/O.

A scope is one of ``key:<id>``, ``developer:<name>``, ``team:<name>``, ``cost_center:<name>`` or
``org``. A request is checked against every scope it falls in: its virtual key, its developer, its
team, its key's cost center (when the key has one) and the org.

A per-model budget is a scope of its own, written ``<scope>|model:<model>`` (``org|model:gpt-5.1``):
only the spend of that model counts in it, and its downgrade or pause applies to requests for that
model only. Budgets, raises, balances and crossings all key on that one string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spendgate.domain.errors import ConfigError, shown

ORG = "org"
KINDS = ("key", "developer", "team", "cost_center")
MODEL_SEP = "|model:"
"""Between a scope and the model a per-model budget restricts it to."""
_NAME = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,198}[^\x00-\x1f\x7f\s])?$")
"""Names as virtual keys carry them (free text, trimmed): no control characters, at most 200 long."""
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")
"""Model ids as providers spell them (``gpt-5.1``, ``anthropic.claude-sonnet-4-5-v1:0``), at most 128 long."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is spent for: the virtual key and the developer, team and cost center it belongs to."""

    key_id: str
    developer: str
    team: str
    cost_center: str | None = None

    def scopes(self) -> tuple[str, ...]:
        """Every scope the request falls in, narrowest first (the cost center only when the key has one)."""
        if self.cost_center:
            return (f"key:{self.key_id}", f"developer:{self.developer}", f"team:{self.team}",
                    f"cost_center:{self.cost_center}", ORG)
        return (f"key:{self.key_id}", f"developer:{self.developer}", f"team:{self.team}", ORG)


def model_scope(scope: str, model: str) -> str:
    """The scope of a per-model budget: ``scope``'s spend on ``model`` only."""
    return f"{scope}{MODEL_SEP}{model}"


def split_scope(scope: str) -> tuple[str, str | None]:
    """``(scope, model)`` of a per-model scope, ``(scope, None)`` of any other."""
    base, sep, model = scope.rpartition(MODEL_SEP)
    return (base, model) if sep else (scope, None)


def parse_model(text: str) -> str:
    """Validate a model id written by a person; return it trimmed."""
    model = text.strip()
    if not _MODEL.match(model):
        raise ConfigError(f"bad model {shown(text)}: a model id such as gpt-5.1 (letters, digits, . _ : / @ -, "
                          "at most 128 characters)")
    return model


def parse_scope(text: str) -> str:
    """Validate a scope written by a person (``team:platform``, ``org``, ``org|model:gpt-5.1``); return
    it normalised.

    Raises :class:`ConfigError` naming the accepted forms.
    """
    base, model = split_scope(text.strip())
    if model is not None:
        return model_scope(parse_scope(base), parse_model(model))
    scope = base
    if scope == ORG:
        return scope
    kind, sep, name = scope.partition(":")
    if not sep or kind not in KINDS or not _NAME.match(name.strip()):
        raise ConfigError(
            f"bad scope {shown(text)}: use key:<id>, developer:<name>, team:<name>, cost_center:<name> or org"
        )
    return f"{kind}:{name.strip()}"


def scope_kind(scope: str) -> str:
    """``key``, ``developer``, ``team``, ``cost_center`` or ``org`` (of a per-model scope: its scope's)."""
    return split_scope(scope)[0].partition(":")[0]


def scope_label(scope: str) -> str:
    """Human wording of a scope for messages: ``team platform``, ``developer alice``, ``the org``,
    ``the org on gpt-5.1``."""
    base, model = split_scope(scope)
    if base == ORG:
        label = "the org"
    else:
        kind, _, name = base.partition(":")
        label = f"{kind.replace('_', ' ')} {name}"
    return label if model is None else f"{label} on {model}"
