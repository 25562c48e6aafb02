"""A thin layer over PyYAML's node API that keeps line numbers for error messages."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from spendgate.core.yamltext import check_shape

Node = yaml.Node


class RuleError(Exception):
    """A problem at a line of the routes file (1-based); turned into a ConfigError with the file name."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


@dataclass(frozen=True, slots=True)
class Located:
    """A value node, and the key node that named it when it sits in a mapping."""

    node: Node
    key: Node | None = None

    @property
    def line(self) -> int:
        return line_of(self.node)

    def error(self, message: str) -> RuleError:
        return RuleError(self.line, message)

    def key_error(self, message: str) -> RuleError:
        return RuleError(line_of(self.key if self.key is not None else self.node), message)


def compose(text: str, *, source: str) -> Node:
    check_shape(text, source=source, aliases=True)  # the composer recurses per level: refuse deep nesting first
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return yaml.MappingNode("tag:yaml.org,2002:map", [], yaml.Mark("", 0, 0, 0, "", 0))
    return node


def as_mapping(node: Node, what: str) -> dict[str, Located]:
    if not isinstance(node, yaml.MappingNode):
        raise RuleError(line_of(node), f"{what} must be a mapping")
    out: dict[str, Located] = {}
    for key, value in node.value:
        name = as_scalar(key, f"a key of {what}")
        if name in out:
            raise RuleError(line_of(key), f"{name!r} appears twice in {what}")
        out[name] = Located(value, key)
    return out


def as_list(node: Node, what: str) -> list[Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise RuleError(line_of(node), f"{what} must be a list")
    return list(node.value)


def as_scalar(node: Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise RuleError(line_of(node), f"{what} must be a single value")
    value = str(node.value).strip()
    if not value:
        raise RuleError(line_of(node), f"{what} must not be empty")
    return value
