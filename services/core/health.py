"""The health of one process: a state per supervised task, rolled up per component.

A task's name says where it belongs: ``ledger.consumer`` is part of the component ``ledger``, and a
service run by ``spendgate up`` is the task ``ledger`` itself. States:

- ``ok``: running, and its last iteration went well;
- ``degraded``: failing and being retried (or, for a component, some of its tasks are not ok);
- ``down``: stopped, given up, or not started.

One :class:`Health` lives in the process's ``Runtime``; the supervisor writes it and the proxy's
``/healthz`` reads it. Several tasks may share a name (the alerter's delivery workers): the name's
state is then the roll-up of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class State(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


def combine(states: Iterable[State]) -> State:
    """All ok is ok, all down is down, anything else is degraded."""
    seen = set(states)
    if seen <= {State.OK}:
        return State.OK
    if seen == {State.DOWN}:
        return State.DOWN
    return State.DEGRADED


class Slot:
    """The health of one supervised task: its state and its failures since the last good iteration."""

    __slots__ = ("failures", "name", "state")

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = State.DOWN
        self.failures = 0


class Health:
    """Every supervised task of this process, by name."""

    def __init__(self) -> None:
        self._slots: dict[str, list[Slot]] = {}

    def slot(self, name: str) -> Slot:
        """A new slot under ``name`` (``down`` until its task starts)."""
        slot = Slot(name)
        self._slots.setdefault(name, []).append(slot)
        return slot

    def release(self, slot: Slot) -> None:
        """Forget a slot whose task ended as asked (stopped or cancelled)."""
        slots = self._slots.get(slot.name, [])
        if slot in slots:
            slots.remove(slot)
        if not slots:
            self._slots.pop(slot.name, None)

    def tasks(self) -> dict[str, State]:
        """State per task name, sorted by name."""
        return {name: combine(s.state for s in slots) for name, slots in sorted(self._slots.items())}

    def components(self) -> dict[str, State]:
        """State per component (the part of a task's name before the first dot), sorted by name."""
        grouped: dict[str, list[State]] = {}
        for name, slots in self._slots.items():
            grouped.setdefault(component_of(name), []).extend(s.state for s in slots)
        return {name: combine(states) for name, states in sorted(grouped.items())}

    def status(self) -> State:
        """``ok`` when every component is ok, else ``degraded``."""
        return State.OK if all(s is State.OK for s in self.components().values()) else State.DEGRADED

    def report(self) -> dict[str, object]:
        """What ``/healthz`` answers: states only, no figures."""
        return {"status": self.status().value,
                "components": {k: v.value for k, v in self.components().items()},
                "tasks": {k: v.value for k, v in self.tasks().items()}}


def component_of(name: str) -> str:
    return name.split(".", 1)[0]
