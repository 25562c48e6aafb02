"""Routing rules: always-on model routes beside the budget stages. Pure: no I/O.

A rule says "turns estimated under ``max_input_tokens`` input tokens, in ``scope``, between ``hours``
(local time in ``timezone``), go to ``model``" (docs/policy.md, "Versions, signatures and routing
rules")::

    routing_rules:
      - name: platform-small-daytime
        scope: team:platform        # key:<id>, developer:<name>, team:<name>, cost_center:<name>, org (default)
        max_input_tokens: 8000      # turns estimated under this many input tokens
        hours: "09:00-17:00"        # optional: start inclusive, end exclusive, may wrap midnight (22:00-06:00)
        timezone: Europe/Berlin     # optional: the scope's budget's time zone, else UTC
        model: gpt-5.1-mini
        models: [gpt-5.1]           # optional: the requested models it applies to; default every model
                                    # whose cascade steps down to ``model``

:class:`RoutingTable` is built once per policy (rules indexed by scope) and evaluated inside the
enforcement decision on every request, from memory: the narrowest scope's rules first (key, developer,
team, cost center, org), in document order within a scope; the first that matches wins. A request whose
scopes carry no rule costs one dictionary lookup per scope (by the principal's own fields: no scope
string is built).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from spendgate.domain.enforcement.scopes import Principal, parse_model, parse_scope, split_scope
from spendgate.domain.errors import ConfigError, shown
from spendgate.domain.periods import zone

_PRINCIPAL_FIELDS = (("key", "key_id"), ("developer", "developer"), ("team", "team"), ("cost_center", "cost_center"))
Chain = Callable[[str, Principal], tuple[str, ...]]
"""``Policy.chain_of``: a model's cascade for a principal's request."""
MAX_ROUTING_RULES = 200
"""Rules one policy may carry (a policy file or API body is operator input: keep it bounded)."""
MAX_RULE_MODELS = 64
MAX_INPUT_TOKENS_LIMIT = 10_000_000
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOURS = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
_RULE_KEYS = frozenset({"name", "scope", "max_input_tokens", "hours", "timezone", "model", "models"})


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One validated rule; ``hours`` as minutes of the local day, ``None``: all day."""

    name: str
    scope: str
    max_input_tokens: int
    model: str
    timezone: str = "UTC"
    hours: tuple[int, int] | None = None
    models: tuple[str, ...] | None = None
    """The requested models it applies to; None: every model whose cascade steps down to ``model``."""

    def in_hours(self, minute_of_day: int) -> bool:
        """Whether a local minute of the day falls in the rule's hours (start inclusive, end exclusive)."""
        if self.hours is None:
            return True
        start, end = self.hours
        if start < end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end  # wraps midnight

    def applies_to(self, requested: str, principal: Principal, chain: Chain) -> bool:
        """Whether ``principal``'s request for ``requested`` may be routed by this rule (``chain``: the
        policy's cascade of a model for a principal)."""
        if requested == self.model:
            return False
        if self.models is not None:
            return requested in self.models
        return self.model in chain(requested, principal)[1:]

    def document(self) -> dict[str, Any]:
        """The rule in the policy document's form (the time zone always written out)."""
        doc: dict[str, Any] = {"name": self.name, "scope": self.scope, "max_input_tokens": self.max_input_tokens}
        if self.hours is not None:
            doc["hours"] = format_hours(self.hours)
        doc.update(timezone=self.timezone, model=self.model)
        if self.models is not None:
            doc["models"] = list(self.models)
        return doc


def format_hours(hours: tuple[int, int]) -> str:
    (sh, sm), (eh, em) = divmod(hours[0], 60), divmod(hours[1], 60)
    return f"{sh:02d}:{sm:02d}-{eh:02d}:{em:02d}"


