"""Routing rules: which alerts go to which targets, now or in a digest. Pure apart from reading the file.

Shared infrastructure because two services read it: the alerter routes and delivers by it, and the
proxy names who was alerted in its pause response (:meth:`Rules.recipients`: target names only, never
a URL, routing key or token).

The routes file is parsed with PyYAML's node API so every error names the line it is about::

    targets:
      slack:platform-em: {url: {secret: platform_em_slack}}
      email:finops: {to: [finops@example.com]}
    developer_email: "{developer}@example.com"
    routes:
      - name: platform-em
        match: {cost_center: platform, stage: [downgrade, pause]}
        notify: [slack:platform-em, developer]
      - name: finops
        match: {cost_center: "*"}
        digest: {every: day, at: "17:00", timezone: UTC}
        notify: [email:finops]

Every matching route applies. ``"*"`` matches any value, even an absent one; ``developer`` in
``notify`` mails the developer whose key or spend caused the alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

import yaml

from spendgate.core.yamlnodes import Located, Node, RuleError, as_list, as_mapping, as_scalar, compose
from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import zone

STAGES = ("alert", "downgrade", "pause", "forecast_overrun", "retry_loop", "reconciliation_gap", "policy_rollback")
MATCH_KEYS = ("cost_center", "team", "developer", "stage", "scope", "period")
SCOPE_KINDS = ("key", "developer", "team", "cost_center", "org")
DEVELOPER = "developer"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
TARGET_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required, optional)
    "slack": (frozenset({"url"}), frozenset()),
    "teams": (frozenset({"url"}), frozenset()),
    "pagerduty": (frozenset({"routing_key"}), frozenset({"url"})),
    "webhook": (frozenset({"url", "signing_secret"}), frozenset()),
    "email": (frozenset({"to"}), frozenset()),
}


@dataclass(frozen=True, slots=True)
class SecretRef:
    """``{secret: name}`` in the routes file: the value comes from the environment or the secrets file."""

    name: str
    line: int


Value = str | SecretRef


@dataclass(frozen=True, slots=True)
class TargetSpec:
    name: str
    kind: str
    options: Mapping[str, Value | tuple[str, ...]]
    line: int

    def value(self, key: str) -> Value:
        v = self.options[key]
        assert not isinstance(v, tuple)
        return v


@dataclass(frozen=True, slots=True)
class DigestSpec:
    every: str
    """``day`` or ``week``."""
    at: time
    timezone: str
    weekday: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: Mapping[str, tuple[str, ...]]
    notify: tuple[str, ...]
    digest: DigestSpec | None
    line: int

    def matches(self, facts: Mapping[str, str | None]) -> bool:
        for key, allowed in self.match.items():
            if "*" in allowed:
                continue
            if facts.get(key) not in allowed:
                return False
        return True


@dataclass(frozen=True)
class Rules:
    targets: Mapping[str, TargetSpec] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    developer_email: str | None = None

    def route(self, name: str) -> Route:
        for r in self.routes:
            if r.name == name:
                return r
        raise ConfigError(f"no route named {name!r} (routes: {', '.join(r.name for r in self.routes)})")

    def matching(self, facts: Mapping[str, str | None]) -> list[Route]:
        return [r for r in self.routes if r.matches(facts)]

    def recipients(self, facts: Mapping[str, str | None]) -> list[str]:
        """Who is notified at once of an alert with these facts, as a person may be told: target names
        (``slack:platform-em``, ``email:finops``; a name carries no secret, those sit in the target's
        options) and, for ``developer``, ``email:<the developer's address>``. Digest routes are left out
        (nobody is told now); each recipient once, in route order."""
        out: list[str] = []
        for route in self.matching(facts):
            if route.digest is not None:
                continue
            for target in route.notify:
                if target == DEVELOPER:
                    developer = facts.get("developer")
                    if not developer or self.developer_email is None:
                        continue
                    target = f"email:{self.developer_email.format(developer=developer)}"
                if target not in out:
                    out.append(target)
        return out

    def secret_refs(self) -> list[SecretRef]:
        return [v for t in self.targets.values() for v in t.options.values() if isinstance(v, SecretRef)]


def load_rules(path: Path | None) -> Rules:
    """The rules in ``path`` (no routes when unset); a :class:`ConfigError` naming file and line."""
    if path is None:
        return Rules()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read alert routes file {path}: {exc}") from exc
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "<routes>") -> Rules:
    try:
        return _parse(compose(text, source=source))
    except RuleError as exc:
        raise ConfigError(f"{source}:{exc.line}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc


def _parse(root: Node) -> Rules:
    top = as_mapping(root, "the routes file")
    _only(top, {"targets", "routes", "developer_email"})
    targets: dict[str, TargetSpec] = {}
    if "targets" in top:
        for key, loc in as_mapping(top["targets"].node, "targets").items():
            targets[key] = _target(key, loc)
    developer_email = None
    if "developer_email" in top:
        developer_email = as_scalar(top["developer_email"].node, "developer_email")
        if "{developer}" not in developer_email:
            raise top["developer_email"].error("developer_email must contain {developer}")
    routes: list[Route] = []
    if "routes" in top:
        for i, node in enumerate(as_list(top["routes"].node, "routes")):
            route = _route(node, i + 1, targets, developer_email)
            if any(r.name == route.name for r in routes):
                raise Located(node).error(f"route name {route.name!r} is used twice")
            routes.append(route)
    return Rules(targets=targets, routes=tuple(routes), developer_email=developer_email)


def _only(m: Mapping[str, Located], allowed: set[str]) -> None:
    for key, loc in m.items():
        if key not in allowed:
            raise loc.key_error(f"unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})")


def _target(name: str, loc: Located) -> TargetSpec:
    kind, _, label = name.partition(":")
    where, node = Located(loc.key or loc.node), loc.node
    if kind not in TARGET_OPTIONS or not label:
        raise where.error(f"target {name!r} must be <kind>:<name> with kind one of {', '.join(TARGET_OPTIONS)}")
    required, optional = TARGET_OPTIONS[kind]
    opts = as_mapping(node, f"target {name}")
    _only(opts, set(required | optional))
    for key in sorted(required - set(opts)):
        raise where.error(f"target {name!r} needs {key!r}")
    options: dict[str, Value | tuple[str, ...]] = {}
    for key, loc in opts.items():
        if key == "to":
            options[key] = tuple(as_scalar(n, "to") for n in _scalar_or_list(loc.node))
        elif isinstance(loc.node, yaml.MappingNode):
            ref = as_mapping(loc.node, key)
            _only(ref, {"secret"})
            if "secret" not in ref:
                raise loc.error(f"{key}: write a literal or {{secret: name}}")
            secret = as_scalar(ref["secret"].node, "secret").lower()
            options[key] = SecretRef(secret, ref["secret"].line)
        else:
            options[key] = as_scalar(loc.node, key)
    if kind == "pagerduty":
        options.setdefault("url", PAGERDUTY_EVENTS_URL)
    return TargetSpec(name, kind, options, where.line)


def _scalar_or_list(node: Node) -> list[Node]:
    return as_list(node, "value") if isinstance(node, yaml.SequenceNode) else [node]


def _route(node: Node, index: int, targets: Mapping[str, TargetSpec], developer_email: str | None) -> Route:
    here = Located(node)
    m = as_mapping(node, f"route {index}")
    _only(m, {"name", "match", "notify", "digest"})
    name = as_scalar(m["name"].node, "name") if "name" in m else f"route-{index}"
    match: dict[str, tuple[str, ...]] = {}
    if "match" in m:
        for key, loc in as_mapping(m["match"].node, "match").items():
            if key not in MATCH_KEYS:
                raise loc.key_error(f"cannot match on {key!r} (expected one of: {', '.join(MATCH_KEYS)})")
            values = tuple(as_scalar(n, key) for n in _scalar_or_list(loc.node))
            allowed: tuple[str, ...] | None = {"stage": STAGES, "scope": SCOPE_KINDS,
                                                "period": ("day", "week", "month")}.get(key)
            for v in values:
                if allowed is not None and v != "*" and v not in allowed:
                    raise loc.error(f"{key} {v!r} is not one of: {', '.join(allowed)}")
            match[key] = values
    if "notify" not in m:
        raise here.error(f"route {name!r} needs notify: [target, ...]")
    notify = tuple(as_scalar(n, "notify") for n in _scalar_or_list(m["notify"].node))
    for t in notify:
        if t == DEVELOPER:
            if developer_email is None:
                raise m["notify"].error("notify: developer needs developer_email: \"{developer}@your.domain\"")
        elif t not in targets:
            raise m["notify"].error(f"unknown target {t!r} (define it under targets:)")
    digest = _digest(m["digest"]) if "digest" in m else None
    return Route(name, match, notify, digest, here.line)


def _digest(loc: Located) -> DigestSpec:
    d = as_mapping(loc.node, "digest")
    _only(d, {"every", "at", "timezone", "on"})
    every = as_scalar(d["every"].node, "every") if "every" in d else "day"
    if every not in ("day", "week"):
        raise d["every"].error(f"digest every {every!r} must be day or week")
    at_text = as_scalar(d["at"].node, "at") if "at" in d else "09:00"
    try:
        at = time.fromisoformat(at_text)
    except ValueError:
        raise d.get("at", loc).error(f"digest at {at_text!r} must be HH:MM") from None
    tz = as_scalar(d["timezone"].node, "timezone") if "timezone" in d else "UTC"
    try:
        zone(tz)
    except ConfigError as exc:
        raise d["timezone"].error(exc.message) from None
    weekday = 0
    if "on" in d:
        day = as_scalar(d["on"].node, "on").lower()
        if day not in WEEKDAYS:
            raise d["on"].error(f"digest on {day!r} must be a weekday name")
        weekday = WEEKDAYS.index(day)
    return DigestSpec(every, at, tz, weekday)
