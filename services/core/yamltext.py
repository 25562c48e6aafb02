"""YAML from people and from the web, parsed with bounds: the one way spendgate reads a YAML document.

A policy proposal comes from a file, the console's form or the admin API; the config and secrets files
from an operator. PyYAML's safe loader builds nothing dangerous, but it still recurses once per level
of nesting (a few thousand ``[`` is a ``RecursionError``) and keeps aliases as shared references (a
few lines of ``&a [*b, *b, …]`` is a billion-element document to anything that walks it). So the
text's events are checked first, with no recursion: at most :data:`MAX_DEPTH` levels, and no aliases
where the caller does not allow them. Every failure is one :class:`ConfigError` naming the source.
"""

from __future__ import annotations

from typing import Any

import yaml

from spendgate.domain.errors import ConfigError

MAX_DEPTH = 32
"""Levels of nesting a document may have (a policy needs five)."""

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _Frame:
    """One open mapping or sequence of :func:`check_shape`'s walk: the keys a mapping has given so far."""

    __slots__ = ("keys", "want_key")

    def __init__(self, mapping: bool) -> None:
        self.keys: set[str] | None = set() if mapping else None
        self.want_key = mapping

    def node_done(self) -> None:
        if self.keys is not None:
            self.want_key = not self.want_key


def check_shape(text: str, *, source: str, aliases: bool = False) -> None:
    """Walk ``text``'s events (no recursion, nothing built): :class:`ConfigError` when it nests deeper than
    :data:`MAX_DEPTH`, names a key twice in one mapping (PyYAML keeps the last silently: ``proxy_port: 8080``
    then ``proxy_port: 9090`` further down, or two ``budgets:`` in a policy, dropped one without a word) or,
    unless ``aliases``, uses an alias (``*name``). Invalid YAML raises PyYAML's error."""
    stack: list[_Frame] = []
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _OPEN):
            stack.append(_Frame(isinstance(event, yaml.MappingStartEvent)))
            if len(stack) > MAX_DEPTH:
                raise ConfigError(f"{source} nests deeper than {MAX_DEPTH} levels")
        elif isinstance(event, _CLOSE):
            stack.pop()
            if stack:
                stack[-1].node_done()
        elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            if isinstance(event, yaml.AliasEvent) and not aliases:
                raise ConfigError(f"{source} uses a YAML alias (*{event.anchor}): write the value out instead")
            if stack:
                top = stack[-1]
                if top.want_key and top.keys is not None and isinstance(event, yaml.ScalarEvent):
                    if event.value in top.keys and event.value != "<<":
                        where = f" (line {event.start_mark.line + 1})" if event.start_mark is not None else ""
                        raise ConfigError(f"{source} gives the key {event.value[:60]!r} twice in one mapping"
                                          f"{where}: keep one")
                    top.keys.add(event.value)
                top.node_done()


def parse_yaml(text: str, *, source: str, aliases: bool = False) -> Any:
    """The document in ``text`` (None when it is empty), after :func:`check_shape`; a :class:`ConfigError`
    naming ``source`` for anything wrong with it."""
    try:
        check_shape(text, source=source, aliases=aliases)
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not YAML: {' '.join(str(exc).split())}") from None