def parse_hours(text: object, *, what: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes of the day; ``24:00`` is the end of the day."""
    m = _HOURS.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f"{what}: hours must look like \"09:00-17:00\", not {shown(text)}")
    sh, sm, eh, em = (int(g) for g in m.groups())
    if sm > 59 or em > 59 or sh > 23 or eh > 24 or (eh == 24 and em):
        raise ConfigError(f"{what}: hours {shown(text)} name a time that does not exist (00:00 to 24:00)")
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise ConfigError(f"{what}: hours {shown(text)} start and end at the same time; leave hours out for all day")
    return start, end


def parse_rules(docs: object, *, timezone_of: Callable[[str], str]) -> tuple[RoutingRule, ...]:
    """Validate the ``routing_rules`` list of a policy document. ``timezone_of(scope)``: the time zone a
    rule without one uses (the scope's budget's). Errors name the rule and the field."""
    if docs is None:
        return ()
    if not isinstance(docs, list):
        raise ConfigError("invalid policy: routing_rules must be a list of rules")
    if len(docs) > MAX_ROUTING_RULES:
        raise ConfigError(f"invalid policy: at most {MAX_ROUTING_RULES} routing rules, not {len(docs)}")
    rules: list[RoutingRule] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        rule = _parse_rule(doc, i, timezone_of)
        if rule.name in seen:
            raise ConfigError(f"invalid policy: two routing rules are named {rule.name!r}")
        seen.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def _parse_rule(doc: object, index: int, timezone_of: Callable[[str], str]) -> RoutingRule:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"routing_rules.{index}: a rule is a mapping with name, max_input_tokens, model, …")
    name = doc.get("name")
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"routing_rules.{index}.name: give each rule a name of letters, digits, '.', '_' or "
                          f"'-' (at most 64), not {shown(name)}")
    what = f"routing rule {name}"
    unknown = sorted(set(doc) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{what}: unknown field {shown(unknown[0])} (fields: {', '.join(sorted(_RULE_KEYS))})")
    scope = parse_scope(str(doc.get("scope", "org")))
    if split_scope(scope)[1] is not None:
        raise ConfigError(f"{what}: scope {shown(scope)}: a rule's scope names no model (use models: instead)")
    limit = doc.get("max_input_tokens")
    if limit is None:
        raise ConfigError(f"{what}: max_input_tokens is required: the rule routes turns under that many input "
                          f"tokens (a whole number from 1 to {MAX_INPUT_TOKENS_LIMIT:,})")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_INPUT_TOKENS_LIMIT:
        raise ConfigError(f"{what}: max_input_tokens must be a whole number from 1 to {MAX_INPUT_TOKENS_LIMIT:,}, "
                          f"not {shown(limit)}")
    target = doc.get("model")
    if not isinstance(target, str):
        raise ConfigError(f"{what}: model (the model the turns go to) is required")
    model = _model(target, what)
    hours = None if doc.get("hours") is None else parse_hours(doc["hours"], what=what)
    tz = doc.get("timezone")
    if tz is not None and not isinstance(tz, str):
        raise ConfigError(f"{what}: timezone must be an IANA name such as Europe/Berlin")
    timezone = tz if tz is not None else timezone_of(scope)
    try:
        zone(timezone)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc.message}") from None
    models = _models(doc.get("models"), what, model)
    return RoutingRule(name, scope, limit, model, timezone, hours, models)


def _model(text: str, what: str) -> str:
    try:
        return parse_model(text)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc.message}") from None


def _models(value: object, what: str, target: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not 1 <= len(value) <= MAX_RULE_MODELS:
        raise ConfigError(f"{what}: models must be a list of 1 to {MAX_RULE_MODELS} requested models")
    models = tuple(_model(str(m), what) for m in value)
    if target in models:
        raise ConfigError(f"{what}: models lists {target}, the model it routes to")
    if len(set(models)) != len(models):
        raise ConfigError(f"{what}: models names a model twice")
    return models


@dataclass(frozen=True)
class RoutingTable:
    """A policy's rules, indexed by scope; :meth:`match` is the request-path evaluation (memory only)."""

    rules: tuple[RoutingRule, ...] = ()
    _index: dict[str, dict[str, tuple[RoutingRule, ...]]] = field(default_factory=dict, compare=False, repr=False,
                                                                  init=False)
    """Rules by scope kind (``key``, ``developer``, ``team``, ``cost_center``, ``org``) and value: a request
    is looked up by its principal's fields, with no scope string built."""
    _lookups: list[tuple[str, dict[str, tuple[RoutingRule, ...]]]] = field(default_factory=list, compare=False,
                                                                           repr=False, init=False)
    """Only the scope kinds that have rules, narrowest first: (the principal's field, rules by its value)."""
    _minutes: dict[str, tuple[datetime, datetime, int]] = field(default_factory=dict, compare=False, repr=False,
                                                                init=False)
    """Local minute of the day per time zone: a cache, valid for the UTC minute it was computed in."""

    def __post_init__(self) -> None:
        for kind in ("key", "developer", "team", "cost_center", "org"):
            self._index[kind] = {}
        for rule in self.rules:
            kind, _, value = rule.scope.partition(":")
            by_value = self._index[kind]
            by_value[value] = (*by_value.get(value, ()), rule)
        self._lookups.extend((attr, self._index[kind]) for kind, attr in _PRINCIPAL_FIELDS if self._index[kind])
        self._lookups.extend(("", {"": rules}) for rules in [self._index["org"].get("")] if rules)

    def match(self, principal: Principal, model: str, est_input_tokens: int, now: datetime,
              chain: Chain) -> RoutingRule | None:
        """The first rule (narrowest scope first, then document order) that routes this request, if any."""
        for attr, by_value in self._lookups:
            rules = by_value.get(getattr(principal, attr) if attr else "")
            if rules is None:
                continue
            for rule in rules:
                if (est_input_tokens < rule.max_input_tokens and rule.in_hours(self.minute_of_day(rule.timezone, now))
                        and rule.applies_to(model, principal, chain)):
                    return rule
        return None

    def minute_of_day(self, timezone: str, now: datetime) -> int:
        """``now``'s local minute of the day in ``timezone`` (cached for the UTC minute)."""
        cached = self._minutes.get(timezone)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        local = now.astimezone(zone(timezone))
        start = now.replace(second=0, microsecond=0)
        minute = local.hour * 60 + local.minute
        self._minutes[timezone] = (start, start + timedelta(minutes=1), minute)
        return minute


def stored_rules(document: Mapping[str, Any]) -> RoutingTable:
    """The routing table of a stored policy version's document (which writes every rule's time zone out)."""
    return RoutingTable(parse_rules(document.get("routing_rules"), timezone_of=lambda _scope: "UTC"))
